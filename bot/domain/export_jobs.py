"""An export as Lifeguard records it: a stored job on the one engine for long work, moved
forward step by step (bot/services/exports.py). Standard library and bot/domain only.

    running:  create_branch -> wait_branch -> dump (once per database) -> finish -> verify
              -> drop_branch -> succeeded
    failure:  any running step -> cleaning (cleanup: the folder's objects and the branch
              removed) -> failed
    retention: succeeded -> deleting (delete: the folder's objects) -> deleted

The branch the dumps read is `export-<export id>`, so a create retried after a crash finds
the branch it made. The folder is `<project>/<YYYYMMDD-HHMMSS>-<export id>/`; it is
`folder_claimed` once found empty, and only a claimed folder is ever cleaned up, so
objects Lifeguard did not write there are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.domain.export_archive import DatabaseDump
from bot.domain.export_manifest import DumpedDatabase, TableRows

EXPORT_BRANCH_PREFIX = "export-"


class ExportState(StrEnum):
    RUNNING = "running"
    CLEANING = "cleaning"  # failed; its objects and branch are being removed
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DELETING = "deleting"  # retention let it go; its objects are being removed
    DELETED = "deleted"


class ExportStep(StrEnum):
    CREATE_BRANCH = "create_branch"
    WAIT_BRANCH = "wait_branch"
    DUMP = "dump"
    FINISH = "finish"
    VERIFY = "verify"
    DROP_BRANCH = "drop_branch"
    CLEANUP = "cleanup"
    DELETE = "delete"
    DONE = "done"


UNFINISHED_EXPORT_STATES = (ExportState.RUNNING, ExportState.CLEANING, ExportState.DELETING)
_ALLOWED = {
    ExportState.RUNNING: {ExportState.CLEANING, ExportState.SUCCEEDED},
    ExportState.CLEANING: {ExportState.FAILED},
    ExportState.SUCCEEDED: {ExportState.DELETING},
    ExportState.DELETING: {ExportState.DELETED, ExportState.SUCCEEDED},
    ExportState.FAILED: set(),
    ExportState.DELETED: set(),
}


def check_export_transition(before: ExportState, after: ExportState) -> None:
    if after not in _ALLOWED[before]:
        raise ValueError(f"an export cannot go from {before.value} to {after.value}")


@dataclass(frozen=True)
class Export:
    id: str  # the export id: in the folder's and the branch's names
    state: ExportState
    step: ExportStep
    requested_by: str  # a Slack user id, or "scheduler"
    reason: str
    folder: str  # relative to EXPORT_URL
    branch_name: str  # the temporary branch the dumps read
    created_at: datetime  # also the folder's time
    updated_at: datetime
    version: int = 1
    source_backup: str | None = None  # the backup branch asked for; None: the default branch
    source_branch_id: str | None = None
    source_branch_name: str | None = None  # as found at the create step
    branch_id: str | None = None
    operation_ids: tuple[str, ...] = ()
    folder_claimed: bool = False  # found empty: what is in it now is this export's
    databases: tuple[str, ...] = ()  # to dump, in this order
    dumps: tuple[DatabaseDump, ...] = ()  # done so far
    dumps_finished_at: datetime | None = None  # the manifest's finished_at
    checked_at: datetime | None = None  # the last check of its files
    check_passed: bool | None = None
    archive_read: bool = False  # that check also read the archives whole
    check_problems: tuple[str, ...] = ()
    error: str | None = None
    failed_step: str | None = None
    cleanup_error: str | None = None
    objects_removed: int | None = None
    branch_deleted: bool = False
    finished_at: datetime | None = None
    deleted_by: str | None = None
    channel_id: str | None = None
    response_url: str | None = None
    card_channel: str | None = None
    card_ts: str | None = None
    step_started_at: datetime | None = None
    step_timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes written so far (all its files once it succeeded)."""
        return sum(done.dumped.size for done in self.dumps)

    @property
    def source(self) -> str:
        """What it copies, for people: the backup branch, or the default branch's name."""
        return self.source_backup or self.source_branch_name or "the default branch"

    def seconds(self, until: datetime) -> float:
        return max((until - self.created_at).total_seconds(), 0.0)

    def next_database(self) -> str | None:
        done = {d.dumped.database for d in self.dumps}
        return next((name for name in self.databases if name not in done), None)


def export_branch_name(export_id: str) -> str:
    return EXPORT_BRANCH_PREFIX + export_id


def throughput(size: int, seconds: float) -> float | None:
    """Bytes a second, None when no time passed."""
    return size / seconds if seconds > 0 else None


# A DatabaseDump as JSON (the record's `dumps` column), and back.


def dump_as_json(dump: DatabaseDump) -> dict[str, Any]:
    dumped = dump.dumped
    return {"database": dumped.database, "file": dumped.file, "size": dumped.size,
            "sha256": dumped.sha256, "snapshot_at": dumped.snapshot_at.isoformat(),
            "lsn": dumped.lsn, "server_version": dump.server_version,
            "pg_dump_version": dump.pg_dump_version,
            "tables": [[t.schema, t.table, t.rows] for t in dumped.tables]}


def dump_from_json(data: dict[str, Any]) -> DatabaseDump:
    dumped = DumpedDatabase(
        database=data["database"], file=data["file"], size=int(data["size"]),
        sha256=data["sha256"], snapshot_at=datetime.fromisoformat(data["snapshot_at"]),
        lsn=data["lsn"],
        tables=tuple(TableRows(schema, table, int(rows)) for schema, table, rows
                     in data["tables"]))
    return DatabaseDump(dumped, data["server_version"], data["pg_dump_version"])
