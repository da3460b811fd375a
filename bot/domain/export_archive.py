"""What the export archive (the port bot.services.ports.ExportArchive, implemented in
bot/exports/archive.py) answers: a database dumped, an export found, an export checked.
Standard library and bot/domain only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.export_manifest import DumpedDatabase, Manifest


@dataclass(frozen=True)
class DatabaseDump:
    """One database dumped into an export's folder, and what read it."""

    dumped: DumpedDatabase
    server_version: str  # the source server's, e.g. "17.5"
    pg_dump_version: str  # of the pg_dump that read it, e.g. "18.6"


@dataclass(frozen=True)
class FoundExport:
    """A finished export (a folder holding a manifest) in the store. `manifest` is None
    when the manifest cannot be read; `problem` then says why."""

    folder: str  # relative to EXPORT_URL, `<project id>/<YYYYMMDD-HHMMSS>-<id>/`
    export_id: str
    started_at: datetime
    manifest: Manifest | None
    problem: str | None = None

    @property
    def size(self) -> int | None:
        """Bytes of all its files, as the manifest says; None without a manifest."""
        if self.manifest is None:
            return None
        return sum(database.size for database in self.manifest.databases)


@dataclass(frozen=True)
class FileCheck:
    """What the check of one export file found."""

    file: str
    passed: bool
    archive_read: bool  # decrypted, decompressed and read whole by pg_restore
    problem: str | None = None  # why it failed, a sentence naming the file


@dataclass(frozen=True)
class ExportCheck:
    """The check of one export: each file, and what is wrong with the folder as a whole
    (an unreadable manifest, SHA256SUMS disagreeing with it)."""

    folder: str
    files: tuple[FileCheck, ...]
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems and all(check.passed for check in self.files)

    @property
    def archives_read(self) -> bool:
        """Every file's archive was read whole (not only its bytes checked)."""
        return bool(self.files) and all(check.archive_read for check in self.files)

    def failures(self) -> list[str]:
        """Every problem, folder-wide first, as sentences (each file's names the file)."""
        return [*self.problems, *(check.problem for check in self.files
                                  if not check.passed and check.problem)]
