"""A small, fixed history for the CLI's golden-output tests: every time, revision and id is a constant,
so `tidegate status|history|show|logs|drift` print the same thing on every run.

`infra/staging` wants the head ("Scale web …", by Alice) but runs the bootstrap commit it was rolled
back to, with drift report #1 open there (one item of each shape the providers record,
`tests.support.drift_store.OPEN_ITEMS`) and #2 resolved; its syncs:

- #1 the bootstrap commit, approved by paula, 3m07s, three stages with logs and counts;
- #2 the head, 42s;  #3 a rollback to the bootstrap commit (`sync --revision`), 55s;
- #5 the head again, failed after 5m12s with a long error.

`infra/production` is at the bootstrap commit; sync #4 of the head awaits approval, and nothing has
looked at its live world since the workers started. Users: `ops` (admin), `vic` (viewer).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select

from dashboard.identity import issue_token
from reconciler.commands import ROLLBACK_ACTION
from reconciler.runtime import Services
from store import (
    Approval,
    ApprovalDecision,
    ApprovalSource,
    AuditEvent,
    Database,
    Environment,
    Health,
    Observation,
    Plan,
    Repository,
    Revision,
    Stage,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
    User,
)
from tests.dashboard.conftest import make_app
from tests.support.drift_store import add_ops_and_vic, open_report, recording_services, resolved_report
from tidegate.http_client import HttpClient

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2, minutes=12)
"""The clock the golden tests fix ("12m ago" for staging's last look)."""
HEAD = "0123456789abcdef0123456789abcdef01234567"
HEAD_SUBJECT = "Scale web to three replicas in staging and production for the launch week"
OLD = "fedcba9876543210fedcba9876543210fedcba98"
FAILURE = ("workloads: Deployment web/web did not become ready within 300s: 2 of 3 replicas available, the newest "
           "pod is in CrashLoopBackOff (back-off 5m0s restarting the failed container)\nsecond line not shown")
PLAN: dict[str, Any] = {
    "infrastructure": {"summary": "+0 ~1 -0", "fingerprint": "f-infra", "changes": [
        {"address": "aws_security_group.nodes", "action": "update",
         "diff": "  ~ ingress.0.cidr_blocks\n    - 198.51.100.0/25\n    + 198.51.100.0/24"}]},
    "configuration": {"deferred": True, "summary": "planned after infrastructure applies", "changes": [],
                      "fingerprint": "f-conf"},
    "workloads": {"summary": "+1 ~1 -0", "fingerprint": "f-work", "changes": [
        {"address": "apps/Deployment/web/web", "action": "update", "diff": "@@ spec.replicas @@\n-2\n+3"},
        {"address": "/ConfigMap/web/settings", "action": "create", "diff": "+ data.mode: launch"}]},
}
STAGE_LOGS = {
    Stage.INFRASTRUCTURE: "Initializing the backend...\naws_security_group.nodes: Modifying... [id=sg-0a1b2c]\n"
                          "aws_security_group.nodes: Modifications complete after 2s [id=sg-0a1b2c]\n"
                          "Apply complete! Resources: 0 added, 1 changed, 0 destroyed.\n",
    Stage.CONFIGURATION: "PLAY [nodes] *****\nTASK [Write the config] *****\nok: [node-1]\nok: [node-2]\n",
    Stage.WORKLOADS: "apps/Deployment/web/web: configured\n/ConfigMap/web/settings: created\n",
}
COUNTS = {Stage.INFRASTRUCTURE: {"configured": 1}, Stage.CONFIGURATION: {"unchanged": 2},
          Stage.WORKLOADS: {"configured": 1, "created": 1}}
STAGE_SECONDS = {Stage.INFRASTRUCTURE: 61, Stage.CONFIGURATION: 34, Stage.WORKLOADS: 12}


def build_cli_world(data_dir: Path, redis: Redis) -> Services:
    """The store described above; its queue records what would be sent (no stage ever runs)."""
    database = Database.embedded(data_dir)
    database.upgrade()
    with database.session() as session:
        repository = Repository(name="infra", url="https://git.example.com/platform/infra.git", head_sha=HEAD)
        session.add(repository)
        add_ops_and_vic(session)
        session.flush()
        old = Revision(repository_id=repository.id, ref="main", sha=OLD, author="Bob Builder <bob@example.com>",
                       message="Bootstrap staging and production\n\nThe body is not shown.", committed_at=T0)
        head = Revision(repository_id=repository.id, ref="main", sha=HEAD, author="Alice Author <alice@example.com>",
                        message=HEAD_SUBJECT,
                        committed_at=T0 + timedelta(minutes=50))
        session.add_all([old, head])
        session.flush()
        staging = Environment(repository_id=repository.id, name="staging", desired_revision_id=head.id,
                              synced_revision_id=old.id, health=Health.HEALTHY)
        production = Environment(repository_id=repository.id, name="production", desired_revision_id=head.id,
                                 synced_revision_id=old.id, health=Health.HEALTHY)
        session.add_all([staging, production])
        session.flush()
        session.add_all([Observation(environment_id=staging.id, observed_at=T0 + timedelta(hours=2),
                                     health=Health.HEALTHY),
                         Observation(environment_id=production.id, requested_at=T0 + timedelta(hours=2),
                                     health=Health.UNKNOWN)])
        plan = Plan(environment_id=staging.id, revision_id=old.id, fingerprint="a" * 64, stages=PLAN)
        session.add(plan)
        session.flush()
        _syncs(session, staging, production, old, head, plan)
        session.add(open_report(staging.id, old.id, T0 + timedelta(hours=2)))
        session.add(resolved_report(staging.id, old.id, T0 + timedelta(minutes=30), T0 + timedelta(hours=1)))
    return recording_services(database, data_dir, redis)


def _syncs(session: Any, staging: Environment, production: Environment, old: Revision, head: Revision,
           plan: Plan) -> None:
    def sync(env: Environment, revision: Revision, trigger: SyncTrigger, status: SyncLifecycle, minutes: int,
             took: int | None, **extra: Any) -> Sync:
        created = T0 + timedelta(minutes=minutes)
        row = Sync(environment_id=env.id, revision_id=revision.id, trigger=trigger, status=status, created_at=created,
                   started_at=created, finished_at=created + timedelta(seconds=took) if took else None, **extra)
        session.add(row)
        session.flush()
        return row

    first = sync(staging, old, SyncTrigger.POLL, SyncLifecycle.SUCCEEDED, 0, 187, plan_id=plan.id)
    started = T0 + timedelta(minutes=1)
    for stage, log in STAGE_LOGS.items():
        session.add(SyncStageResult(sync_id=first.id, stage=stage, status=StageStatus.SUCCEEDED, log=log,
                                    summary={"plan": PLAN[stage.value]["summary"], "counts": COUNTS[stage]},
                                    started_at=started,
                                    finished_at=started + timedelta(seconds=STAGE_SECONDS[stage])))
        started += timedelta(seconds=STAGE_SECONDS[stage])
    session.add(Approval(plan_fingerprint=plan.fingerprint, sync_id=first.id, user="paula",
                         decision=ApprovalDecision.APPROVE, source=ApprovalSource.CLI, created_at=started
                         - timedelta(seconds=100)))
    sync(staging, head, SyncTrigger.POLL, SyncLifecycle.SUCCEEDED, 60, 42)
    rollback = sync(staging, old, SyncTrigger.MANUAL, SyncLifecycle.SUCCEEDED, 90, 55)
    session.add(AuditEvent(actor="ops", action=ROLLBACK_ACTION, target="infra/staging",
                           details={"sync_id": rollback.id, "revision": OLD}, at=T0 + timedelta(minutes=90)))
    sync(production, head, SyncTrigger.POLL, SyncLifecycle.AWAITING_APPROVAL, 95, None)
    sync(staging, head, SyncTrigger.MANUAL, SyncLifecycle.FAILED, 105, 312, error=FAILURE)


def api_client(services: Services, user: str) -> Iterator[HttpClient]:
    """The HTTP client as `user` against the real API (the ASGI app) over `services`' store."""
    with services.database.session() as session:
        token = issue_token(session, session.scalars(select(User).where(User.name == user)).one())[1]
    with TestClient(make_app(services)) as api:
        yield HttpClient("http://testserver", token, transport=api._transport)
