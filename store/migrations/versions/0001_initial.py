"""Initial schema.

Repositories, revisions, environments, plans, syncs and their stage results, drift reports and
items, approvals, audit events. Generated from `store.models` by autogenerate, then edited by
hand: column types are spelled as plain portable SQLAlchemy types (never `store.types`, whose
classes may change after this file is frozen), enum words are VARCHAR(32) without CHECK
constraints (see `store.types.WordEnum`), secrets are TEXT holding Fernet tokens, timestamps are
TIMESTAMP WITH TIME ZONE.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "audit_events",
    "repositories",
    "revisions",
    "environments",
    "drift_reports",
    "drift_items",
    "plans",
    "syncs",
    "sync_stage_results",
    "approvals",
)
"""Creation order (parents first); downgrade drops in reverse."""


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _word() -> sa.String:
    return sa.String(length=32)


def _json(*, none_as_null: bool = False) -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=none_as_null).with_variant(
        postgresql.JSONB(none_as_null=none_as_null), "postgresql"
    )


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def _fk(column: str, table: str, referred: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{referred}.id"], name=op.f(f"fk_{table}_{column}_{referred}"), ondelete=ondelete
    )


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    _create_audit_events()
    _create_repositories()
    _create_revisions()
    _create_environments()
    _create_drift_reports()
    _create_drift_items()
    _create_plans()
    _create_syncs()
    _create_sync_stage_results()
    _create_approvals()


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)


def _create_audit_events() -> None:
    op.create_table(
        "audit_events",
        _id(),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=255), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    _indexes("audit_events", "actor", "at")


def _create_repositories() -> None:
    op.create_table(
        "repositories",
        _id(),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
        sa.UniqueConstraint("name", name=op.f("uq_repositories_name")),
    )


def _create_revisions() -> None:
    op.create_table(
        "revisions",
        _id(),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("committed_at", _timestamp(), nullable=False),
        _fk("repository_id", "revisions", "repositories", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.UniqueConstraint("repository_id", "ref", "sha", name=op.f("uq_revisions_repository_id_ref_sha")),
    )
    _indexes("revisions", "repository_id", "sha")


def _create_environments() -> None:
    op.create_table(
        "environments",
        _id(),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("desired_revision_id", sa.Integer(), nullable=True),
        sa.Column("synced_revision_id", sa.Integer(), nullable=True),
        sa.Column("sync_status", _word(), nullable=False),
        sa.Column("health", _word(), nullable=False),
        sa.Column("auto_sync_paused", sa.Boolean(), nullable=False),
        _fk("repository_id", "environments", "repositories", "CASCADE"),
        _fk("desired_revision_id", "environments", "revisions", "SET NULL"),
        _fk("synced_revision_id", "environments", "revisions", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("repository_id", "name", name=op.f("uq_environments_repository_id_name")),
    )
    _indexes("environments", "repository_id", "desired_revision_id", "synced_revision_id")


def _create_drift_reports() -> None:
    op.create_table(
        "drift_reports",
        _id(),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("status", _word(), nullable=False),
        sa.Column("resolution", _word(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("resolved_at", _timestamp(), nullable=True),
        _fk("environment_id", "drift_reports", "environments", "CASCADE"),
        _fk("revision_id", "drift_reports", "revisions", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_reports")),
    )
    _indexes("drift_reports", "environment_id", "revision_id")


def _create_drift_items() -> None:
    op.create_table(
        "drift_items",
        _id(),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("stage", _word(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("desired", _json(none_as_null=True), nullable=True),
        sa.Column("live", _json(none_as_null=True), nullable=True),
        _fk("report_id", "drift_items", "drift_reports", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_items")),
    )
    _indexes("drift_items", "report_id")


def _create_plans() -> None:
    op.create_table(
        "plans",
        _id(),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("stages", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        _fk("environment_id", "plans", "environments", "CASCADE"),
        _fk("revision_id", "plans", "revisions", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    _indexes("plans", "environment_id", "revision_id", "fingerprint")


def _create_syncs() -> None:
    op.create_table(
        "syncs",
        _id(),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=True),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("trigger", _word(), nullable=False),
        sa.Column("status", _word(), nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _fk("environment_id", "syncs", "environments", "CASCADE"),
        _fk("revision_id", "syncs", "revisions", "SET NULL"),
        _fk("plan_id", "syncs", "plans", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_syncs")),
    )
    op.create_index("ix_syncs_environment_id_created_at", "syncs", ["environment_id", "created_at"])
    _indexes("syncs", "revision_id", "plan_id")


def _create_sync_stage_results() -> None:
    op.create_table(
        "sync_stage_results",
        _id(),
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column("stage", _word(), nullable=False),
        sa.Column("status", _word(), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("summary", _json(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=True),
        _fk("sync_id", "sync_stage_results", "syncs", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_stage_results")),
        sa.UniqueConstraint("sync_id", "stage", name=op.f("uq_sync_stage_results_sync_id_stage")),
    )
    _indexes("sync_stage_results", "sync_id")


def _create_approvals() -> None:
    op.create_table(
        "approvals",
        _id(),
        sa.Column("plan_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("decision", _word(), nullable=False),
        sa.Column("source", _word(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        _fk("sync_id", "approvals", "syncs", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    _indexes("approvals", "plan_fingerprint", "sync_id")
