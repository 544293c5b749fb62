"""One environment at one revision: what syncs, drift checks, live watches and previews all work on.

`open_session` loads and validates the repository at the revision and renders the environment
once (the render cache keys it by revision and file digests); the session then builds each
stage's context the one way there is (`contexts.WIRINGS`), reads and records what the stages
reported, and says what a deferred stage's approval covers. Nobody else builds a StageContext, so a
plan, its apply, a later drift check and a pull request's preview see the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.stage import Stage, StageContext, digest
from reconciler import contexts, heartbeats
from reconciler.contexts import Recorded, Run, Source
from reconciler.desired import DesiredState, check_checkout
from reconciler.errors import PlanningFailed
from reconciler.fingerprints import files_digest
from reconciler.runtime import Services
from repo_schema.loader import LoadedRepo
from store import Sync, SyncStageResult
from store.redaction import remember, remember_all

log = logging.getLogger(__name__)


@dataclass
class EnvironmentSession:
    """One environment at one revision, rendered; the stages' recorded outputs; where they run."""

    run: Run
    repo: LoadedRepo
    desired: DesiredState
    targets: Any
    recorded: Recorded = field(default_factory=dict)
    take_over: bool = False
    """A self-heal: Git takes back fields others changed (see contexts.workloads)."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Settings every stage's context gets unless its connection sets them (`wait_timeout`)."""
    worker: str | None = None
    """The worker running the stages (services.owner), named in the state locks they take."""
    worker_dead: Callable[[str], bool | None] | None = None
    """Whether a worker named in a lock is known dead (reconciler/heartbeats.py)."""

    @property
    def environment(self) -> str:
        return self.run.environment

    @property
    def stages(self) -> list[Stage]:
        """The environment's stages, in pipeline order."""
        return list(contexts.stages_of(self.repo, self.run.environment))

    def context(self, stage: Stage) -> StageContext[Any] | None:
        """The stage's context, or None while the outputs it reads are not known yet (deferred).
        Its credentials are registered for redaction in everything this process writes."""
        source = Source(self.repo, self.run, self.desired, self.recorded, self.targets, self.take_over)
        built = contexts.WIRINGS[stage].build(source)
        if built is None:
            return None
        remember(*built.credentials.values())
        missing = {key: value for key, value in self.settings.items() if key not in built.settings}
        return replace(built, settings={**built.settings, **missing}, worker=self.worker,
                       worker_dead=self.worker_dead)

    def inputs_digest(self, stage: Stage) -> str:
        """What a deferred stage's approval covers: its rendered inputs and the files it reads (a
        Terraform module's .tf files, the playbook's roles). The revision is not part of it (the
        plan's fingerprint binds the revision), so a PR head and its merge commit that render the
        same inputs agree on it."""
        wiring = contexts.WIRINGS[stage]
        return digest({"rendered": wiring.covers(self.desired),
                       "files": files_digest(self.run.checkout, wiring.paths(self.repo, self.environment))})

    def input_fingerprint(self, stage: Stage) -> str | None:
        """Everything the stage's plan depends on from our side (reconciler/fingerprints.py): its
        inputs digest, the recorded outputs of the stages it reads, its target's connection settings
        and its credentials as digests only. None while the stage is deferred. A heal's take-over
        is left out: healing does not change what the stage is given."""
        source = Source(self.repo, self.run, self.desired, self.recorded, self.targets)
        wiring = contexts.WIRINGS[stage]
        built = wiring.build(source)
        if built is None:
            return None
        remember(*built.credentials.values())
        return digest({
            "inputs": self.inputs_digest(stage),
            "reads": {read.value: self.recorded.get(read, {}) for read in sorted(wiring.reads)},
            "spec": wiring.settles(built),
            "settings": {key: value for key, value in {**self.settings, **built.settings}.items()
                         if not self._machine_local(value)},
            "credentials": {name: hashlib.sha256(value.encode()).hexdigest()
                            for name, value in sorted(built.credentials.items())},
        })

    def _machine_local(self, value: Any) -> bool:
        """Whether a setting names where this machine does the work (a path in its data dir's run
        area, such as Terraform's workspaces) rather than what the stage is given: another worker,
        on another machine, runs the same stage from its own data dir, and that must not count as
        changed inputs (it replanned and re-applied Terraform whenever a sync landed elsewhere)."""
        if not isinstance(value, str | Path) or not str(value).startswith("/"):
            return False
        return Path(value).is_relative_to(self.run.artifacts.parent.parent)

    def reads(self, stage: Stage) -> frozenset[Stage]:
        """The earlier stages whose recorded outputs the stage's context is built from."""
        return contexts.WIRINGS[stage].reads

    def record(self, stage: Stage, outputs: Mapping[str, Any]) -> bool:
        """Take what a stage just reported as its recorded outputs; True when they changed."""
        changed = dict(outputs) != self.recorded.get(stage, {})
        self.recorded[stage] = dict(outputs)
        return changed

    def with_run(self, run: Run) -> EnvironmentSession:
        return replace(self, run=run)


def open_session(services: Services, repository: str, environment: str, sha: str, root: Path,
                 recorded: Recorded | None = None, *, take_over: bool = False) -> EnvironmentSession:
    """Validate and render the environment at `sha` from its checkout; every issue is a
    PlanningFailed (nothing is planned or applied from a revision that does not validate)."""
    result = check_checkout(root, cache_dir=services.render_cache, revision=sha, only=environment)
    if result.issues or result.repo is None:
        raise PlanningFailed(f"revision {sha[:12]} does not render:\n" + "\n".join(str(i) for i in result.issues))
    artifacts = services.runs(repository, environment)
    artifacts.mkdir(parents=True, exist_ok=True, mode=0o700)
    return EnvironmentSession(Run(repository, environment, sha, root, artifacts), result.repo,
                              result.environments[environment], services.targets, dict(recorded or {}),
                              take_over, {"wait_timeout": services.health_timeout}, **_worker(services))


def session_of(services: Services, run: Run, repo: LoadedRepo, desired: DesiredState,
               recorded: Recorded | None = None) -> EnvironmentSession:
    """A session over an already checked revision (a preview checks the whole head once)."""
    return EnvironmentSession(run, repo, desired, services.targets, dict(recorded or {}),
                              settings={"wait_timeout": services.health_timeout}, **_worker(services))


def _worker(services: Services) -> dict[str, Any]:
    """This worker's identity and how to tell whether another is dead, for the stages' contexts."""
    redis = services.redis
    return {"worker": services.owner, "worker_dead": lambda worker: heartbeats.is_dead(redis, worker)}


def recorded_outputs(services: Services, session: Session, environment_id: int) -> Recorded:
    """What each stage of the environment last recorded, whatever the outcome of its sync.

    A failed apply's recorded outputs count as much as a succeeded one's: a workloads apply that
    created objects and then failed its health wait reported them in its inventory, so the next
    revision prunes them (reverting a bad rollout). A failed apply that recorded nothing (a
    Terraform apply that stopped) leaves the last recorded outputs in force."""
    query = (select(SyncStageResult).join(Sync)
             .where(Sync.environment_id == environment_id, SyncStageResult.outputs.is_not(None))
             .order_by(SyncStageResult.id.desc()))
    found: Recorded = {}
    for row in session.scalars(query):
        stage = row.stage
        if stage in found or row.outputs is None:
            continue
        stored = json.loads(services.secrets.unseal(row.outputs))
        values = stored.get("values") or {}
        remember_all(values.get(name) for name in stored.get("sensitive") or ())
        found[stage] = values
        if len(found) == len(Stage):
            break
    return found
