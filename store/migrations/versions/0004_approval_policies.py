"""Approvals the change cannot lower: admins' approval policies, host-verified commit identities,
users' stable Git host ids, and previews that wait for a trusted member's go-ahead.

`approval_policies` holds the server-side policy per `repository/environment` (names, not foreign
keys: it may be set before the environment exists). `commit_identities` holds the Git host accounts
the host vouches for per commit (push sender, PR author, resolved commit author/committer).
`users.{github,gitlab,gitea}_id` match PR reviewers and those identities to users. `previews.held`,
`go_ahead_sha`, `go_ahead_by` record why a pull request head waits and who let it go on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOST_IDS = ("github_id", "gitlab_id", "gitea_id")
PREVIEW_COLUMNS = ("held", "go_ahead_sha", "go_ahead_by")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        for column in HOST_IDS:
            batch.add_column(sa.Column(column, sa.String(64), nullable=True))
            batch.create_unique_constraint(op.f(f"uq_users_{column}"), [column])
    with op.batch_alter_table("previews") as batch:
        batch.add_column(sa.Column("held", sa.Text(), nullable=True))
        batch.add_column(sa.Column("go_ahead_sha", sa.String(64), nullable=True))
        batch.add_column(sa.Column("go_ahead_by", sa.String(255), nullable=True))
    op.create_table(
        "approval_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(253), nullable=False),
        sa.Column("environment", sa.String(253), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("min_approvals", sa.Integer(), nullable=False),
        sa.Column("approvers", _json(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_policies")),
        sa.UniqueConstraint("repository", "environment", name=op.f("uq_approval_policies_repository_environment")),
    )
    op.create_table(
        "commit_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("host", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("login", sa.String(255), nullable=False),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"],
                                name=op.f("fk_commit_identities_repository_id_repositories"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commit_identities")),
    )
    op.create_index("ix_commit_identities_repository_id_sha", "commit_identities", ["repository_id", "sha"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_commit_identities_repository_id_sha", table_name="commit_identities")
    op.drop_table("commit_identities")
    op.drop_table("approval_policies")
    with op.batch_alter_table("previews") as batch:
        for column in reversed(PREVIEW_COLUMNS):
            batch.drop_column(column)
    with op.batch_alter_table("users") as batch:
        for column in reversed(HOST_IDS):
            batch.drop_constraint(op.f(f"uq_users_{column}"), type_="unique")
            batch.drop_column(column)
