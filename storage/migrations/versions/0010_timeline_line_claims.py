"""Timeline lines are claimed before they are posted: who is posting a line
(`claimed_by`), since when (`claimed_at`), and until when the claim holds
(`claimed_until`), so two callers never both post one line and a claim whose poster died
runs out and is taken over.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-17 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL, naive UTC on SQLite


def upgrade() -> None:
    with op.batch_alter_table("incident_entries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(), nullable=True))
        batch.add_column(sa.Column("claimed_at", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("claimed_until", _TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incident_entries") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
