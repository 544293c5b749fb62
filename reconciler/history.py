"""What a line of sync history says beyond the sync's own row: who approved it, whether it was a
rollback, and the subject of the commit it syncs.

The in-process CLI client and the REST API both answer from here, so `tidegate history` says the
same thing locally and over HTTP; none of it is stored on the sync, each fact is read from where it
is recorded (approvals by plan fingerprint, the rollback in the audit log, the message on the revision).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.commands import ROLLBACK_ACTION, key_of
from store import ApprovalDecision, AuditEvent, Environment, Sync
from store.queries import approvals_for


@dataclass(frozen=True)
class Approved:
    by: tuple[str, ...]
    """Distinct approvers, first approval first."""
    at: datetime | None
    """When the last of them approved; None when nobody has."""


def approved(session: Session, sync: Sync) -> Approved:
    """Who approved the plan the sync carries. Approvals bind to the plan's fingerprint (that is what
    `reconciler.approvals.tally` counts), so an approval given while an equal plan waited counts here too."""
    if sync.plan is None:
        return Approved((), None)
    decisions = [a for a in approvals_for(session, sync.plan.fingerprint) if a.decision is ApprovalDecision.APPROVE]
    last = max((a.created_at for a in decisions), default=None)
    return Approved(tuple(dict.fromkeys(a.user for a in decisions)), last)


def rollback_ids(session: Session, environment: Environment) -> set[int]:
    """The environment's syncs that were asked for as rollbacks (`sync --revision`): their trigger is
    `manual`, like a plain sync-now; only the audit entry `commands.rollback` writes tells them apart."""
    query = select(AuditEvent.details).where(AuditEvent.action == ROLLBACK_ACTION,
                                             AuditEvent.target == key_of(environment))
    return {details["sync_id"] for details in session.scalars(query)
            if isinstance(details, dict) and isinstance(details.get("sync_id"), int)}


def commit_subject(sync: Sync) -> str:
    """The first line of the synced commit's message ("" when the revision is gone)."""
    message = sync.revision.message if sync.revision else ""
    return (message or "").strip().split("\n", 1)[0].strip()
