"""An environment's plan: its stage plans, their fingerprints, and how they are stored.

The fingerprint is what an approval binds to. Per stage it covers the stage plan's digest (the
provider's digest of the changes and rendered inputs) and the live state the plan was computed
against (Terraform lineage/serial, the normalised managed objects); the whole plan's fingerprint
adds the revision. A stage that could not be planned yet (its inputs are the outputs of an
earlier stage that has changes to apply) is *deferred*: its fingerprint is the digest of the
revision's rendered inputs, and approving the plan approves whatever those inputs produce once the
earlier stage has applied — the only way a first sync of a gated environment can be approved at
all, since its cluster does not exist when the plan is made.

A stage plan's *artefact* (Terraform's saved plan file) is part of what was approved, so it is kept
where every worker reaches it: its bytes and their sha256 travel in the plan's sealed payload (the
store's `plans.payload`, encrypted with the secret key), never only in the planning worker's data
dir. The worker that applies — any worker, on any machine — writes them into its own run directory
(`materialize`), after checking them against the digest recorded when the plan was made; a missing
or altered artefact is refused (`ArtefactRefused`) and nothing of the stage runs. The other inputs
apply needs (the rendered manifests, the playbook's inventory and variables with the digest of its
tree) are the stage plan's `details`, in the same sealed payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
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


class ArtefactRefused(Exception):
    """A stage plan's artefact cannot be applied as approved: it is missing from the stored plan, or
    its bytes are not the ones whose digest was recorded when the plan was made. Nothing ran."""


@dataclass(frozen=True)
class Artefact:
    """A stage plan's file as the store keeps it: where it goes inside a run's artifacts area, the
    sha256 of its bytes when it was planned, and the bytes (None when the store lacks them)."""

    name: str
    """The path relative to the run's artifacts area (`terraform/<env>-plan-<stamp>.tfplan`)."""
    sha256: str
    data: bytes | None

    def to_json(self) -> dict[str, Any]:
        data = base64.b64encode(self.data).decode("ascii") if self.data is not None else None
        return {"name": self.name, "sha256": self.sha256, "data": data}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Artefact:
        text = value.get("data")
        try:
            data = base64.b64decode(text, validate=True) if isinstance(text, str) else None
        except binascii.Error:
            data = b""  # not base64: its digest cannot match, so it is refused as altered
        return cls(str(value.get("name") or ""), str(value.get("sha256") or ""), data)

    @classmethod
    def of_file(cls, path: Path, root: Path | None) -> Artefact:
        """The file at `path`, named relative to `root` (the run's artifacts area that made it)."""
        data = path.read_bytes() if path.is_file() else None
        return cls(_relative_name(path, root), sha256_hex(data) if data is not None else "", data)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _relative_name(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.absolute().relative_to(root.absolute()).as_posix()
        except ValueError:
            pass
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


@dataclass
class EnvironmentPlan:
    """The stage plans of one environment for one revision (`deferred` stages have no plan yet;
    `unchanged` ones are not planned at all: their inputs did not change since they last applied)."""

    revision: str
    stages: dict[Stage, StagePlan] = field(default_factory=dict)
    deferred: dict[Stage, str] = field(default_factory=dict)
    """Stage → digest of its rendered inputs, for stages planned only after the infrastructure applies."""
    unchanged: dict[Stage, Unchanged] = field(default_factory=dict)
    artefacts: dict[Stage, Artefact] = field(default_factory=dict)
    """Stage → its artefact as read back from the store; `materialize` writes it where apply runs.
    (A plan fresh from the providers has its artefacts on disk: `StagePlan.artifact`.)"""

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
                stored = self.artefacts.get(stage)
                if stored is not None and stored.sha256 and "artifact_sha256" not in out[stage.value]:
                    out[stage.value]["artifact_sha256"] = stored.sha256
        return out


def stage_summary(plan: StagePlan, fingerprint: str) -> dict[str, Any]:
    """One stage of `EnvironmentPlan.summary`: `+N ~M -K`, each change (masked diffs), unchanged count,
    and the sha256 of its saved plan file when it has one (what the apply must run: the apply's
    result records the digest of the file it ran, so anyone can compare the two)."""
    out: dict[str, Any] = {
        "summary": plan.summary(), "fingerprint": fingerprint, "digest": plan.digest,
        "changes": [{"address": c.address, "action": c.action.value, "diff": c.diff[:MAX_DIFF]}
                    for c in plan.changes if c.action is not Action.no_op],
        "unchanged": sum(c.action is Action.no_op for c in plan.changes),
    }
    if plan.artifact is not None and plan.artifact.is_file():
        out["artifact_sha256"] = sha256_hex(plan.artifact.read_bytes())
    return out


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


def encode(plan: EnvironmentPlan, artifacts: Path | None = None) -> str:
    """JSON for the sealed `plans.payload` column: everything apply needs to run exactly this plan,
    on any worker. `artifacts` is the run's artifacts area the plan was made in: artefacts are named
    relative to it, so the applying worker puts them at the same place in its own."""
    return json.dumps({
        "revision": plan.revision,
        "deferred": {stage.value: value for stage, value in plan.deferred.items()},
        "unchanged": {stage.value: {"since_sync": value.since_sync, "inputs": value.inputs}
                      for stage, value in plan.unchanged.items()},
        "stages": {stage.value: _stage_to_json(stage_plan, _artefact_of(plan, stage, artifacts))
                   for stage, stage_plan in plan.stages.items()},
    }, default=str)


def _artefact_of(plan: EnvironmentPlan, stage: Stage, artifacts: Path | None) -> Artefact | None:
    """The stage's saved plan file from disk (a fresh plan), else the one read from the store.

    Only files are artefacts: a directory (an Ansible check run's own data dir) is that run's
    record, not an input of the apply."""
    stage_plan = plan.stages[stage]
    if stage_plan.artifact is not None and not stage_plan.artifact.is_dir():
        return Artefact.of_file(stage_plan.artifact, artifacts)
    return plan.artefacts.get(stage)


def discard_artifacts(plan: EnvironmentPlan | StagePlan) -> None:
    """Delete saved plan files from disk (Terraform's hold unmasked values). Once a plan is sealed
    into the store its files travel there, encrypted, and are written back only for the apply."""
    stages = plan.stages.values() if isinstance(plan, EnvironmentPlan) else [plan]
    for stage_plan in stages:
        if stage_plan.artifact is not None and stage_plan.artifact.suffix == ".tfplan":
            stage_plan.artifact.unlink(missing_ok=True)


def decode(text: str) -> EnvironmentPlan:
    """A plan read back from the store. Nothing is written to disk here: its artefacts are in
    `artefacts`, and `materialize` puts one where the stage that applies it runs."""
    data = json.loads(text)
    stages = data.get("stages", {})
    return EnvironmentPlan(
        revision=data["revision"],
        deferred={Stage(stage): value for stage, value in data.get("deferred", {}).items()},
        unchanged={Stage(stage): Unchanged(int(value["since_sync"]), str(value["inputs"]))
                   for stage, value in data.get("unchanged", {}).items()},
        stages={Stage(stage): _stage_from_json(value) for stage, value in stages.items()},
        artefacts={Stage(stage): artefact for stage, value in stages.items()
                   if (artefact := _artefact_from_json(value)) is not None},
    )


def materialize(plan: EnvironmentPlan, stage: Stage, artifacts: Path) -> StagePlan:
    """The stage plan to apply, its artefact written (0600) into `artifacts` — the applying run's own
    artifacts area — after checking its bytes against the digest recorded when it was planned.

    Raises `ArtefactRefused` when the stored plan lacks the bytes or they do not match: the apply
    must run exactly what was approved or nothing. A stage without an artefact is returned as is."""
    stage_plan = plan.stages[stage]
    artefact = plan.artefacts.get(stage)
    if artefact is None:
        return stage_plan
    where = f"{stage.value}: the saved plan file {artefact.name!r} of the approved plan"
    if artefact.data is None:
        raise ArtefactRefused(f"{where} is missing from the store; nothing was applied: plan again")
    if not artefact.sha256 or sha256_hex(artefact.data) != artefact.sha256:
        raise ArtefactRefused(f"{where} does not match the sha256 recorded when it was planned "
                              f"({artefact.sha256[:12] or 'none recorded'}): it was altered; nothing was applied")
    path = _inside(artifacts, artefact.name, where)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(artefact.data)
    return replace(stage_plan, artifact=path)


def _inside(root: Path, name: str, where: str) -> Path:
    """`root/name`, refusing a name that would leave `root` (absolute, `..`)."""
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise ArtefactRefused(f"{where} names a place outside the run's directory; nothing was applied")
    return root.joinpath(*relative.parts)


def _stage_to_json(plan: StagePlan, artefact: Artefact | None) -> dict[str, Any]:
    # The saved plan file travels inside the sealed payload, so a worker on another machine than
    # the one that planned can apply exactly it (several machines share only PostgreSQL and Redis).
    return {
        "stage": plan.stage.value,
        "changes": [{"address": c.address, "action": c.action.value, "diff": c.diff} for c in plan.changes],
        "digest": plan.digest,
        "artefact": artefact.to_json() if artefact is not None else None,
        "live_state": plan.live_state,
        "details": plan.details,
    }


def _artefact_from_json(data: Mapping[str, Any]) -> Artefact | None:
    """The stage's artefact; plans sealed before artefacts were named and digested kept the planning
    worker's path (`artifact`) and the bytes (`artifact_data`): their digest is the bytes' own."""
    if isinstance(data.get("artefact"), Mapping):
        return Artefact.from_json(data["artefact"])
    old = data.get("artifact")
    if not old or not str(old).endswith(".tfplan"):
        return None
    legacy = Artefact.from_json({"name": _relative_name(Path(old), None), "data": data.get("artifact_data")})
    return replace(legacy, sha256=sha256_hex(legacy.data)) if legacy.data is not None else legacy


def _stage_from_json(data: Mapping[str, Any]) -> StagePlan:
    stage = Stage(data["stage"])
    return StagePlan(
        stage=stage,
        changes=[Change(stage, c["address"], Action(c["action"]), c.get("diff", "")) for c in data["changes"]],
        digest=data["digest"],
        artifact=None,
        live_state=data.get("live_state", ""),
        details=dict(data.get("details") or {}),
    )
