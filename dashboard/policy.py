"""Who an environment's approval policy lets approve, read from the config repo at the sync's revision.

The policy (`spec.approval.approvers`: `user:NAME`, `group:NAME`) lives in the config repo, so the
revision being approved decides who may approve it. Group membership is the dashboard's to know
(`reconciler.approvals` records decisions and refuses self-approval but knows no groups). A
revision's policy never changes, so it is read once per (repository, revision, environment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from threading import Lock

from reconciler.repositories import checkout
from reconciler.runtime import Services
from repo_schema.loader import load_repo
from store import Repository


class PolicyUnavailable(RuntimeError):
    """The config repo at that revision cannot be read or does not define the environment."""


@dataclass
class ApprovalPolicies:
    services: Services
    _cache: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)

    def approvers(self, repository: Repository, sha: str, environment: str) -> tuple[str, ...]:
        """The `approvers` list of `environment` at `sha` (empty: anyone with the approver role)."""
        key = (repository.name, sha, environment)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            loaded = load_repo(checkout(self.services, repository, sha))
        except Exception as error:  # a missing mirror, a deleted commit, an invalid repo: all mean "unknown"
            raise PolicyUnavailable(f"cannot read the approval policy of {repository.name} at {sha[:12]}: "
                                    f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        spec = loaded.environments.get(environment)
        if spec is None:
            raise PolicyUnavailable(f"{repository.name} at {sha[:12]} does not define environment {environment!r}")
        found = tuple(spec.spec.approval.approvers)
        with self._lock:
            self._cache[key] = found
        return found
