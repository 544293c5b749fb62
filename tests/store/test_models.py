"""Models round-trip through both databases with the types, words and relations they promise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from store import (
    Approval,
    ApprovalDecision,
    ApprovalSource,
    AuditEvent,
    Database,
    DriftItemRow,
    DriftReport,
    DriftResolution,
    DriftStatus,
    Environment,
    Health,
    Plan,
    Repository,
    Revision,
    SecretBox,
    Stage,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
)

COMMITTED = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


def build_graph(session: Session, box: SecretBox) -> Environment:
    """One of every record, linked as a real bootstrap-then-drift would link them."""
    repository = Repository(name="infra", url="https://git.example/infra.git", credentials=box.seal("tok"))
    revision = Revision(
        repository=repository,
        ref="refs/heads/main",
        sha=SHA,
        author="Ada",
        message="Add web",
        committed_at=COMMITTED,
    )
    environment = Environment(repository=repository, name="production", desired_revision=revision)
    plan = Plan(
        environment=environment, revision=revision, fingerprint="fp-1", stages={"workloads": {"changes": 2}}
    )
    sync = Sync(
        environment=environment, revision=revision, plan=plan, trigger=SyncTrigger.WEBHOOK, fencing_token=7
    )
    sync.stage_results.append(
        SyncStageResult(
            stage=Stage.INFRASTRUCTURE,
            status=StageStatus.SUCCEEDED,
            summary={"created": 3},
            log="Apply complete!",
            outputs=box.seal_json({"kubeconfig": "apiVersion: v1"}),
        )
    )
    sync.approvals.append(
        Approval(
            plan_fingerprint="fp-1",
            user="grace",
            decision=ApprovalDecision.APPROVE,
            source=ApprovalSource.CLI,
        )
    )
    report = DriftReport(environment=environment, revision=revision)
    report.items.append(
        DriftItemRow(
            stage=Stage.WORKLOADS, address="apps/Deployment/web/web", field="spec.replicas", desired=3, live=5
        )
    )
    session.add_all(
        [environment, plan, sync, report, AuditEvent(actor="ada", action="sync", target="production")]
    )
    return environment


def test_every_model_round_trips(database: Database, box: SecretBox) -> None:
    with database.session() as session:
        build_graph(session, box)
    with database.session() as session:
        environment = session.scalars(select(Environment)).one()
        sync = environment.syncs[0]
        result = sync.stage_results[0]
        item = environment.drift_reports[0].items[0]
        assert environment.repository.name == "infra"
        assert box.unseal(environment.repository.credentials or pytest.fail("no credentials")) == "tok"
        assert environment.desired_revision is not None and environment.desired_revision.sha == SHA
        assert environment.desired_revision.committed_at == COMMITTED
        assert environment.health is Health.UNKNOWN and not environment.auto_sync_paused
        assert environment.plans[0].stages == {"workloads": {"changes": 2}}
        assert (sync.trigger, sync.status, sync.fencing_token) == (
            SyncTrigger.WEBHOOK,
            SyncLifecycle.PENDING,
            7,
        )
        assert sync.plan is environment.plans[0] and sync.approvals[0].user == "grace"
        assert (result.stage, result.status, result.summary) == (
            Stage.INFRASTRUCTURE,
            StageStatus.SUCCEEDED,
            {"created": 3},
        )
        assert box.unseal_json(result.outputs or pytest.fail("no outputs")) == {
            "kubeconfig": "apiVersion: v1"
        }
        assert (item.desired, item.live, environment.drift_reports[0].status) == (3, 5, DriftStatus.OPEN)
        assert session.scalars(select(AuditEvent)).one().details == {}


def test_status_words_are_stored_as_design_spells_them(database: Database, box: SecretBox) -> None:
    with database.session() as session:
        environment = build_graph(session, box)
        environment.health = Health.DEGRADED
        environment.syncs[0].status = SyncLifecycle.AWAITING_APPROVAL
        environment.drift_reports[0].resolution = DriftResolution.RESYNCED
    with database.session() as session:
        words = session.execute(
            text(
                'SELECT e.health, s.status, s."trigger", a.source FROM environments e '
                "JOIN syncs s ON s.environment_id = e.id JOIN approvals a ON a.sync_id = s.id"
            )
        ).one()
        assert tuple(words) == ("Degraded", "awaiting_approval", "webhook", "cli")
        assert session.execute(text("SELECT resolution FROM drift_reports")).scalar_one() == "resynced"


def test_unknown_status_word_is_refused(database: Database, box: SecretBox) -> None:
    with (
        pytest.raises(StatementError, match="'Fine' is not a valid Health"),
        database.session() as session,
    ):
        environment = build_graph(session, box)
        environment.health = "Fine"  # type: ignore[assignment]


def test_timestamps_come_back_timezone_aware_utc(database: Database, box: SecretBox) -> None:
    started = datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    with database.session() as session:
        build_graph(session, box).syncs[0].started_at = started
    with database.session() as session:
        sync = session.scalars(select(Sync)).one()
        assert sync.started_at == started and sync.started_at is not None
        assert sync.started_at.tzinfo is UTC and sync.started_at.hour == 12
        assert sync.created_at.tzinfo is UTC and sync.finished_at is None


def test_naive_timestamps_are_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), database.session() as session:
        session.add(AuditEvent(actor="a", action="b", target="c", at=datetime(2026, 1, 1)))


def test_drift_values_keep_null_apart_from_json(database: Database, box: SecretBox) -> None:
    with database.session() as session:
        report = build_graph(session, box).drift_reports[0]
        report.items.append(
            DriftItemRow(stage=Stage.CONFIGURATION, address="node-1/nginx", desired="on", live=None)
        )
        report.items.append(
            DriftItemRow(stage=Stage.INFRASTRUCTURE, address="aws_sg.web", desired={"a": [1]}, live=[])
        )
    with database.session() as session:
        rows = session.execute(
            select(DriftItemRow.address, DriftItemRow.desired, DriftItemRow.live).order_by(DriftItemRow.id)
        )
        assert [tuple(row) for row in rows][1:] == [
            ("node-1/nginx", "on", None),
            ("aws_sg.web", {"a": [1]}, []),
        ]
        assert session.execute(text("SELECT count(*) FROM drift_items WHERE live IS NULL")).scalar_one() == 1


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(Environment(repository_id=999, name="ghost"))


def test_environment_names_are_unique_per_repository(database: Database, box: SecretBox) -> None:
    with database.session() as session:
        build_graph(session, box)
    with pytest.raises(IntegrityError), database.session() as session:
        repository = session.scalars(select(Repository)).one()
        session.add(Environment(repository=repository, name="production"))


def test_deleting_a_repository_cascades_in_the_database(database: Database, box: SecretBox) -> None:
    """Plain SQL, not the ORM: proves the database itself (SQLite pragma included) cascades."""
    with database.session() as session:
        build_graph(session, box)
    with database.session() as session:
        session.execute(text("DELETE FROM repositories"))
    with database.session() as session:
        for model in (Revision, Environment, Plan, Sync, SyncStageResult, DriftReport, DriftItemRow):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model.__name__
        approval = session.scalars(select(Approval)).one()
        assert approval.sync_id is None, "approvals outlive their sync"
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_deleting_through_the_orm_removes_children(database: Database, box: SecretBox) -> None:
    with database.session() as session:
        build_graph(session, box)
    with database.session() as session:
        session.delete(session.scalars(select(Environment)).one())
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Sync)) == 0
        assert session.scalar(select(func.count()).select_from(Revision)) == 1
