"""Restore drills.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-20 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL, naive UTC on SQLite


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("started_by", sa.String(), nullable=False),
        sa.Column("target_instant", _TIMESTAMP, nullable=False),
        sa.Column("branch_name", sa.String(), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("channel_id", sa.String(), nullable=True),
        sa.Column("source_branch_id", sa.String(), nullable=True),
        sa.Column("source_branch_name", sa.String(), nullable=True),
        sa.Column("branch_id", sa.String(), nullable=True),
        sa.Column("operation_ids", sa.Text(), nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=True),
        sa.Column("step_started_at", _TIMESTAMP, nullable=True),
        sa.Column("step_timings", sa.Text(), nullable=False),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("rpo_seconds", sa.Float(), nullable=True),
        sa.Column("newest_restored_at", _TIMESTAMP, nullable=True),
        sa.Column("verification", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failed_step", sa.String(), nullable=True),
        sa.Column("next_step", sa.Text(), nullable=True),
        sa.Column("cleanup_error", sa.Text(), nullable=True),
        sa.Column("branch_deleted", sa.Boolean(), nullable=False),
        sa.Column("finished_at", _TIMESTAMP, nullable=True),
        sa.Column("card_channel", sa.String(), nullable=True),
        sa.Column("card_ts", sa.String(), nullable=True),
        # "open" while requested or running, NULL after: at most one open drill
        sa.Column("open_slot", sa.String(), nullable=True),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_until", _TIMESTAMP, nullable=True),
        sa.UniqueConstraint("branch_name", name="uq_drills_branch_name"),
        sa.UniqueConstraint("open_slot", name="uq_drills_open_slot"),
    )
    op.create_index("ix_drills_state", "drills", ["state"])
    op.create_index("ix_drills_created_at", "drills", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_drills_created_at", table_name="drills")
    op.drop_index("ix_drills_state", table_name="drills")
    op.drop_table("drills")
