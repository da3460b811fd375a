"""The small protocols services use to reach the outside. `storage` and `bot.neon` satisfy
them; tests may pass in-process fakes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bot.domain.audit import AuditEntry, AuditEvent, ChainBreak
from bot.domain.backups import Backup
from bot.domain.drills import Drill
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
