"""Stage fingerprints: a stage whose inputs did not change since it last applied is not planned again.

A stage's *input fingerprint* (`EnvironmentSession.input_fingerprint`) is the digest of everything
its plan depends on from our side: the files it reads in the checkout, its rendered inputs and
variables, the recorded outputs of the earlier stages it reads, and the connection settings and
credentials of its target (credentials only as digests). A successful apply records it next to
the stage's outputs (sealed, under a key of its own: it never mixes with the outputs later stages
read). A sync a commit triggered, or a heal, leaves out a stage whose fingerprint equals the one
recorded at its last apply when that apply succeeded and no open drift report names the stage.
A manual sync and the drift check always compare every stage with the live world.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.stage import Stage
from reconciler.runtime import Services
from repo_schema.paths import PathProblem, resolve_inside
from store import Environment, StageStatus, Sync, SyncStageResult, SyncTrigger
from store.queries import open_drift_reports

INPUTS_KEY = "inputs"
"""Where a successful apply's input fingerprint is kept in the stage's sealed outputs record (beside
`values` and `sensitive`; `recorded_outputs` reads `values` only)."""

SKIPPING_TRIGGERS = frozenset({SyncTrigger.POLL, SyncTrigger.WEBHOOK, SyncTrigger.DRIFT})
"""Syncs that a commit or a drift report started; a manual sync (and a rollback) plans every stage."""

_NOT_INPUTS = frozenset({".git", ".terraform"})


@dataclass(frozen=True)
class LastApply:
    """A stage's latest apply: in which sync, whether it succeeded, the inputs it applied (if recorded)."""

    sync_id: int
    succeeded: bool
    inputs: str | None


def last_applies(services: Services, session: Session, environment_id: int) -> dict[Stage, LastApply]:
    """Each stage's latest apply (succeeded or failed; stages skipped in a sync are not applies)."""
    query = (select(SyncStageResult).join(Sync)
             .where(Sync.environment_id == environment_id,
                    SyncStageResult.status.in_((StageStatus.SUCCEEDED, StageStatus.FAILED)))
             .order_by(SyncStageResult.id.desc()))
    found: dict[Stage, LastApply] = {}
    for row in session.scalars(query):
        if row.stage in found:
            continue
        inputs = None
        if row.status is StageStatus.SUCCEEDED and row.outputs is not None:
            value = json.loads(services.secrets.unseal(row.outputs)).get(INPUTS_KEY)
            inputs = value if isinstance(value, str) else None
        found[row.stage] = LastApply(row.sync_id, row.status is StageStatus.SUCCEEDED, inputs)
        if len(found) == len(Stage):
            break
    return found


def skippable(services: Services, session: Session, sync: Sync) -> dict[Stage, LastApply]:
    """The stages this sync may leave out when their inputs still match their last successful apply:
    none for a manual sync; otherwise every stage whose last apply succeeded with a recorded
    fingerprint, except those an open drift report names (a heal corrects exactly those; a commit
    sync still corrects drift nobody healed or accepted)."""
    if sync.trigger not in SKIPPING_TRIGGERS:
        return {}
    drifted = drifted_stages(session, sync.environment)
    return {stage: last for stage, last in last_applies(services, session, sync.environment_id).items()
            if last.succeeded and last.inputs is not None and stage not in drifted}


def drifted_stages(session: Session, environment: Environment) -> set[Stage]:
    """The stages the environment's open drift reports found drifted."""
    return {item.stage for report in open_drift_reports(session, environment.id) for item in report.items}


def files_digest(checkout: Path, entries: Iterable[str]) -> str:
    """A digest of the files under each checkout-relative entry (a file or a directory), by path and
    content. Nothing outside the checkout is read: a symlink counts by its target's name."""
    root = checkout.resolve()
    hasher = hashlib.sha256()
    for entry in sorted(set(entries)):
        try:
            real, relative = resolve_inside(root, entry or ".")
        except PathProblem:
            hasher.update(f"unsafe {entry}\0".encode())
            continue
        for name, path in _files(real, relative):
            hasher.update(name.encode() + b"\0")
            if path.is_symlink():
                hasher.update(b"link " + os.readlink(path).encode() + b"\0")
            else:
                hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def _files(real: Path, relative: str) -> list[tuple[str, Path]]:
    if real.is_file():
        return [(relative, real)]
    found: list[tuple[str, Path]] = []
    for directory, subdirectories, files in os.walk(real, followlinks=False):
        here = Path(directory)
        links = [name for name in subdirectories if (here / name).is_symlink()]
        subdirectories[:] = sorted(name for name in subdirectories if name not in _NOT_INPUTS and name not in links)
        for name in sorted([*files, *links]):
            path = here / name
            found.append(((Path(relative) / path.relative_to(real)).as_posix(), path))
    return found
