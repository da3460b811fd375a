"""The small protocols services use to reach the outside. `storage` and `bot.neon` satisfy
them; tests may pass in-process fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bot.domain.audit import AuditEntry, AuditEvent, ChainBreak
from bot.domain.backups import Backup
from bot.domain.drills import Drill
from bot.domain.export_archive import DatabaseDump, ExportCheck, FoundExport
from bot.domain.export_manifest import Manifest
from bot.domain.requests import ChangeRequest


@dataclass(frozen=True)
class MessageRef:
    """Where a status card was posted, so later changes update that same message."""

    channel_id: str
    ts: str



class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> AuditEntry: ...

    def entries(self, since: datetime | None = None) -> Iterator[AuditEntry]: ...

    def verify(self) -> tuple[int, ChainBreak | None]:
        """(number of entries checked, first break or None)."""
        ...


E = TypeVar("E")


class Records(Protocol[E]):
    """The stored records of one kind of entity (backups, change requests, drills), each
    saved whole. storage.records is the implementation."""

    def add(self, entity: E, event: AuditEvent) -> E:
        """Insert the record and append `event` in one transaction. Raises the entity's
        Duplicate… error of bot.domain.errors (and records nothing) when its id or another
        unique key (a branch name, the one open drill) is taken."""
        ...

    def get(self, entity_id: str) -> E | None: ...

    def list(self, states: tuple[Any, ...] | None = None, *,
             limit: int | None = None) -> list[E]:
        """Records in `states` (all when None), newest first."""
        ...

    def save(self, entity: E, expected_version: int, event: AuditEvent | None = None, *,
             lease_owner: str | None = None) -> E | None:
        """Compare-and-set: write the whole record if its stored version is still
        `expected_version` (and `lease_owner`, when given, still holds its lease),
        appending `event` in the same transaction; the version is bumped. None when another
        change got there first. ValueError for a change of state the domain forbids."""
        ...

    def counts(self, *columns: str) -> dict[tuple[Any, ...], int]:
        """How many records have each combination of these columns' values."""
        ...

    def claim(self, entity_id: str, owner: str, lease_seconds: float) -> E | None:
        """Take or extend the work lease, or None if another worker holds it."""
        ...

    def release(self, entity_id: str, owner: str) -> None: ...


class BackupRecords(Records[Backup], Protocol):
    def by_branch_name(self, branch_name: str) -> Backup | None: ...


class DrillRecords(Records[Drill], Protocol):
    def last_successful(self) -> Drill | None: ...


class Store(AuditLog, Protocol):
    """Lifeguard's store: the audit trail and the records of each kind of work."""

    backups: BackupRecords
    requests: Records[ChangeRequest]
    drills: DrillRecords

    def audit_for(self, subject: str) -> list[AuditEntry]:
        """Every audit entry about `subject`, oldest first."""
        ...

    def ping(self) -> None:
        """Raise if the store does not answer."""
        ...


class ExportArchive(Protocol):
    """Exports' objects in the S3-compatible store at EXPORT_URL, for one Neon project
    (bot/exports/archive.py). `folder` is always an export's folder relative to EXPORT_URL,
    as bot.domain.exports.folder_name makes it. Every failure is an
    bot.domain.export_errors.ExportError whose message a person can act on."""

    @property
    def recipients(self) -> tuple[str, ...]:
        """The age public keys every export is encrypted to."""
        ...

    @property
    def can_decrypt(self) -> bool:
        """An age identity is configured (EXPORT_IDENTITY): checks read the archives
        whole and restores are possible."""
        ...

    def where(self, folder: str = "") -> str:
        """`s3://bucket/prefix/<folder>`, for messages."""
        ...

    def check(self) -> None:
        """ObjectStoreError unless the bucket exists and the credentials reach it."""
        ...

    def objects(self, folder: str) -> dict[str, int]:
        """Every object in `folder`: name relative to it -> size."""
        ...

    def dump_database(self, folder: str, uri: str, database: str, *,
                      progress: Callable[[int], None] | None = None) -> DatabaseDump:
        """pg_dump of `database` (its connection URI `uri`) in a snapshot taken now,
        streamed through zstd and age into `<folder><database>.dump.zst.age` by multipart
        upload; `progress(bytes written)` as it goes. Aborts the key's unfinished uploads
        first; refuses (ObjectStoreError "exists") when the object is there already.
        Leaves no object and no parts behind when it fails."""
        ...

    def discard_file(self, folder: str, file: str) -> None:
        """Removes `<folder><file>` and its unfinished uploads: what an interrupted
        earlier try of the same export left there. Nothing there is not an error."""
        ...

    def finish(self, folder: str, manifest: Manifest) -> None:
        """Writes SHA256SUMS, then manifest.json, last. A retry that writes the same bytes
        again succeeds; different bytes under an existing name are refused."""
        ...

    def list_exports(self) -> list[FoundExport]:
        """The project's finished exports (folders holding a manifest), oldest first."""
        ...

    def find(self, export_id: str) -> FoundExport | None:
        """The project's finished export with this id, or None."""
        ...

    def verify(self, folder: str) -> ExportCheck:
        """Reads every file back: size and SHA-256 against the manifest always; with an
        identity, also decrypted, decompressed and read whole by pg_restore. A mismatch is
        in the answer; ExportError only when the store cannot be read at all."""
        ...

    def restore_file(self, folder: str, file: str, target_uri: str, *,
                     expected_sha256: str | None = None) -> None:
        """Restores one database file of the export into the PostgreSQL database at
        `target_uri` with pg_restore. ExportError when no identity is configured;
        RestoreFailed when the bytes read were not `expected_sha256` (given)."""
        ...

    def delete(self, folder: str) -> int:
        """Removes every object in `folder` and its unfinished uploads; how many objects."""
        ...
