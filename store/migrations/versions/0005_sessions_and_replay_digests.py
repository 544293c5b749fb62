"""Server-side dashboard sessions, and the body digest of each accepted webhook delivery.

`dashboard_sessions` holds one row per signed-in browser (the SHA-256 of the cookie's session id),
so logout can end a session for good. `webhook_deliveries.body_digest` lets receivers refuse the
same signed body sent again under a new delivery id. (No outbox table: a sync's own row —
`pending`, or `approved` while no worker holds its environment's lock — is what the sweeper
delivers when the broker was down.) Portable types as 0001 explains.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_dashboard_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_dashboard_sessions_token_hash")),
    )
    for column in ("user_id", "expires_at"):
        op.create_index(op.f(f"ix_dashboard_sessions_{column}"), "dashboard_sessions", [column], unique=False)
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("body_digest", sa.String(64), nullable=True))
        batch.create_unique_constraint(op.f("uq_webhook_deliveries_host_body_digest"), ["host", "body_digest"])


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_constraint(op.f("uq_webhook_deliveries_host_body_digest"), type_="unique")
        batch.drop_column("body_digest")
    op.drop_table("dashboard_sessions")
