"""The two stand-ins the rule tests share: a queue that records what would reach the broker and
targets that refuse to run a stage (those tests are about the rules, not about Celery or stages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.targets import Connection
from repo_schema.models import ConfigurationSpec


@dataclass
class RecordingQueue:
    """Stands where Celery would: records what the caller asked the workers to do."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    def plan(self, sync_id: int, *, countdown: float = 0.0) -> None:
        self.sent.append(("plan", sync_id))

    def apply(self, sync_id: int) -> None:
        self.sent.append(("apply", sync_id))

    def poll(self, repository_id: int) -> None:
        self.sent.append(("poll", repository_id))

    def drift(self, environment_id: int, trigger: str) -> None:
        self.sent.append(("drift", environment_id))


class NoTargets:
    """No stage ever runs where these targets are used: asking for one fails the test."""

    def infrastructure(self, repository: str, environment: str) -> Connection:
        raise AssertionError("no stage runs in these tests")

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        raise AssertionError("no stage runs in these tests")

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        raise AssertionError("no stage runs in these tests")

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        raise AssertionError("no stage runs in these tests")

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        raise AssertionError("no stage runs in these tests")
