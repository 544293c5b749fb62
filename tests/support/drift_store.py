"""A small real store with drift reports of every kind, for the drift CLI and client tests.

`infra/staging` is synced to one revision and has drift report #1, open, whose items are one of each
shape the stage providers record (a Kubernetes field, a missing Kubernetes object, a Terraform
attribute, a Terraform resource no longer wanted, an Ansible file), and report #2, older and
resolved by a later sync. Users: `ops` (admin), `vic` (viewer). No git repository and no stage ever
runs: accepting and healing only change the store and queue work on the RecordingQueue.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from sqlalchemy.orm import Session

from reconciler.runtime import Services
from store import (
    Database,
    DriftItemRow,
    DriftReport,
    DriftResolution,
    DriftStatus,
    Environment,
    Health,
    Repository,
    Revision,
    Role,
    RoleBinding,
    SecretBox,
    Stage,
    User,
)
from tests.support.doubles import NoTargets, RecordingQueue

T0 = datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"
OLD_SHA = "fedcba9876543210fedcba9876543210fedcba98"
APP_CONF_DESIRED = "# managed by tidegate\nmax_connections = 256\nlog_level = info\n"
APP_CONF_LIVE = "# managed by tidegate\nmax_connections = 4096\nlog_level = info\n"

OPEN_ITEMS = [
    DriftItemRow(stage=Stage.WORKLOADS, address="apps/Deployment/web/web", field="/spec/replicas", desired=3, live=5),
    DriftItemRow(stage=Stage.WORKLOADS, address="/ConfigMap/web/settings", field="/", desired="present", live=None),
    DriftItemRow(stage=Stage.INFRASTRUCTURE, address="aws_instance.node[0]", field="instance_type",
                 desired="t3.small", live="t3.large"),
    DriftItemRow(stage=Stage.INFRASTRUCTURE, address="aws_s3_bucket.scratch", field="(resource)", desired=None,
                 live="present"),
    DriftItemRow(stage=Stage.CONFIGURATION, address="node-1/Write the config", field="/etc/app.conf",
                 desired=APP_CONF_DESIRED, live=APP_CONF_LIVE),
]


def add_ops_and_vic(session: Session) -> None:
    """The two users the CLI's store-backed tests sign in as: `ops` (admin) and `vic` (viewer)."""
    session.add_all([User(name="ops"), RoleBinding(subject="user:ops", role=Role.ADMIN),
                     User(name="vic"), RoleBinding(subject="user:vic", role=Role.VIEWER)])


def open_report(environment_id: int, revision_id: int, created_at: datetime) -> DriftReport:
    """An open report with fresh copies of OPEN_ITEMS (a row belongs to one report)."""
    return DriftReport(environment_id=environment_id, revision_id=revision_id, created_at=created_at,
                       items=[DriftItemRow(stage=i.stage, address=i.address, field=i.field, desired=i.desired,
                                           live=i.live) for i in OPEN_ITEMS])


def resolved_report(environment_id: int, revision_id: int, created_at: datetime, resolved_at: datetime) -> DriftReport:
    """A report a later sync resolved: web's replicas had drifted from 2 to 3."""
    return DriftReport(environment_id=environment_id, revision_id=revision_id, status=DriftStatus.RESOLVED,
                       resolution=DriftResolution.RESYNCED, created_at=created_at, resolved_at=resolved_at,
                       items=[DriftItemRow(stage=Stage.WORKLOADS, address="apps/Deployment/web/web",
                                           field="/spec/replicas", desired=2, live=3)])


def recording_services(database: Database, data_dir: Path, redis: Redis) -> Services:
    """Services over `database` whose queue records what would be sent and whose targets are never asked."""
    return Services(database=database, secrets=SecretBox(SecretBox.generate_key()), redis=redis,
                    targets=NoTargets(), data_dir=data_dir, queue=RecordingQueue())


def build_drift_store(data_dir: Path, redis: Redis | None = None) -> Services:
    """The store described above, and services over it whose queue records what would be sent.
    Without `redis` the client is never connected (nothing the CLI's drift commands do needs it)."""
    database = Database.embedded(data_dir)
    database.upgrade()
    with database.session() as session:
        repository = Repository(name="infra", url=str(data_dir / "infra.git"))
        session.add(repository)
        add_ops_and_vic(session)
        session.flush()
        old, head = (Revision(repository_id=repository.id, ref="main", sha=sha, author="Alice <alice@example.com>",
                              message=message, committed_at=T0 - timedelta(days=days))
                     for sha, message, days in ((OLD_SHA, "bootstrap", 3), (SHA, "scale web", 1)))
        session.add_all([old, head])
        session.flush()
        staging = Environment(repository_id=repository.id, name="staging", synced_revision_id=head.id,
                              desired_revision_id=head.id, health=Health.HEALTHY)
        session.add(staging)
        session.flush()
        session.add(open_report(staging.id, head.id, T0))
        session.add(resolved_report(staging.id, old.id, T0 - timedelta(days=2), T0 - timedelta(days=2, hours=-1)))
    return recording_services(database, data_dir, redis or Redis())


def add_open_report(services: Services, when: datetime, items: list[DriftItemRow]) -> int:
    """Another open report of staging at the synced revision (to accept or heal)."""
    with services.database.session() as session:
        staging = session.get_one(Environment, 1)
        report = DriftReport(environment_id=staging.id, revision_id=staging.synced_revision_id, created_at=when,
                             items=items)
        session.add(report)
        session.flush()
        return report.id
