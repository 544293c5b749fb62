"""How stage contexts reach the real world: the one seam the composition root fills.

The pipeline knows what each stage needs (a Terraform backend, SSH access to the nodes Terraform
reported, a kubeconfig); it does not know where those live. `Targets` answers that per stage.
Against real targets the answers come from settings, the operator's environment and Terraform's
outputs; in sandbox mode `tidegate/` substitutes the sandbox's endpoint map (moto, SSH nodes, one
API emulator per cluster) and logs every substitution. Providers and the reconciler never import
the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from repo_schema.models import ConfigurationSpec


@dataclass(frozen=True)
class Connection:
    """Plain connection settings and credentials for one stage run (credentials are secrets)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Connection(settings={sorted(self.settings)}, credentials=<{len(self.credentials)} hidden>)"


class TargetsError(RuntimeError):
    """A stage cannot be reached: a missing key, kubeconfig or endpoint (a clear, non-retried error)."""


class Targets(Protocol):
    """Where each stage of an environment runs; implemented in `tidegate/` (real or sandbox)."""

    def infrastructure(self, repository: str, environment: str) -> Connection: ...

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection: ...

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection: ...

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        """The stored secret `name` as `repository/environment` sees it (its own scope, then its
        repository's, then global); TargetsError naming `where` (the referring field) if none."""
        ...

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        """The connection a pull request preview of `stage` uses: `connection` with its credentials
        replaced by the read-only ones `refs` names (the environment's `spec.preview.<stage>`)."""
        ...
