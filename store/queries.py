"""A few look-ups that several layers need, so each does not rewrite the same query.

Deliberately thin: they find and list rows; deciding what the rows mean (whether a sync may apply,
whether an approval counts) is the job of the layers above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.enums import DriftStatus, SyncTrigger
from store.models import Approval, AuditEvent, DriftReport, Environment, Repository, Sync


def repository_by_name(session: Session, name: str) -> Repository | None:
    """The registered repository called `name`, if any."""
    return session.scalars(select(Repository).where(Repository.name == name)).one_or_none()


def environment_by_name(session: Session, repository_id: int, name: str) -> Environment | None:
    """The environment `name` of a repository, if any."""
    query = select(Environment).where(Environment.repository_id == repository_id, Environment.name == name)
    return session.scalars(query).one_or_none()


def sync_history(session: Session, environment_id: int, limit: int = 50) -> Sequence[Sync]:
    """An environment's syncs, newest first."""
    query = (
        select(Sync)
        .where(Sync.environment_id == environment_id)
        .order_by(Sync.created_at.desc(), Sync.id.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def latest_sync(session: Session, environment_id: int) -> Sync | None:
    """An environment's most recent sync, if it has one."""
    history = sync_history(session, environment_id, limit=1)
    return history[0] if history else None


def open_drift_reports(session: Session, environment_id: int) -> Sequence[DriftReport]:
    """An environment's unresolved drift reports, oldest first."""
    query = (
        select(DriftReport)
        .where(DriftReport.environment_id == environment_id, DriftReport.status == DriftStatus.OPEN)
        .order_by(DriftReport.created_at, DriftReport.id)
    )
    return session.scalars(query).all()


def drift_reports_of(session: Session, environment_id: int, *, include_resolved: bool = False,
                     limit: int = 100) -> Sequence[DriftReport]:
    """An environment's drift reports, newest first: the open ones, or with `include_resolved` all."""
    query = (select(DriftReport).where(DriftReport.environment_id == environment_id)
             .order_by(DriftReport.created_at.desc(), DriftReport.id.desc()).limit(limit))
    if not include_resolved:
        query = query.where(DriftReport.status == DriftStatus.OPEN)
    return session.scalars(query).all()


@dataclass(frozen=True)
class DriftDecision:
    """What people decided about a drift report, as the audit log recorded it (the report row only
    keeps the resolution, not who accepted it, why, or which sync heals it)."""

    accepted_by: str | None = None
    comment: str = ""
    heal_sync_id: int | None = None


def drift_decisions(session: Session, reports: Sequence[DriftReport]) -> dict[int, DriftDecision]:
    """Per report id, the latest `drift.accepted` and `drift.heal` audit entries about it (one query for
    all the reports, matched on the environment target and the `report_id` detail)."""
    if not reports:
        return {}
    targets = {f"{r.environment.repository.name}/{r.environment.name}" for r in reports}
    wanted = {r.id for r in reports}
    query = (select(AuditEvent)
             .where(AuditEvent.action.in_(("drift.accepted", "drift.heal")), AuditEvent.target.in_(targets))
             .order_by(AuditEvent.at, AuditEvent.id))
    found: dict[int, DriftDecision] = {}
    for event in session.scalars(query):
        report_id = (event.details or {}).get("report_id")
        if report_id not in wanted:
            continue
        seen = found.get(report_id, DriftDecision())
        if event.action == "drift.accepted":
            found[report_id] = replace(seen, accepted_by=event.actor, comment=str(event.details.get("comment") or ""))
        else:
            found[report_id] = replace(seen, heal_sync_id=event.details.get("sync_id"))
    return found


def drift_syncs(session: Session, environment_ids: Sequence[int], since: datetime) -> Sequence[Sync]:
    """Syncs with trigger `drift` (heals: asked for by a person or by selfHeal) of these environments
    created at or after `since`, oldest first: the candidates for "which sync heals this report"."""
    if not environment_ids:
        return []
    query = (select(Sync).where(Sync.environment_id.in_(environment_ids), Sync.trigger == SyncTrigger.DRIFT,
                                Sync.created_at >= since).order_by(Sync.created_at, Sync.id))
    return session.scalars(query).all()


def audit_page(session: Session, *, actor: str = "", offset: int = 0, limit: int = 50) -> Sequence[AuditEvent]:
    """One page of the audit log, newest first (optionally one actor's entries)."""
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).offset(offset).limit(limit)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    return session.scalars(query).all()


def approvals_for(session: Session, fingerprint: str) -> Sequence[Approval]:
    """Every decision recorded about a plan fingerprint, oldest first."""
    query = select(Approval).where(Approval.plan_fingerprint == fingerprint).order_by(Approval.id)
    return session.scalars(query).all()


def record_audit(
    session: Session, *, actor: str, action: str, target: str, details: dict[str, Any] | None = None
) -> AuditEvent:
    """Add an audit event to the session's transaction, so it commits (or not) with the action."""
    event = AuditEvent(actor=actor, action=action, target=target, details=details or {})
    session.add(event)
    return event
