"""The services a reconciler task runs with, injected by the composition root.

Celery tasks are `shared_task`s in this layer, so they cannot receive constructor arguments; each
worker process calls `configure(Services(...))` once at start (in `tidegate/`), and tasks read
`services()`. Tests configure their own. Nothing here builds a connection itself.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from redis import Redis

from providers.stage import Stage, StageProvider
from reconciler.targets import Targets
from store import Database, SecretBox

log = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The broker did not take the message (Redis down or unreachable): nothing was queued.

    Raised by every `Queue` method. A caller that sends inside its transaction lets it roll the
    transaction back and answers 503 (webhooks, polls); one that already committed work the sweeper
    can find again (a pending or approved sync) answers that the work is accepted and will follow."""


class Queue(Protocol):
    """How the pipeline hands the next step to a worker (Celery in production, see reconciler.tasks).

    Each method raises `QueueUnavailable` when the broker cannot take the message."""

    def plan(self, sync_id: int, *, countdown: float = 0.0) -> None: ...

    def apply(self, sync_id: int) -> None: ...

    def poll(self, repository_id: int) -> None: ...

    def drift(self, environment_id: int, trigger: str) -> None: ...


def hand_off(send: Callable[[], None], what: str) -> bool:
    """Queue work whose record is already committed; False (logged) when the broker is down.

    Only for work that beat finds again by itself — a `pending` sync, an `approved` sync whose
    environment nobody has locked (`reconciler.sweeper`), a repository's scheduled poll: the record
    is the outbox entry, delivered once beat runs again, so the caller may answer "accepted" (202)."""
    try:
        send()
    except QueueUnavailable as error:
        log.warning("%s not queued (the sweeper will queue it when the broker is back): %s", what, error)
        return False
    return True


PROVIDERS: dict[Stage, tuple[str, str]] = {
    Stage.INFRASTRUCTURE: ("providers.terraform", "TerraformStage"),
    Stage.CONFIGURATION: ("providers.ansible", "AnsibleStage"),
    Stage.WORKLOADS: ("providers.kubernetes.stage", "KubernetesStage"),
}
"""Which provider implements each stage (imported on first use: a worker that never plans a stage
never loads its provider's dependencies)."""


def default_stages(name: Stage) -> StageProvider:
    """The real providers, one object per call (they hold no state between runs)."""
    module, attribute = PROVIDERS[name]
    provider: StageProvider = getattr(importlib.import_module(module), attribute)()
    return provider


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Services:
    """Everything a task needs: the store, Redis (locks), where stages run, and the queue."""

    database: Database
    secrets: SecretBox
    redis: Redis
    targets: Targets
    data_dir: Path
    queue: Queue
    stages: Callable[[Stage], StageProvider] = default_stages
    lock_ttl: float = 120.0
    """Seconds an environment lock lives without renewal; a keepalive renews it every third."""
    health_timeout: float = 300.0
    poll_jitter: float = 60.0
    """Up to this many seconds added to each poll interval (Argo CD 3: 2 minutes + up to 1 minute)."""
    owner: str = field(default_factory=_owner)

    @property
    def checkouts(self) -> Path:
        return self.data_dir / "checkouts"

    @property
    def mirrors(self) -> Path:
        return self.data_dir / "git"

    @property
    def render_cache(self) -> Path:
        return self.data_dir / "cache" / "render"

    def runs(self, repository: str, environment: str) -> Path:
        return self.data_dir / "runs" / repository / environment


_configured: Services | None = None


def configure(services: Services) -> None:
    global _configured
    _configured = services


def services() -> Services:
    if _configured is None:
        raise RuntimeError("the reconciler's services are not configured in this process (tidegate worker does it)")
    return _configured
