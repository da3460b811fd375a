"""Lifeguard's own store: SQLModel tables, Alembic migrations, the audit chain."""

from storage.audit_export import read_audit_export, write_audit_export
from storage.migrate import current_revision, upgrade_to_head
from storage.store import SqlStore

__all__ = [
    "SqlStore",
    "current_revision",
    "read_audit_export",
    "upgrade_to_head",
    "write_audit_export",
]
