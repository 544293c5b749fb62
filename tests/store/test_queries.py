"""The thin look-ups return the rows they name, in the order they promise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from store import (
    Approval,
    ApprovalDecision,
    ApprovalSource,
    AuditEvent,
    Database,
    DriftReport,
    DriftStatus,
    Environment,
    Repository,
    Revision,
    Sync,
    SyncTrigger,
)
from store.queries import (
    approvals_for,
    environment_by_name,
    latest_sync,
    open_drift_reports,
    record_audit,
    repository_by_name,
    sync_history,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seed(database: Database) -> int:
    """A repository with one environment, three syncs an hour apart, two drift reports."""
    with database.session() as session:
        repository = Repository(name="infra", url="https://git.example/infra.git")
        revision = Revision(repository=repository, ref="main", sha="a" * 40, committed_at=T0)
        environment = Environment(repository=repository, name="staging")
        for hours, trigger in enumerate((SyncTrigger.POLL, SyncTrigger.WEBHOOK, SyncTrigger.DRIFT)):
            environment.syncs.append(Sync(trigger=trigger, created_at=T0 + timedelta(hours=hours)))
        environment.drift_reports.append(DriftReport(revision=revision, status=DriftStatus.RESOLVED))
        environment.drift_reports.append(DriftReport(revision=revision))
        session.add(environment)
        session.flush()
        return environment.id


def test_lookups_by_name(database: Database) -> None:
    environment_id = seed(database)
    with database.session() as session:
        repository = repository_by_name(session, "infra")
        assert repository is not None and repository_by_name(session, "nope") is None
        environment = environment_by_name(session, repository.id, "staging")
        assert environment is not None and environment.id == environment_id
        assert environment_by_name(session, repository.id, "production") is None


def test_sync_history_is_newest_first(database: Database) -> None:
    environment_id = seed(database)
    with database.session() as session:
        triggers = [sync.trigger for sync in sync_history(session, environment_id)]
        assert triggers == [SyncTrigger.DRIFT, SyncTrigger.WEBHOOK, SyncTrigger.POLL]
        latest = latest_sync(session, environment_id)
        assert latest is not None and latest.trigger is SyncTrigger.DRIFT
        assert latest_sync(session, environment_id + 1) is None


def test_open_drift_reports_excludes_resolved(database: Database) -> None:
    environment_id = seed(database)
    with database.session() as session:
        assert [report.status for report in open_drift_reports(session, environment_id)] == [DriftStatus.OPEN]


def test_approvals_for_a_fingerprint(database: Database) -> None:
    seed(database)
    with database.session() as session:
        for user, fingerprint in (("ada", "fp-1"), ("bob", "fp-2"), ("cy", "fp-1")):
            session.add(
                Approval(
                    plan_fingerprint=fingerprint,
                    user=user,
                    decision=ApprovalDecision.APPROVE,
                    source=ApprovalSource.DASHBOARD,
                )
            )
    with database.session() as session:
        assert [approval.user for approval in approvals_for(session, "fp-1")] == ["ada", "cy"]


def test_audit_commits_with_the_action_or_not_at_all(database: Database) -> None:
    with database.session() as session:
        record_audit(session, actor="ada", action="repository.register", target="infra", details={"url": "u"})
    try:
        with database.session() as session:
            record_audit(session, actor="eve", action="sync", target="production")
            raise RuntimeError("the action failed")
    except RuntimeError:
        pass
    with database.session() as session:
        events = session.scalars(select(AuditEvent)).all()
        assert [(event.actor, event.details) for event in events] == [("ada", {"url": "u"})]
        assert events[0].at.tzinfo is UTC
