"""`stored_secrets`: secrets a config repo refers to by name, sealed, scoped to a repo/environment.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("scope", sa.String(510), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_secrets")),
        sa.UniqueConstraint("name", "scope", name=op.f("uq_stored_secrets_name_scope")),
    )
    op.create_index(op.f("ix_stored_secrets_name"), "stored_secrets", ["name"], unique=False)


def downgrade() -> None:
    op.drop_table("stored_secrets")
