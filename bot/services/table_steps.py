"""The steps of an approved table restore, on the engine for long work (a change request's
steps, bot.services.request_steps hands them on):

    safety_backup → wait_safety_backup   (--merge and --replace: a backup of the live
                                          branch first, so the change is undoable)
    copy_table                            (the rows, in one live transaction)
    drop_source                           (`at <when>`: the branch made for it is removed)

Each step is idempotent. The copy stores its live transaction's id before writing and its
figures before committing (engine checkpoints, bot.services.work.checkpoint), so after a
crash the step asks PostgreSQL whether that transaction committed: if it did, the copy is
done; if not, none of it was written, and the request fails saying so (the rows are not
copied again on their own: the card's figures were approved for that moment).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.domain.backups import Backup, BackupStatus
from bot.domain.errors import Conflict, LifeguardError
from bot.domain.requests import ChangeRequest, RequestState, Step
from bot.domain.table_restores import TableCopy, TableMode
from bot.domain.verification import TableResult, VerificationReport
from bot.neon.errors import NeonNotFound, NeonOperationTimeout
from bot.neon.models import BranchChange
from bot.services.branches import BranchAccess, branch_connection_uri
from bot.services.table_copy import CopyFailed, CopyResult, copy_table, transaction_state
from bot.services.work import WAIT, Change, Wait, checkpoint

log = logging.getLogger("lifeguard.table_restores")

WAIT_CHUNK_SECONDS = 5.0
RECENT_BACKUPS = 50  # where a safety backup asked for before a crash is looked for
TableStep = Callable[[ChangeRequest], "Change[ChangeRequest] | Wait"]


class TableNeon(BranchAccess, Protocol):
    def delete_branch(self, branch_id: str) -> BranchChange: ...


class SafetyBackups(Protocol):
    """The backup service's part: the safety backup is an ordinary Lifeguard backup."""

    def request_backup(self, user_id: str, reason: str, *, channel_id: str | None,
                       response_url: str | None) -> Backup: ...
    def advance(self, backup_id: str) -> Backup | None: ...
    def get(self, backup_id: str) -> Backup | None: ...
    def recent(self, limit: int = 10) -> list[Backup]: ...


def safety_reason(request_id: str) -> str:
    return f"safety backup before table restore {request_id}"


