"""`environments.sync_status` is gone: an environment's sync status is derived when it is read.

DESIGN.md defines the word by facts the store already holds (desired and synced revisions, open drift
reports, a sync awaiting approval); `reconciler.status.status_of` computes it from them for every
reader, so no transition has to remember to keep a copy right. A downgrade brings the column back
as `Unknown`; the old code sets it again at each environment's next sync.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("sync_status")


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("sync_status", sa.String(length=32), nullable=False, server_default="Unknown"))
