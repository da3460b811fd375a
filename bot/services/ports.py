"""The small protocols services use to reach the outside. `storage` and `bot.neon` satisfy
them; tests may pass in-process fakes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.domain.audit import AuditEntry, AuditEvent, ChainBreak
from bot.domain.backups import Backup, BackupStatus
from bot.domain.drills import Drill, DrillState
from bot.domain.requests import ChangeRequest, RequestState


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


class BackupStore(Protocol):
    def add_backup(self, backup: Backup, event: AuditEvent) -> Backup:
        """Insert the backup and append the event in one transaction.
        Raises DuplicateBackup when the branch name is taken."""
        ...

    def get_backup(self, backup_id: str) -> Backup | None: ...

    def backup_by_branch_name(self, branch_name: str) -> Backup | None: ...

    def list_backups(self, statuses: tuple[BackupStatus, ...] | None = None) -> list[Backup]:
        """Newest first."""
        ...

    def update_backup(self, backup_id: str, expected_status: BackupStatus,
                      event: AuditEvent | None = None, **changes: Any) -> Backup | None:
        """Compare-and-set: apply `changes` only if the status is still `expected_status`,
        appending `event` in the same transaction. None when the status had moved on."""
        ...

    def claim_backup(self, backup_id: str, owner: str, lease_seconds: float) -> Backup | None:
        """Take the work lease on an unfinished backup, or None if another worker holds it."""
        ...

    def release_backup(self, backup_id: str, owner: str) -> None: ...



class RequestStore(Protocol):
    def add_request(self, request: ChangeRequest, event: AuditEvent) -> ChangeRequest:
        """Insert the request and append the event in one transaction.
        Raises DuplicateRequest when the id is taken."""
        ...

    def get_request(self, request_id: str) -> ChangeRequest | None: ...

    def list_requests(self, states: tuple[RequestState, ...] | None = None,
                      limit: int = 50) -> list[ChangeRequest]:
        """Newest first."""
        ...

    def update_request(self, request_id: str, expected_version: int,
                       event: AuditEvent | None = None, **changes: Any) -> ChangeRequest | None:
        """Compare-and-set on `version`: apply `changes` (and append `event`) in one
        transaction only if the stored version is still `expected_version`; the version is
        bumped. A `state` change must be allowed by bot.domain.requests.check_transition
        (ValueError otherwise). None when another change got there first."""
        ...

    def claim_request(self, request_id: str, owner: str,
                      lease_seconds: float) -> ChangeRequest | None:
        """Take the work lease, or None if another worker holds it (does not bump version)."""
        ...

    def release_request(self, request_id: str, owner: str) -> None: ...

    def audit_for(self, subject: str) -> list[AuditEntry]:
        """Every audit entry about `subject` (a request id), oldest first."""
        ...


# --- restore drills (bot.services.drills) ------------------------------------------------



class DrillStore(Protocol):
    def add_drill(self, drill: Drill, event: AuditEvent) -> Drill:
        """Insert the drill and append the event in one transaction. Raises
        DuplicateDrill (and records nothing) when another drill is open or the id or
        branch name is taken."""
        ...

    def get_drill(self, drill_id: str) -> Drill | None: ...

    def list_drills(self, states: tuple[DrillState, ...] | None = None,
                    limit: int = 50) -> list[Drill]:
        """Newest first."""
        ...

    def update_drill(self, drill_id: str, expected_version: int,
                     event: AuditEvent | None = None, **changes: Any) -> Drill | None:
        """Compare-and-set on `version` (bumped), `event` appended in the same transaction.
        A `state` change must be allowed by bot.domain.drills.check_drill_transition
        (ValueError otherwise). None when another change got there first."""
        ...

    def claim_drill(self, drill_id: str, owner: str, lease_seconds: float) -> Drill | None:
        """Take or extend the work lease, or None if another worker holds it."""
        ...

    def release_drill(self, drill_id: str, owner: str) -> None: ...

    def last_successful_drill(self) -> Drill | None: ...

    def audit_for(self, subject: str) -> list[AuditEntry]: ...


# --- end of restore drills --------------------------------------------------------------


class Store(AuditLog, BackupStore, RequestStore, Protocol):
    def ping(self) -> None:
        """Raise if the store does not answer."""
        ...
