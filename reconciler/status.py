"""An environment's sync status, derived from the facts it summarises and never stored.

DESIGN.md defines the word by the facts: `OutOfSync` = the desired revision differs from the synced
one, `Drifted` = a drift report is open for the synced revision. A stored copy had to be kept right by
every transition that touches one of those facts, and wasn't (after a failed heal of the synced
revision it said OutOfSync until the next successful sync, whatever drift checks found). So it is
computed wherever it is read — the API, the pages, the metrics, the CLI — from the same rows, by `status_of`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from store import DriftReport, DriftStatus, Environment, Sync, SyncLifecycle, SyncStatus


@dataclass(frozen=True)
class Facts:
    """What the status word summarises, as ids and flags (no I/O in `derive`)."""

    desired: int | None
    synced: int | None
    awaiting_approval: bool
    """A sync of the environment waits for an approval of its plan."""
    drift_at_synced: bool
    """A drift report is open for the synced revision."""


def derive(facts: Facts) -> SyncStatus:
    """The one rule. An approval awaited outranks everything (a person must act); then where the
    environment should be against where it is; then whether the live world still matches it."""
    if facts.awaiting_approval:
        return SyncStatus.AWAITING_APPROVAL
    if facts.synced is None:
        return SyncStatus.UNKNOWN if facts.desired is None else SyncStatus.OUT_OF_SYNC
    if facts.desired is not None and facts.desired != facts.synced:
        return SyncStatus.OUT_OF_SYNC
    return SyncStatus.DRIFTED if facts.drift_at_synced else SyncStatus.SYNCED


def facts_of(session: Session, env: Environment) -> Facts:
    awaiting = session.scalar(select(exists().where(
        Sync.environment_id == env.id, Sync.status == SyncLifecycle.AWAITING_APPROVAL)))
    drifted = env.synced_revision_id is not None and session.scalar(select(exists().where(
        DriftReport.environment_id == env.id, DriftReport.status == DriftStatus.OPEN,
        DriftReport.revision_id == env.synced_revision_id)))
    return Facts(env.desired_revision_id, env.synced_revision_id, bool(awaiting), bool(drifted))


def status_of(session: Session, env: Environment) -> SyncStatus:
    """`Synced`, `OutOfSync`, `AwaitingApproval`, `Drifted` or `Unknown` (never synced, nothing desired)."""
    return derive(facts_of(session, env))
