"""Pruning is a change request: its plan names every backup branch it deletes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 00:00:00
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
    with op.batch_alter_table("change_requests") as batch:
        batch.add_column(sa.Column("branches", sa.Text(), nullable=False,
                                   server_default="[]"))
    with op.batch_alter_table("change_requests") as batch:
        batch.alter_column("branches", server_default=None, existing_type=sa.Text(),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("change_requests") as batch:
        batch.drop_column("branches")
