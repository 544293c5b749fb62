"""What a sync of an environment would change now (`tidegate diff ENV`, as `argocd app diff`).

The environment's desired revision is planned stage by stage exactly as a pull request preview
plans it (`previews.plan_environment`, which is `pipeline.plan_stages` with read-only contexts):
against the outputs its stages last recorded, in a scratch directory of its own, Terraform without
taking the state lock, nothing applied and nothing stored — no sync, no plan row, no audit entry.
A stage whose inputs are outputs of an infrastructure that does not exist yet is shown as the sync's
plan shows it ("planned after infrastructure applies"). One stage's failure is reported with the
others still planned, so a person sees everything at once.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from reconciler import previews, repositories
from reconciler.commands import EnvironmentName, find_environment
from reconciler.errors import PlanningFailed
from reconciler.runtime import Services
from reconciler.session import open_session
from reconciler.sources.git import SourceError
from store import Repository


class DiffFailed(ValueError):
    """The environment cannot be planned at all (no desired revision, a revision that does not validate)."""


class StageDiff(BaseModel):
    """One stage: its `+N ~M -K`, each change with its (masked) diff, or why it could not be planned."""

    stage: str
    summary: str = ""
    changes: list[dict[str, Any]] = Field(default_factory=list)
    """`address`, `action`, `diff` per change (no-ops left out)."""
    deferred: bool = False
    error: str | None = None


class EnvironmentDiff(BaseModel):
    environment: str
    """REPOSITORY/ENV."""
    revision: str
    stages: list[StageDiff] = Field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(stage.changes for stage in self.stages)

    @property
    def failed(self) -> bool:
        return any(stage.error for stage in self.stages)


def diff_environment(services: Services, name: EnvironmentName) -> EnvironmentDiff:
    """Plan the environment's desired revision read-only, in a scratch directory removed afterwards."""
    with services.database.session() as session:
        env = find_environment(session, name)
        revision = env.desired_revision or env.synced_revision
        if revision is None:
            raise DiffFailed(f"{env.repository.name}/{env.name} has no desired revision yet (its repository "
                             "has not been polled)")
        repository, env_name, sha = _detached(env.repository), env.name, revision.sha
    try:
        root, loaded_repo, invalid = repositories.load_at(services, repository, sha)
    except SourceError as error:  # the commit is gone (force-push) or the repository unreachable
        raise DiffFailed(f"revision {sha[:12]} could not be read: {error}") from None
    if loaded_repo is None or env_name not in loaded_repo.environments:
        raise DiffFailed(f"revision {sha[:12]} " + (f"does not validate:\n{invalid}" if loaded_repo is None
                                                     else f"does not define {env_name!r}"))
    scratch = Path(tempfile.mkdtemp(prefix="diff-", dir=_scratch_root(services)))
    try:
        try:
            loaded = open_session(services, repository.name, env_name, sha, root)
        except PlanningFailed as failure:
            raise DiffFailed(str(failure)) from None
        loaded = loaded.with_run(replace(loaded.run, artifacts=scratch / "artifacts"))
        planned = previews.plan_environment(services, repository.id, loaded, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return EnvironmentDiff(environment=f"{repository.name}/{env_name}", revision=sha,
                           stages=_stages(planned.stages, planned.errors))


def _stages(summary: dict[str, Any], errors: dict[str, str]) -> list[StageDiff]:
    """The plan summary and the per-stage errors as one list, in pipeline order."""
    found = []
    for stage in ("infrastructure", "configuration", "workloads"):
        if stage in errors:
            found.append(StageDiff(stage=stage, error=errors[stage]))
        elif stage in summary:
            planned = summary[stage]
            found.append(StageDiff(stage=stage, summary=str(planned.get("summary") or ""),
                                   changes=list(planned.get("changes") or []),
                                   deferred=bool(planned.get("deferred"))))
    return found


def _detached(repository: Repository) -> Repository:
    """The repository row's fields, usable after its session closed (git work happens outside it)."""
    return Repository(id=repository.id, name=repository.name, url=repository.url, branch=repository.branch,
                      credentials=repository.credentials)


def _scratch_root(services: Services) -> Path:
    root = services.data_dir / "diffs"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root
