"""An environment's plan: its stage plans, their fingerprints, and how they are stored.

The fingerprint is what an approval binds to. Per stage it covers the stage plan's digest (the
provider's digest of the changes and rendered inputs) and the live state the plan was computed
against (Terraform lineage/serial, the normalised managed objects); the whole plan's fingerprint
adds the revision. A stage that could not be planned yet (its inputs are the outputs of an
earlier stage that has changes to apply) is *deferred*: its fingerprint is the digest of the
revision's rendered inputs, and approving the plan approves whatever those inputs produce once the
earlier stage has applied — the only way a first sync of a gated environment can be approved at
all, since its cluster does not exist when the plan is made.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.stage import Action, Change, Stage, StagePlan, digest

MAX_DIFF = 20_000
"""Characters of one change's diff kept in the summary the API and UI show."""


@dataclass(frozen=True)
class Unchanged:
    """A stage left out of a plan: its input fingerprint is the one its last successful apply recorded
    (reconciler/fingerprints.py), so it is neither planned nor applied."""

    since_sync: int
    """The sync whose apply of the stage recorded these inputs."""
    inputs: str
    """The stage's input fingerprint."""

    @property
    def reason(self) -> str:
        return f"inputs unchanged since sync #{self.since_sync}"


@dataclass
class EnvironmentPlan:
    """The stage plans of one environment for one revision (`deferred` stages have no plan yet;
    `unchanged` ones are not planned at all: their inputs did not change since they last applied)."""

    revision: str
    stages: dict[Stage, StagePlan] = field(default_factory=dict)
    deferred: dict[Stage, str] = field(default_factory=dict)
    """Stage → digest of its rendered inputs, for stages planned only after the infrastructure applies."""
    unchanged: dict[Stage, Unchanged] = field(default_factory=dict)

    def stage_fingerprint(self, stage: Stage) -> str:
        """What an approval of this stage binds to: its plan's digest and the live state it was made
        against (a stage that binds none, as the workloads stage, leaves `live_state` empty); for a
        stage left out, the inputs it was left out with."""
        if stage in self.deferred:
            return digest({"deferred": self.deferred[stage]})
        if stage in self.unchanged:
            return digest({"unchanged": self.unchanged[stage].inputs})
        plan = self.stages[stage]
        return digest({"digest": plan.digest, **({"live": plan.live_state} if plan.live_state else {})})

    @property
    def fingerprint(self) -> str:
        names = sorted([*self.stages, *self.deferred, *self.unchanged])
        return digest({"revision": self.revision, "stages": {n.value: self.stage_fingerprint(n) for n in names}})

    @property
    def content_fingerprint(self) -> str:
        """The fingerprint without the revision: what the plan would do, whichever commit produced it.

        Two revisions with the same content fingerprint plan the same changes against the same live
        state; a PR review of a head counts for the merged revision only when they agree (Atlantis'
        "undiverged" rule). Stages left out do nothing and are not part of it."""
        return content_fingerprint({n.value: self.stage_fingerprint(n) for n in [*self.stages, *self.deferred]})

    @property
    def has_changes(self) -> bool:
        return bool(self.deferred) or any(plan.has_changes for plan in self.stages.values())

    def summary(self) -> dict[str, Any]:
        """What people read (API, UI, PR comment): per stage `+N ~M -K` and each change; masked."""
        out: dict[str, Any] = {}
        for stage in Stage:
            if stage in self.deferred:
                out[stage.value] = {"deferred": True, "summary": "planned after infrastructure applies",
                                    "changes": [], "fingerprint": self.stage_fingerprint(stage)}
            elif stage in self.unchanged:
                reason = self.unchanged[stage].reason
                out[stage.value] = {"skipped": reason, "summary": f"skipped: {reason}", "changes": [],
                                    "unchanged": 0, "fingerprint": self.stage_fingerprint(stage)}
            elif stage in self.stages:
                out[stage.value] = stage_summary(self.stages[stage], self.stage_fingerprint(stage))
        return out


def stage_summary(plan: StagePlan, fingerprint: str) -> dict[str, Any]:
    """One stage of `EnvironmentPlan.summary`: `+N ~M -K`, each change (masked diffs), unchanged count."""
    return {
        "summary": plan.summary(), "fingerprint": fingerprint, "digest": plan.digest,
        "changes": [{"address": c.address, "action": c.action.value, "diff": c.diff[:MAX_DIFF]}
                    for c in plan.changes if c.action is not Action.no_op],
        "unchanged": sum(c.action is Action.no_op for c in plan.changes),
    }


