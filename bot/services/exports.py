"""Exports off Neon: `/backup export`, the scheduled export, `/backup exports`, retention,
and the check of an export. The steps are bot/services/export_steps.py's, run by the one
engine (bot.services.work); the objects are reached through the ExportArchive port.

An export is recorded (with its audit entry) before Slack is acknowledged, then moved
forward by whichever worker holds its lease. A failure removes what the export wrote and
its branch (the cleanup step), then alerts in ALERTS_CHANNEL once.

Retention: after a scheduled export succeeds, the succeeded exports Lifeguard recorded are
planned with bot.domain.retention (EXPORT_RETENTION_WEEKLY weekly, _MONTHLY monthly, no
daily; the newest is always kept) and the rest deleted, as the scheduled prune of backup
branches does: the policy, set by whoever deploys Lifeguard, is the agreement a second
person would give, and nothing else deletes an export (no Slack command does). Objects
Lifeguard did not record are never deleted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from bot.domain.audit import AuditEvent
from bot.domain.backups import BackupStatus, validate_reason
from bot.domain.errors import (
    Conflict,
    DuplicateExport,
    InvalidInput,
    LifeguardError,
    NotAllowed,
    NotFound,
)
from bot.domain.export_archive import FoundExport
from bot.domain.export_jobs import (
    UNFINISHED_EXPORT_STATES,
    Export,
    ExportState,
    ExportStep,
    export_branch_name,
)
from bot.domain.exports import folder_name
from bot.domain.retention import PruneCandidate, RetentionPolicy, plan_prune
from bot.domain.text import escape
from bot.services.alerts import SCHEDULER, Alert, Alerts, JobResult
from bot.services.export_steps import ExportNeon, ExportSteps
from bot.services.ports import AuditLog, BackupRecords, ExportArchive, MessageRef, Records
from bot.services.work import Change, Engine, Kind

log = logging.getLogger("lifeguard.exports")

SCHEDULED_REASON = "scheduled export"
EXPORTS_OFF = ("Exports are off in this Lifeguard. To turn them on, an admin sets "
               "`EXPORT_URL` (`s3://bucket/prefix`) and `EXPORT_RECIPIENTS` (age public keys "
               "`age1…`; `age-keygen` makes a pair), and `EXPORT_S3_ENDPOINT` for a store "
               "other than AWS (R2, MinIO, B2), then restarts it; `python -m bot doctor` "
               "checks the bucket.")
LISTED_BACKUPS = 5
SCHEDULED_WAIT_SECONDS = 12 * 3600.0  # the scheduled job waits this long for its export


class ExportServiceStore(AuditLog, Protocol):
    exports: Records[Export]
    backups: BackupRecords


class ExportNotifier(Protocol):
    def export_changed(self, export: Export) -> MessageRef | None:
        """Show the export's state; where a new card was posted, so later changes update
        that card."""
        ...

    def export_progress(self, export: Export, written: int, database: str) -> None:
        """Show how far the dump of `database` is (bytes written of the whole export)."""
        ...


class ExportsOff(NotAllowed):
    def __init__(self) -> None:
        super().__init__(EXPORTS_OFF)


@dataclass(frozen=True)
class ExportListing:
    exports: list[Export]  # recorded, succeeded or under way, newest first
    in_store: set[str] | None  # export ids finished in the bucket; None: not readable
    unrecorded: list[FoundExport]  # finished exports in the bucket this Lifeguard did not record
    problem: str | None = None  # why the bucket could not be read


class ExportService:
    def __init__(self, store: ExportServiceStore, neon: ExportNeon,
                 archive: ExportArchive | None, notifier: ExportNotifier, alerts: Alerts, *,
                 project_id: str, policy: RetentionPolicy, zone: tzinfo = UTC,
                 worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12]) -> None:
        self.store = store
        self.new_id = new_id
        self.archive = archive
        self.notifier = notifier
        self.alerts = alerts
        self.project_id = project_id
        self.policy = policy
        self.zone = zone
        self.now = now
        steps = None if archive is None else ExportSteps(
            neon, archive, notifier, project_id=project_id, now=now,
            source_branch_id=self._backup_branch_id)
        self.work = Engine(Kind(
            name="export", step_of=_step_of, steps={} if steps is None else steps.table(),
            failed=_failed, show=self._show, subject=lambda export: export.id,
            retried=frozenset({ExportStep.CREATE_BRANCH, ExportStep.WAIT_BRANCH,
                               ExportStep.DUMP, ExportStep.DROP_BRANCH})),
            store.exports, worker_id=worker_id, now=now)

    @property
    def enabled(self) -> bool:
        return self.archive is not None

    # --- asking for one -----------------------------------------------------------------

    def request_export(self, user_id: str, branch: str | None, reason: str, *,
                       channel_id: str | None, response_url: str | None) -> Export:
        """Record the export durably (with its audit entry); nothing runs yet. ExportsOff,
        or InvalidInput for a branch that is not a backup Lifeguard keeps (recorded as
        `export.refused`; `alert_refused` then tells ALERTS_CHANNEL)."""
        try:
            if self.archive is None:
                raise ExportsOff()
            reason = validate_reason(reason)
            if branch is not None:
                self._check_backup(branch)
        except LifeguardError as refusal:
            self.store.append(AuditEvent(user_id, "export.refused", "export", {
                "source": branch or "default branch", "reason": reason[:500],
                "why": str(refusal)}))
            raise
        created_at = self.now()
        export_id = self.new_id()
        export = Export(
            id=export_id, state=ExportState.RUNNING, step=ExportStep.CREATE_BRANCH,
            requested_by=user_id, reason=reason,
            folder=folder_name(self.project_id, created_at, export_id),
            branch_name=export_branch_name(export_id), created_at=created_at,
            updated_at=created_at, step_started_at=created_at, source_backup=branch,
            channel_id=channel_id, response_url=response_url)
        event = AuditEvent(user_id, "export.requested", export.id, {
            "export_id": export.id, "source": branch or "default branch", "reason": reason,
            "folder": self.archive.where(export.folder), "branch": export.branch_name})
        try:
            return self.store.exports.add(export, event)
        except DuplicateExport:  # twelve random hex digits met again: ask once more
            raise Conflict("That export could not be recorded; ask again.") from None

    def alert_refused(self, user_id: str, branch: str | None, refusal: Exception) -> None:
        """ALERTS_CHANNEL hears of an export that was asked for and refused."""
        asked = f"`{escape(branch)}`" if branch else "the default branch"
        self.alerts.notify(Alert(
            title=f"An export of {asked} asked by {_who(user_id)} was refused",
            tried="Checking the request before recording it; nothing was exported, no "
                  "branch was made and nothing was written to the bucket.",
            next_step=("Set the export settings and restart Lifeguard."
                       if isinstance(refusal, ExportsOff) else
                       "Ask again with a backup branch `/backup list` shows, or none for "
                       "the default branch."),
            error=str(refusal), subject="export", kind="export.refused"))

    def _check_backup(self, name: str) -> None:
        backup = self.store.backups.by_branch_name(name)
        if backup is not None and backup.status == BackupStatus.READY:
            return
        kept = [b.branch_name for b in self.store.backups.list((BackupStatus.READY,),
                                                                limit=LISTED_BACKUPS)]
        accepted = (", ".join(f"`{n}`" for n in kept) + (", …" if len(kept) ==
                                                          LISTED_BACKUPS else "")
                    if kept else "none right now (`/backup now` takes one)")
        raise InvalidInput(
            f"`{escape(name)}` is not a backup branch Lifeguard took and still keeps, so it "
            "cannot be exported. `/backup export` copies the default branch when no branch "
            f"is named, or one of these backups: {accepted}. `/backup list` shows them all.")

    def _backup_branch_id(self, name: str) -> str:
        backup = self.store.backups.by_branch_name(name)
        if backup is None or backup.status != BackupStatus.READY or backup.branch_id is None:
            raise NotFound(f"the backup `{escape(name)}` is no longer kept")
        return backup.branch_id

    def advance(self, export_id: str) -> Export | None:
        return self.work.advance(export_id)

    def settle(self, export_id: str, timeout: float = 300.0) -> Export | None:
        return self.work.settle(export_id, is_open=lambda e: _step_of(e) is not None,
                                timeout=timeout)

    def get(self, export_id: str) -> Export | None:
        return self.store.exports.get(export_id)

    def unfinished(self) -> list[Export]:
        """What the reconciler moves on. None while exports are off: an export left
        unfinished then waits, whole, for EXPORT_URL to be set again (without the bucket
        it could neither go on nor remove what it wrote)."""
        if self.archive is None:
            return []
        return self.store.exports.list(UNFINISHED_EXPORT_STATES)

    def _show(self, export: Export) -> MessageRef | None:
        try:
            return self.notifier.export_changed(export)
        finally:
            if export.state == ExportState.FAILED:
                self.alerts.notify(export_failure(export), once=True)

    # --- /backup exports ----------------------------------------------------------------

    def recent(self, limit: int) -> list[Export]:
        """The latest exports, finished or under way, from Lifeguard's records alone (no
        call to the bucket: the App Home shows them each time it is opened)."""
        return self.store.exports.list((ExportState.SUCCEEDED, ExportState.RUNNING,
                                        ExportState.CLEANING), limit=limit)

    def listing(self) -> ExportListing:
        if self.archive is None:
            raise ExportsOff()
        records = self.store.exports.list((ExportState.SUCCEEDED, ExportState.RUNNING,
                                           ExportState.CLEANING))
        try:
            found = self.archive.list_exports()
        except Exception as error:  # the records are still worth showing
            return ExportListing(records, None, [], escape(str(error)))
        recorded = {export.id for export in self.store.exports.list()}
        return ExportListing(records, {f.export_id for f in found if f.manifest},
                             [f for f in found if f.export_id not in recorded])

    # --- the schedule -------------------------------------------------------------------

    def scheduled_job(self) -> JobResult:
        """The scheduled export, run to its end in this thread, then retention. Quiet when
        it succeeds; a failure has been alerted by the time this returns."""
        if self.archive is None:
            return JobResult("export", True, "exports are off (EXPORT_URL is not set)")
        export = self.request_export(SCHEDULER, None, SCHEDULED_REASON, channel_id=None,
                                     response_url=None)
        # settle, not advance: the reconciler may take the export up first
        export = self.settle(export.id, timeout=SCHEDULED_WAIT_SECONDS) or export
        if export.state != ExportState.SUCCEEDED:
            if export.state == ExportState.FAILED:
                return JobResult("export", False, f"export {export.id} failed: {export.error}")
            return JobResult("export", True, f"export {export.id} is {export.state.value}; "
                             "the reconciler finishes it")
        deleted = self.prune(SCHEDULER)
        return JobResult("export", True, f"export {export.id} succeeded "
                         f"({export.size} bytes); retention deleted {len(deleted)}")

    def prune(self, actor: str) -> list[str]:
        """Delete the succeeded exports the policy no longer keeps; their ids."""
        exports = {e.id: e for e in self.store.exports.list((ExportState.SUCCEEDED,))}
        plan = plan_prune([PruneCandidate(name=e.id, created_at=e.created_at,
                                          recorded_by_lifeguard=True, is_default=False,
                                          is_protected=False) for e in exports.values()],
                          self.policy, zone=self.zone)
        deleted = []
        for candidate in plan.delete:
            export = exports[candidate.name]
            marked = self.store.exports.save(
                replace(export, state=ExportState.DELETING, step=ExportStep.DELETE,
                        deleted_by=actor), export.version,
                AuditEvent(actor, "export.delete_planned", export.id, {
                    "export_id": export.id, "policy": self.policy.describe(),
                    "kept": len(plan.keep)}))
            if marked is None:
                continue
            done = self.settle(export.id, timeout=120.0)
            if done is not None and done.state == ExportState.DELETED:
                deleted.append(export.id)
        return deleted


# --- the engine's rules for exports ----------------------------------------------------


def _step_of(export: Export) -> str | None:
    return export.step.value if export.state in UNFINISHED_EXPORT_STATES else None


def _failed(export: Export, reason: str) -> Change[Export]:
    if export.state == ExportState.CLEANING:  # the cleanup itself broke: stop there
        return Change(replace(export, state=ExportState.FAILED, step=ExportStep.DONE,
                              cleanup_error=reason), "export.cleaned_up",
                      {"export_id": export.id, "cleanup_error": reason})
    if export.state == ExportState.DELETING:  # retention tries again next time
        return Change(replace(export, state=ExportState.SUCCEEDED, step=ExportStep.DONE,
                              cleanup_error=reason), "export.delete_failed",
                      {"export_id": export.id})
    if export.step == ExportStep.DROP_BRANCH:  # verified and whole: the export stands
        return Change(replace(export, state=ExportState.SUCCEEDED, step=ExportStep.DONE,
                              cleanup_error=f"its branch `{export.branch_name}` could not "
                              f"be deleted: {reason}"),
                      "export.succeeded", {"export_id": export.id, "branch_left": reason})
    return Change(replace(export, state=ExportState.CLEANING, step=ExportStep.CLEANUP,
                          error=reason, failed_step=export.step.value),
                  "export.failed", {"export_id": export.id, "failed_step": export.step.value})


def _who(user_id: str) -> str:
    return "the schedule" if user_id == SCHEDULER else f"<@{user_id}>"


def export_failure(export: Export) -> Alert:
    who = _who(export.requested_by)
    if export.cleanup_error:
        cleaned = f"Cleaning up after it did not fully work: {export.cleanup_error}."
    else:
        cleaned = ("What it had written was removed"
                   + (f" ({export.objects_removed} object(s))" if export.objects_removed
                      else "")
                   + f" and its branch `{export.branch_name}` is gone.")
    return Alert(
        title=f"Export `{export.id}` of {escape(export.source)} failed",
        tried=(f"Exporting {escape(export.source)} for {who} to the export bucket; it "
               f"stopped at the {export.failed_step or 'first'} step. {cleaned}"),
        next_step=("Nothing half-written is listed as an export. Fix the cause and run "
                   "`/backup export` again; `python -m bot doctor` checks the bucket, the "
                   "credentials and pg_dump."),
        error=export.error, subject=export.id, kind="export.failed")

