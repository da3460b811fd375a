"""Change requests (restores, promotions), and audit entries found by subject.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-14 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL, naive UTC on SQLite


def upgrade() -> None:
    op.create_table(
        "change_requests",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("source_branch_id", sa.String(), nullable=False),
        sa.Column("source_branch_name", sa.String(), nullable=False),
        sa.Column("target_branch_name", sa.String(), nullable=False),
        sa.Column("target_branch_id", sa.String(), nullable=True),
        sa.Column("instant", _TIMESTAMP, nullable=True),
        sa.Column("preserve_under_name", sa.String(), nullable=True),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("required_approvals", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("approvals", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("step", sa.String(), nullable=True),
        sa.Column("branch_id", sa.String(), nullable=True),
        sa.Column("operation_ids", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("verification", sa.Text(), nullable=True),
        sa.Column("card_channel", sa.String(), nullable=True),
        sa.Column("card_ts", sa.String(), nullable=True),
        sa.Column("requester_channel", sa.String(), nullable=True),
        sa.Column("response_url", sa.Text(), nullable=True),
        sa.Column("finished_at", _TIMESTAMP, nullable=True),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_until", _TIMESTAMP, nullable=True),
    )
    op.create_index("ix_change_requests_state", "change_requests", ["state"])
    op.create_index("ix_change_requests_created_at", "change_requests", ["created_at"])
    # CREATE INDEX neither updates nor deletes entries: the append-only triggers allow it.
    op.create_index("ix_audit_entries_subject", "audit_entries", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_audit_entries_subject", table_name="audit_entries")
    op.drop_index("ix_change_requests_created_at", table_name="change_requests")
    op.drop_index("ix_change_requests_state", table_name="change_requests")
    op.drop_table("change_requests")
