"""Backups on demand: take, list and delete backup branches of the default branch.

A backup is recorded (with its audit entry) before Slack is acknowledged, then moved
forward by `advance`, one idempotent step at a time, by whichever worker holds its lease:
the worker that took the command, or the reconciler after a crash or a redeploy.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.domain.audit import AuditEvent
from bot.domain.backups import (
    UNFINISHED_BACKUP_STATUSES,
    Backup,
    BackupStatus,
    backup_branch_name,
    backup_expiry,
    check_deletable,
    is_backup_name,
)
from bot.domain.errors import Conflict, DuplicateBackup, ExternalServiceError, NotAllowed, NotFound
from bot.neon.errors import NeonError, NeonNotFound, NeonOperationTimeout
from bot.neon.models import Branch, BranchChange
from bot.services.branches import BranchLifecycle
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import AuditLog, BackupRecords, MessageRef
from bot.services.work import SYSTEM, WAIT, Change, Engine, Kind, Wait

log = logging.getLogger("lifeguard.backups")

WAIT_CHUNK_SECONDS = 5.0  # wait on Neon in chunks
CREATION_DEADLINE = timedelta(minutes=30)


class BackupNeon(BranchLifecycle, Protocol):
    """The part of the Neon client backups use."""

    def list_branches(self, search: str | None = None) -> list[Branch]: ...


class BackupServiceStore(AuditLog, Protocol):
    backups: BackupRecords


class BackupNotifier(Protocol):
    def backup_changed(self, backup: Backup) -> MessageRef | None:
        """Show the backup's state to the people concerned. Returns where a new status
        message was posted, so later changes update that same message."""
        ...


@dataclass(frozen=True)
class BackupListing:
    backup: Backup
    branch: Branch | None  # None when Neon could not be asked or no longer has it


@dataclass(frozen=True)
class Listing:
    items: list[BackupListing]
    neon_problem: str | None = None  # sizes and expiries could not be read from Neon


class BackupService:
    def __init__(self, store: BackupServiceStore, neon: BackupNeon, notifier: BackupNotifier, *,
                 retention: timedelta, worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.neon = neon
        self.notifier = notifier
        self.retention = retention
        self.now = now
        self._last_recorded_name: str | None = None
        self.work = Engine(Kind(
            name="backup", step_of=_step_of,
            steps={BackupStatus.REQUESTED: self._create_branch,
                   BackupStatus.CREATING: self._wait_until_ready,
                   BackupStatus.DELETING: self._delete_branch},
            failed=_failed, show=notifier.backup_changed,
            subject=lambda backup: backup.branch_name,
            retried=frozenset({BackupStatus.CREATING})),  # the branch exists by then
            store.backups, worker_id=worker_id, now=now)

    # --- taking a backup ----------------------------------------------------------------

    def request_backup(self, user_id: str, reason: str, *, channel_id: str | None,
                       response_url: str | None) -> Backup:
        """Record the request durably (with its audit entry). Nothing is sent to Neon yet."""
        created_at = self.now()
        name = backup_branch_name(created_at)
        # Refuse a same-second duplicate before queueing for the store's write lock: from
        # memory when this process recorded it, else with a read. The unique name in the
        # store still decides any race.
        if name == self._last_recorded_name or self.store.backups.by_branch_name(name):
            raise self._same_second(name)
        backup = Backup(
            id=uuid.uuid4().hex,
            branch_name=name,
            status=BackupStatus.REQUESTED,
            requested_by=user_id,
            reason=reason,
            created_at=created_at,
            expires_at=backup_expiry(created_at, self.retention),
            updated_at=created_at,
            step_started_at=created_at,
            channel_id=channel_id,
            response_url=response_url,
        )
        event = AuditEvent(user_id, "backup.requested", backup.branch_name,
                           {"backup_id": backup.id, "reason": reason,
                            "expires_at": backup.expires_at.isoformat()})
        try:
            recorded = self.store.backups.add(backup, event)
        except DuplicateBackup:
            raise self._same_second(name) from None
        self._last_recorded_name = name
        return recorded

    @staticmethod
    def _same_second(name: str) -> Conflict:
        return Conflict(f"A backup named `{name}` was started this same second. "
                        "`/backup list` shows it; wait a second to take another.")

    def advance(self, backup_id: str) -> Backup | None:
        """Move one unfinished backup forward as far as it goes now (bot.services.work)."""
        return self.work.advance(backup_id)

    def settle(self, backup_id: str, timeout: float = 120.0, poll: float = 0.5) -> Backup | None:
        """Advance the backup, or, when another worker holds it, wait for that worker to
        finish (bounded): for answering the person who is waiting on it."""
        return self.work.settle(backup_id, is_open=lambda b: _step_of(b) is not None,
                                timeout=timeout, poll=poll)

    def get(self, backup_id: str) -> Backup | None:
        return self.store.backups.get(backup_id)

    def _create_branch(self, backup: Backup) -> Change[Backup]:
        # A crash after Neon accepted the create but before we stored it leaves the
        # branch behind: adopt it instead of creating a second one.
        existing = self.neon.find_branch_by_name(backup.branch_name)
        if existing is not None:
            change = BranchChange(branch=existing)
        else:
            parent = self.neon.default_branch()
            change = self.neon.create_branch(
                backup.branch_name, parent_id=parent.id, expires_at=backup.expires_at)
        operation_ids = tuple(op.id for op in change.operations)
        return Change(
            replace(backup, status=BackupStatus.CREATING, branch_id=change.branch.id,
                    parent_branch_id=change.branch.parent_id, operation_ids=operation_ids),
            "backup.creating",
            {"backup_id": backup.id, "branch_id": change.branch.id,
             "parent_branch_id": change.branch.parent_id, "operation_ids": operation_ids})

    def _wait_until_ready(self, backup: Backup) -> Change[Backup] | Wait:
        assert backup.branch_id is not None
        try:
            if backup.operation_ids:
                self.neon.wait_for_operations(list(backup.operation_ids),
                                              timeout=WAIT_CHUNK_SECONDS)
            branch = self.neon.wait_for_branch_ready(backup.branch_id,
                                                     timeout=WAIT_CHUNK_SECONDS)
        except NeonOperationTimeout:
            if self.now() - backup.created_at > CREATION_DEADLINE:
                return _failed(backup, "Neon did not finish creating the branch within "
                               f"{CREATION_DEADLINE}.")
            return WAIT
        took = (self.now() - backup.created_at).total_seconds()
        return Change(
            replace(backup, status=BackupStatus.READY, logical_size=branch.logical_size,
                    error=None),
            "backup.ready",
            {"backup_id": backup.id, "branch_id": branch.id,
             "logical_size": branch.logical_size, "seconds": round(took, 1)})

    # --- listing ------------------------------------------------------------------------

    def list_backups(self) -> Listing:
        records = self.store.backups.list((BackupStatus.READY, *UNFINISHED_BACKUP_STATUSES))
        try:
            branches = {b.name: b for b in self.neon.list_branches(search="backup-")}
        except NeonError as error:
            return Listing([BackupListing(r, None) for r in records], explain_neon_error(error))
        return Listing([BackupListing(r, branches.get(r.branch_name)) for r in records])

    # --- deleting -----------------------------------------------------------------------

    def prepare_delete(self, user_id: str, branch_name: str) -> Backup:
        """Check that the branch is a backup Lifeguard took and may delete; raise otherwise.
        Checks the store first (no Neon call for a branch that is not ours)."""
        backup = self.store.backups.by_branch_name(branch_name)
        recorded = backup is not None and backup.status in (BackupStatus.READY,
                                                            BackupStatus.DELETING)
        try:
            if not recorded:
                check_deletable(branch_name=branch_name, recorded_as_backup=False,
                                is_default=False, is_protected=False)
            assert backup is not None
            if backup.status == BackupStatus.DELETING:
                raise Conflict(f"`{branch_name}` is already being deleted.")
            branch = self._neon_branch(backup)
            check_deletable(branch_name=branch_name, recorded_as_backup=True,
                            is_default=branch.default, is_protected=branch.protected)
        except (NotAllowed, Conflict, NotFound) as refusal:
            self.store.append(AuditEvent(user_id, "backup.delete_refused", branch_name,
                                         {"reason": str(refusal)}))
            raise
        self.store.append(AuditEvent(user_id, "backup.delete_asked", branch_name,
                                     {"backup_id": backup.id}))
        return backup

    def _neon_branch(self, backup: Backup) -> Branch:
        assert backup.branch_id is not None
        try:
            return self.neon.get_branch(backup.branch_id)
        except NeonNotFound:
            raise NotFound(f"Neon no longer has `{backup.branch_name}`; it may have expired "
                           "already.") from None
        except NeonError as error:
            raise ExternalServiceError(explain_neon_error(error)) from None

    def confirm_delete(self, user_id: str, backup_id: str) -> Backup:
        """Record the confirmed deletion durably; `advance` carries it out."""
        backup = self.store.backups.get(backup_id)
        if backup is None or not is_backup_name(backup.branch_name):
            raise NotFound("That backup is not known to Lifeguard.")
        confirmed = None
        if backup.status == BackupStatus.READY:
            confirmed = self.store.backups.save(
                replace(backup, status=BackupStatus.DELETING, deleted_by=user_id),
                backup.version,
                AuditEvent(user_id, "backup.delete_confirmed", backup.branch_name,
                           {"backup_id": backup_id, "branch_id": backup.branch_id}))
        if confirmed is None:
            raise Conflict(f"`{backup.branch_name}` is {backup.status.value}; "
                           "it cannot be deleted now.")
        return confirmed

    def delete_approved(self, backup_id: str, by: str) -> Backup:
        """Carry out a deletion a second person approved (the step of its change request):
        record it (once), then delete the branch now. Returns the backup: deleted, still
        deleting (Neon is slow: call again), or ready again with the reason it was not."""
        backup = self.store.backups.get(backup_id)
        if backup is None:
            raise NotFound("That backup is not known to Lifeguard.")
        if backup.status == BackupStatus.READY:
            backup = self.confirm_delete(by, backup_id)
        if backup.status == BackupStatus.DELETING:
            backup = self.work.advance(backup_id) or self.store.backups.get(backup_id) or backup
        return backup

    def _delete_branch(self, backup: Backup) -> Change[Backup] | Wait:
        assert backup.branch_id is not None
        try:
            branch = self.neon.get_branch(backup.branch_id)
            # The flags may have changed since the confirmation: check again.
            check_deletable(branch_name=backup.branch_name, recorded_as_backup=True,
                            is_default=branch.default, is_protected=branch.protected)
            change = self.neon.delete_branch(backup.branch_id)
            self.neon.wait_for_operations(list(change.operations),
                                          timeout=WAIT_CHUNK_SECONDS)
        except NeonNotFound:
            pass  # already gone: the goal is reached
        except NotAllowed as refusal:
            return Change(replace(backup, status=BackupStatus.READY, error=str(refusal)),
                          "backup.delete_refused",
                          {"backup_id": backup.id, "reason": str(refusal)})
        except NeonOperationTimeout:
            return WAIT
        except NeonError as error:
            return Change(
                replace(backup, status=BackupStatus.READY, error=explain_neon_error(error)),
                "backup.delete_failed",
                {"backup_id": backup.id, "error": explain_neon_error(error),
                 "neon_request_id": error.request_id})
        return Change(replace(backup, status=BackupStatus.DELETED, error=None),
                      "backup.deleted", {"backup_id": backup.id, "branch_id": backup.branch_id},
                      actor=backup.deleted_by or SYSTEM)

    def recent(self, limit: int = 10) -> list[Backup]:
        return self.store.backups.list(limit=limit)

    # --- the reconciler's part ------------------------------------------------------------

    def unfinished(self) -> list[Backup]:
        return self.store.backups.list(UNFINISHED_BACKUP_STATUSES)

    def mark_expired(self) -> list[Backup]:
        """Backups Neon has removed at their expiry are recorded as deleted."""
        expired: list[Backup] = []
        now = self.now()
        for backup in self.store.backups.list((BackupStatus.READY,)):
            if backup.expires_at > now or backup.branch_id is None:
                continue
            try:
                self.neon.get_branch(backup.branch_id)
                continue
            except NeonNotFound:
                pass
            except NeonError:
                continue  # cannot tell now: look again next time
            done = self.store.backups.save(
                replace(backup, status=BackupStatus.DELETED), backup.version,
                AuditEvent(SYSTEM, "backup.expired", backup.branch_name,
                           {"backup_id": backup.id, "expires_at": backup.expires_at.isoformat()}))
            if done is not None:
                expired.append(done)
        return expired


# --- the steps' shared rules -----------------------------------------------------------


def _step_of(backup: Backup) -> str | None:
    return backup.status.value if backup.status in UNFINISHED_BACKUP_STATUSES else None


def _failed(backup: Backup, reason: str) -> Change[Backup]:
    return Change(replace(backup, status=BackupStatus.FAILED, error=reason), "backup.failed",
                  {"backup_id": backup.id, "error": reason})
