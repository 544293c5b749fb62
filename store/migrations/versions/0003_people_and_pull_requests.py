"""People and pull requests: users, groups, role bindings, API tokens; webhook deliveries and previews.

Also each repository's Git host, its API URL and repository name there, a sealed host token and a
sealed webhook secret. Spelled with portable types as 0001 explains.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "groups", "group_members", "role_bindings", "api_tokens", "webhook_deliveries", "previews")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def _fk(column: str, table: str, referred: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{referred}.id"], name=op.f(f"fk_{table}_{column}_{referred}"),
                                   ondelete=ondelete)


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("host", sa.String(32), nullable=False, server_default="generic"))
        batch.add_column(sa.Column("host_api_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("host_repository", sa.String(255), nullable=True))
        batch.add_column(sa.Column("host_token", sa.Text(), nullable=True))
        batch.add_column(sa.Column("webhook_secret", sa.Text(), nullable=True))
    op.create_table(
        "users", _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "groups", _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_groups_name")),
    )
    op.create_table(
        "group_members", _id(),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _fk("group_id", "group_members", "groups", "CASCADE"),
        _fk("user_id", "group_members", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_members")),
        sa.UniqueConstraint("group_id", "user_id", name=op.f("uq_group_members_group_id_user_id")),
    )
    _indexes("group_members", "group_id", "user_id")
    op.create_table(
        "role_bindings", _id(),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_bindings")),
        sa.UniqueConstraint("subject", "role", "scope", name=op.f("uq_role_bindings_subject_role_scope")),
    )
    _indexes("role_bindings", "subject")
    op.create_table(
        "api_tokens", _id(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=True),
        sa.Column("last_used_at", _timestamp(), nullable=True),
        _fk("user_id", "api_tokens", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    _indexes("api_tokens", "user_id")
    op.create_table(
        "webhook_deliveries", _id(),
        sa.Column("host", sa.String(32), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("received_at", _timestamp(), nullable=False),
        _fk("repository_id", "webhook_deliveries", "repositories", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("host", "delivery_id", name=op.f("uq_webhook_deliveries_host_delivery_id")),
    )
    _indexes("webhook_deliveries", "repository_id", "received_at")
    op.create_table(
        "previews", _id(),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("base_ref", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("comment_id", sa.String(64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("environments", _json(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        _fk("repository_id", "previews", "repositories", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_previews")),
        sa.UniqueConstraint("repository_id", "number", name=op.f("uq_previews_repository_id_number")),
    )
    _indexes("previews", "repository_id")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    with op.batch_alter_table("repositories") as batch:
        for column in ("webhook_secret", "host_token", "host_repository", "host_api_url", "host"):
            batch.drop_column(column)
