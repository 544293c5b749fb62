"""Which state a drift report is in, as people should read it: open, healing (sync #N), or how it ended.

The report row alone misleads: a person's Heal sets its resolution to `healed` while it is still open
(the heal sync may wait for approval for hours), and a selfHeal sync leaves no trace on it at all. So
the state is judged here from the report, the audit log's `drift.heal` entry (`store.queries.DriftDecision`)
and the syncs with trigger `drift`: a report is `healing` while the sync that heals it has not finished,
and never `open` and `healed` at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from store import DriftReport, DriftStatus, Sync, SyncLifecycle
from store.queries import DriftDecision, drift_decisions, drift_syncs

FINISHED = (SyncLifecycle.SUCCEEDED, SyncLifecycle.FAILED, SyncLifecycle.SUPERSEDED)
SLACK = timedelta(seconds=5)
"""A selfHeal sync is requested in the transaction that records the report: their clocks are this close."""


@dataclass(frozen=True)
class DriftState:
    """A report's state word, the sync that heals (or healed) it, and a note when a heal went wrong."""

    word: str
    """`open`, `healing`, `accepted`, `healed` or `resynced`."""
    sync_id: int | None = None
    note: str = ""
    accepted_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.word} (sync #{self.sync_id})" if self.sync_id is not None else self.word

    @property
    def is_open(self) -> bool:
        """Still needs someone: open or healing (a heal sync may still fail)."""
        return self.word in ("open", "healing")


def state_of(report: DriftReport, decision: DriftDecision | None, heal: Sync | None) -> DriftState:
    """The state of one report given who decided what about it and the sync that heals it, if any."""
    accepted_by = decision.accepted_by if decision else None
    if report.status is DriftStatus.RESOLVED:
        word = report.resolution.value if report.resolution else "resynced"
        return DriftState(word, heal.id if heal is not None and word == "healed" else None, accepted_by=accepted_by)
    if heal is None:
        return DriftState("open")
    if heal.status not in FINISHED:
        return DriftState("healing", heal.id)
    if heal.status is SyncLifecycle.SUCCEEDED:  # healed, then drifted again before the report closed
        return DriftState("open", note=f"drifted again after heal sync #{heal.id}")
    return DriftState("open", note=f"heal sync #{heal.id} {heal.status.value}")


def states_of(session: Session, reports: Sequence[DriftReport]) -> dict[int, DriftState]:
    """Per report id, its state (two queries for all the reports, plus one per heal a person asked for)."""
    if not reports:
        return {}
    decisions = drift_decisions(session, reports)
    since = min(report.created_at for report in reports) - SLACK
    candidates = drift_syncs(session, sorted({report.environment_id for report in reports}), since)
    return {report.id: state_of(report, decisions.get(report.id),
                                _heal_of(session, report, decisions.get(report.id), candidates))
            for report in reports}


def _heal_of(session: Session, report: DriftReport, decision: DriftDecision | None,
             candidates: Sequence[Sync]) -> Sync | None:
    """The sync a person's Heal asked for (the audit says which), else the latest drift-triggered sync of
    the report's environment and revision requested while the report was open (selfHeal's)."""
    if decision is not None and decision.heal_sync_id is not None:
        return session.get(Sync, decision.heal_sync_id)
    ends = report.resolved_at + SLACK if report.resolved_at is not None else None
    found = [sync for sync in candidates
             if sync.environment_id == report.environment_id and sync.revision_id == report.revision_id
             and sync.created_at >= report.created_at - SLACK and (ends is None or sync.created_at <= ends)]
    return found[-1] if found else None

