"""Exports off Neon: one record per export, moved forward by the work engine.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL, naive UTC on SQLite


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False, unique=True),
        sa.Column("branch_name", sa.String(), nullable=False, unique=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("source_backup", sa.String(), nullable=True),
        sa.Column("source_branch_id", sa.String(), nullable=True),
        sa.Column("source_branch_name", sa.String(), nullable=True),
        sa.Column("branch_id", sa.String(), nullable=True),
        sa.Column("operation_ids", sa.Text(), nullable=False),
        sa.Column("folder_claimed", sa.Boolean(), nullable=False),
        sa.Column("databases", sa.Text(), nullable=False),
        sa.Column("dumps", sa.Text(), nullable=False),
        sa.Column("dumps_finished_at", _TIMESTAMP, nullable=True),
        sa.Column("checked_at", _TIMESTAMP, nullable=True),
        sa.Column("check_passed", sa.Boolean(), nullable=True),
        sa.Column("archive_read", sa.Boolean(), nullable=False),
        sa.Column("check_problems", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failed_step", sa.String(), nullable=True),
        sa.Column("cleanup_error", sa.Text(), nullable=True),
        sa.Column("objects_removed", sa.BigInteger(), nullable=True),
        sa.Column("branch_deleted", sa.Boolean(), nullable=False),
        sa.Column("finished_at", _TIMESTAMP, nullable=True),
        sa.Column("deleted_by", sa.String(), nullable=True),
        sa.Column("channel_id", sa.String(), nullable=True),
        sa.Column("response_url", sa.Text(), nullable=True),
        sa.Column("card_channel", sa.String(), nullable=True),
        sa.Column("card_ts", sa.String(), nullable=True),
        sa.Column("step_started_at", _TIMESTAMP, nullable=True),
        sa.Column("step_timings", sa.Text(), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_until", _TIMESTAMP, nullable=True),
    )
    op.create_index("ix_exports_state", "exports", ["state"])
    op.create_index("ix_exports_created_at", "exports", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_exports_created_at", table_name="exports")
    op.drop_index("ix_exports_state", table_name="exports")
    op.drop_table("exports")
