"""One engine for long work: every kind of work has a version, one card reference and its
step timings.

Backups compared-and-set on their status; now, like requests and drills, on `version`.
Their status message was kept as `channel_id`/`message_ts`, where `channel_id` is also
where the backup was asked for: the card gets `card_channel`/`card_ts` of its own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("backups") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False,
                                   server_default="1"))
        batch.alter_column("message_ts", new_column_name="card_ts",
                           existing_type=sa.String(), existing_nullable=True)
        batch.add_column(sa.Column("card_channel", sa.String(), nullable=True))
        batch.add_column(sa.Column("step_started_at", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("step_timings", sa.Text(), nullable=False,
                                   server_default="{}"))
    # A card that was posted is in the channel the backup was asked in.
    op.execute("UPDATE backups SET card_channel = channel_id WHERE card_ts IS NOT NULL")
    with op.batch_alter_table("backups") as batch:
        batch.alter_column("version", server_default=None, existing_type=sa.Integer(),
                           existing_nullable=False)
        batch.alter_column("step_timings", server_default=None, existing_type=sa.Text(),
                           existing_nullable=False)
    with op.batch_alter_table("change_requests") as batch:
        batch.add_column(sa.Column("step_started_at", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("step_timings", sa.Text(), nullable=False,
                                   server_default="{}"))
    with op.batch_alter_table("change_requests") as batch:
        batch.alter_column("step_timings", server_default=None, existing_type=sa.Text(),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("change_requests") as batch:
        batch.drop_column("step_timings")
        batch.drop_column("step_started_at")
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("step_timings")
        batch.drop_column("step_started_at")
        batch.drop_column("card_channel")
        batch.alter_column("card_ts", new_column_name="message_ts",
                           existing_type=sa.String(), existing_nullable=True)
        batch.drop_column("version")
