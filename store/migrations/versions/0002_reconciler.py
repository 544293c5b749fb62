"""Reconciler bookkeeping: what the last poll saw, and the sealed payload of a plan.

`repositories.head_sha / last_polled_at / poll_error` let a poll that finds nothing new stop
before rendering; `plans.payload` holds what apply needs (sealed: Kubernetes Secrets are in it);
`plans.superseded` marks a plan a newer one replaced before it was applied.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("head_sha", sa.String(64), nullable=True))
        batch.add_column(sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("poll_error", sa.Text(), nullable=True))
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("payload", sa.Text(), nullable=True))
        batch.add_column(sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("superseded")
        batch.drop_column("payload")
    with op.batch_alter_table("repositories") as batch:
        batch.drop_column("poll_error")
        batch.drop_column("last_polled_at")
        batch.drop_column("head_sha")