class TableSteps:
    def __init__(self, neon: TableNeon, backups: SafetyBackups | None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.neon = neon
        self.backups = backups
        self.now = now

    def steps(self, checked: Callable[[TableStep], TableStep]) -> dict[str, TableStep]:
        return {Step.SAFETY_BACKUP: checked(self._safety_backup),
                Step.WAIT_SAFETY_BACKUP: checked(self._wait_safety_backup),
                Step.COPY_TABLE: checked(self._copy),
                Step.DROP_SOURCE: self._drop_source}

    retried = frozenset({Step.WAIT_SAFETY_BACKUP, Step.COPY_TABLE, Step.DROP_SOURCE})

    @staticmethod
    def first_step(request: ChangeRequest) -> Step:
        copy = _copy_of(request)
        return Step.COPY_TABLE if copy.mode == TableMode.NEW else Step.SAFETY_BACKUP

    # --- the safety backup ---------------------------------------------------------------

    def _safety_backup(self, request: ChangeRequest) -> Change[ChangeRequest] | Wait:
        assert self.backups is not None, "table restores need the backup service"
        reason = safety_reason(request.id)
        backup = next((b for b in self.backups.recent(RECENT_BACKUPS) if b.reason == reason),
                      None)  # asked for before a crash: that one
        if backup is None:
            try:
                backup = self.backups.request_backup(request.requester, reason,
                                                     channel_id=None, response_url=None)
            except Conflict:  # another backup took this second's name: the next second
                return WAIT
        extra = {**request.extra, "safety_backup_id": backup.id,
                 "safety_backup": backup.branch_name}
        return Change(replace(request, step=Step.WAIT_SAFETY_BACKUP, extra=extra),
                      "request.safety_backup_asked",
                      {"backup": backup.branch_name, "backup_id": backup.id})

    def _wait_safety_backup(self, request: ChangeRequest) -> Change[ChangeRequest] | Wait:
        assert self.backups is not None
        backup_id = str(request.extra["safety_backup_id"])
        backup = self.backups.advance(backup_id) or self.backups.get(backup_id)
        if backup is None or backup.status == BackupStatus.FAILED:
            why = backup.error if backup is not None else "it is not recorded"
            raise LifeguardError(f"The safety backup `{request.extra.get('safety_backup')}` "
                                 f"could not be taken ({why}); nothing was copied.")
        if backup.status != BackupStatus.READY:
            return WAIT
        return Change(replace(request, step=Step.COPY_TABLE), "request.safety_backup_ready",
                      {"backup": backup.branch_name, "branch_id": backup.branch_id})

    # --- the copy ------------------------------------------------------------------------

    def _copy(self, request: ChangeRequest) -> Change[ChangeRequest] | Wait:
        plan, copy = request.plan, _copy_of(request)
        assert plan.target_branch_id is not None
        live_url = branch_connection_uri(self.neon, plan.target_branch_id)
        xid = request.extra.get("live_xid")
        if xid:
            state = transaction_state(live_url, str(xid))
            if state == "in progress":  # the server is still ending the dead worker's one
                return WAIT
            if state == "committed" and request.extra.get("copy_result"):
                return self._copied(request, CopyResult.from_dict(request.extra["copy_result"]))
            raise CopyFailed(
                "Lifeguard stopped while it was copying the rows (a crash or a redeploy). The "
                "live transaction was rolled back, so none of the rows were written and the "
                "live table is as it was. Ask again to copy them.")
        source_url = branch_connection_uri(self.neon, plan.source_branch_id)
        columns = tuple(str(c) for c in request.extra.get("columns", ()))
        noted = _Noted(request)
        result = copy_table(source_url, live_url, copy, columns,
                            started=lambda x: noted.store(live_xid=x),
                            checked=lambda r: noted.store(copy_result=r.to_dict()))
        return self._copied(noted.request, result)

    def _copied(self, request: ChangeRequest,
                result: CopyResult) -> Change[ChangeRequest]:
        copy = _copy_of(request)
        extra = {**request.extra, "copy_result": result.to_dict()}
        report = _report(request, copy, result)
        details = {"rows_read": result.read, "rows_copied": result.copied,
                   "live_before": result.live_before, "live_after": result.live_after,
                   "seconds": result.seconds, "table": copy.target_table}
        if request.extra.get("temporary_source"):
            return Change(replace(request, step=Step.DROP_SOURCE, extra=extra,
                                  verification=report.to_dict()),
                          "request.table_copied", details)
        return Change(replace(request, state=RequestState.SUCCEEDED, step=Step.DONE, extra=extra,
                              verification=report.to_dict(), finished_at=self.now()),
                      "request.succeeded", details)

    # --- the branch made for `at <when>` ---------------------------------------------------

    def _drop_source(self, request: ChangeRequest) -> Change[ChangeRequest] | Wait:
        name = request.plan.source_branch_name
        try:
            remove_branch(self.neon, request.plan.source_branch_id, name)
        except NeonOperationTimeout:
            return WAIT
        if request.error:
            return Change(replace(request, state=RequestState.FAILED, finished_at=self.now(),
                                  error=f"{request.error} The branch `{name}` made to read the "
                                  "table from was removed."),
                          "request.failed", {"error": request.error, "removed_branch": name})
        return Change(replace(request, state=RequestState.SUCCEEDED, step=Step.DONE,
                              finished_at=self.now()),
                      "request.succeeded", {"removed_branch": name})

    def failed(self, request: ChangeRequest, reason: str) -> Change[ChangeRequest]:
        """A table restore fails; one that made a branch to read from removes it first."""
        if request.step == Step.DROP_SOURCE:
            reason = (f"{request.error or ''} The branch `{request.plan.source_branch_name}` "
                      f"made to read the table from could not be removed ({reason}); delete "
                      "it in the Neon console (Branches).").strip()
        elif request.extra.get("temporary_source") and request.state == RequestState.RUNNING:
            return Change(replace(request, step=Step.DROP_SOURCE, error=reason),
                          "request.step_failed", {"error": reason})
        return Change(replace(request, state=RequestState.FAILED, finished_at=self.now(),
                              error=reason), "request.failed")


class _Noted:
    """Facts of the copy stored on the request at once, before rows are written and
    before the commit (what a worker resuming after a crash reads); a checkpoint that
    cannot be stored (the request was taken over) stops the copy, which rolls back."""

    def __init__(self, request: ChangeRequest) -> None:
        self.request = request

    def store(self, **facts: Any) -> None:
        self.request = checkpoint(replace(self.request,
                                          extra={**self.request.extra, **facts}))


def remove_branch(neon: TableNeon, branch_id: str, name: str) -> None:
    """Delete the branch a table restore made, if it is still that branch (gone is fine)."""
    try:
        branch = neon.get_branch(branch_id)
    except NeonNotFound:
        return
    if branch.name != name or branch.default or branch.protected:
        return
    try:
        change = neon.delete_branch(branch_id)
        if change.operations:
            neon.wait_for_operations(list(change.operations), timeout=WAIT_CHUNK_SECONDS)
    except NeonNotFound:
        pass


def _copy_of(request: ChangeRequest) -> TableCopy:
    copy = request.plan.table_copy
    assert copy is not None, "a table restore's plan names its table"
    return copy


def _report(request: ChangeRequest, copy: TableCopy, result: CopyResult) -> VerificationReport:
    """The copy's check as a verification report, so it reads like every other one: the
    table, the rows it holds now, the rows read in the source."""
    if copy.mode == TableMode.MERGE:
        note = (f"{result.copied} of the {result.read} rows read were missing and were added; "
                f"{result.live_before} rows before, {result.live_after} after")
    else:
        before = "" if result.live_before is None else f"; {result.live_before} rows before"
        note = f"{result.copied} rows copied, as many as read{before}"
    table = TableResult(copy.schema, copy.target_table, source_rows=result.read,
                        target_rows=result.live_after, exact=True, newest={}, differs=False,
                        note=note)
    return VerificationReport(ok=True, compared_tables=1, tables=(table,),
                              missing_in_target=(), extra_in_target=(), checks=(),
                              seconds=result.seconds, error=None,
                              compared_with=request.plan.source_branch_name)