def content_fingerprint(stage_fingerprints: Mapping[str, str]) -> str:
    """The digest of the per-stage fingerprints alone (see `EnvironmentPlan.content_fingerprint`)."""
    return digest({"stages": dict(sorted(stage_fingerprints.items()))})


def summary_content_fingerprint(summary: Mapping[str, Any], only: Collection[str] | None = None) -> str | None:
    """`content_fingerprint` of a stored plan summary (`Plan.stages`, a preview's stages); None if
    incomplete. Stages left out (`skipped`) are not part of it; `only` restricts it to those stages
    (a preview's plan compared with a merged plan that left some stages out)."""
    stages: dict[str, str] = {}
    for name, stage in summary.items():
        if (isinstance(stage, Mapping) and stage.get("skipped")) or (only is not None and name not in only):
            continue
        value = stage.get("fingerprint") if isinstance(stage, Mapping) else None
        if not isinstance(value, str) or not value:
            return None
        stages[str(name)] = value
    return content_fingerprint(stages) if stages else None


def same_changes(approved: StagePlan, fresh: StagePlan) -> bool:
    """A stage re-planned only because earlier outputs changed keeps its approval when its addresses
    and actions are unchanged (diff text may differ: e.g. a node address in a rendered file)."""
    def key(plan: StagePlan) -> set[tuple[str, str]]:
        return {(c.address, c.action.value) for c in plan.changes if c.action is not Action.no_op}
    return key(approved) == key(fresh)


def encode(plan: EnvironmentPlan) -> str:
    """JSON for the sealed `plans.payload` column: everything apply needs to run exactly this plan."""
    return json.dumps({
        "revision": plan.revision,
        "deferred": {stage.value: value for stage, value in plan.deferred.items()},
        "unchanged": {stage.value: {"since_sync": value.since_sync, "inputs": value.inputs}
                      for stage, value in plan.unchanged.items()},
        "stages": {stage.value: _stage_to_json(stage_plan) for stage, stage_plan in plan.stages.items()},
    }, default=str)


def discard_artifacts(plan: EnvironmentPlan | StagePlan) -> None:
    """Delete saved plan files from disk (Terraform's hold unmasked values). Once a plan is sealed
    into the store its files travel there, encrypted, and are written back only for the apply."""
    stages = plan.stages.values() if isinstance(plan, EnvironmentPlan) else [plan]
    for stage_plan in stages:
        if stage_plan.artifact is not None and stage_plan.artifact.suffix == ".tfplan":
            stage_plan.artifact.unlink(missing_ok=True)


def decode(text: str) -> EnvironmentPlan:
    data = json.loads(text)
    return EnvironmentPlan(
        revision=data["revision"],
        deferred={Stage(stage): value for stage, value in data.get("deferred", {}).items()},
        unchanged={Stage(stage): Unchanged(int(value["since_sync"]), str(value["inputs"]))
                   for stage, value in data.get("unchanged", {}).items()},
        stages={Stage(stage): _stage_from_json(value) for stage, value in data.get("stages", {}).items()},
    )


def _stage_to_json(plan: StagePlan) -> dict[str, Any]:
    # The saved plan file travels inside the sealed payload, so a worker on another machine than
    # the one that planned can apply exactly it (several machines share only PostgreSQL and Redis).
    artifact_data = None
    if plan.artifact is not None and plan.artifact.is_file():
        artifact_data = base64.b64encode(plan.artifact.read_bytes()).decode("ascii")
    return {
        "artifact_data": artifact_data,
        "stage": plan.stage.value,
        "changes": [{"address": c.address, "action": c.action.value, "diff": c.diff} for c in plan.changes],
        "digest": plan.digest,
        "artifact": str(plan.artifact) if plan.artifact is not None else None,
        "live_state": plan.live_state,
        "details": plan.details,
    }


def _restore_artifact(data: Mapping[str, Any]) -> Path | None:
    """The plan file at its recorded path, written back from the payload if this machine lacks it."""
    if not data.get("artifact"):
        return None
    path = Path(data["artifact"])
    if not path.is_file() and data.get("artifact_data"):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(base64.b64decode(data["artifact_data"]))
    return path


def _stage_from_json(data: Mapping[str, Any]) -> StagePlan:
    stage = Stage(data["stage"])
    return StagePlan(
        stage=stage,
        changes=[Change(stage, c["address"], Action(c["action"]), c.get("diff", "")) for c in data["changes"]],
        digest=data["digest"],
        artifact=_restore_artifact(data),
        live_state=data.get("live_state", ""),
        details=dict(data.get("details") or {}),
    )
