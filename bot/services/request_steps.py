"""The steps of a running change request, on the engine for long work (bot.services.work):
a restore creates its branch, waits for Neon and verifies it (and removes the branch when
it fails for good); a promotion restores the live branch in place, keeping its old state,
waits and verifies; a deletion or a prune deletes the approved backups. Every step checks
the plan against its approved hash first, and is idempotent, so a crash resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.domain import requests as rules
from bot.domain.backups import Backup, BackupStatus
from bot.domain.requests import ChangeRequest, RequestAction, RequestState, Step
from bot.neon.errors import NeonNotFound, NeonOperationTimeout
from bot.neon.models import BranchChange, Database, Operation, Role
from bot.services.branches import BranchAccess, branch_connection_uri
from bot.services.export_restore_steps import ExportRestores
from bot.services.ports import MessageRef
from bot.services.table_steps import TableSteps
from bot.services.verification import Verifier
from bot.services.work import WAIT, Change, Kind, Wait

log = logging.getLogger("lifeguard.restores")

WAIT_CHUNK_SECONDS = 5.0
RUN_DEADLINE = timedelta(minutes=30)
START = "start"  # an approved request's first step: it starts running


class RestoreNeon(BranchAccess, Protocol):
    """The part of the Neon client restores use."""

    def delete_branch(self, branch_id: str) -> BranchChange: ...

    def restore_branch(self, branch_id: str, *, source_branch_id: str,
                       source_timestamp: datetime | None = None,
                       preserve_under_name: str | None = None) -> BranchChange: ...

    # export restores (bot/services/export_restore_steps.py)
    def list_roles(self, branch_id: str) -> list[Role]: ...
    def create_database(self, branch_id: str, name: str,
                        owner_name: str) -> tuple[Database, tuple[Operation, ...]]: ...
    def delete_database(self, branch_id: str, name: str) -> tuple[Operation, ...]: ...


class BackupDeletion(Protocol):
    """The backup service's part in deleting a backup, which is a change request."""

    def prepare_delete(self, user_id: str, branch_name: str) -> Backup:
        """The recorded, deletable backup of that name; raises saying why not."""
        ...

    def delete_approved(self, backup_id: str, by: str) -> Backup:
        """Delete it now; returns it deleted, still deleting, or ready with the reason."""
        ...


def step_of(request: ChangeRequest) -> str | None:
    if request.state == RequestState.APPROVED:
        return START
    if request.state == RequestState.RUNNING and request.step is not None:
        return request.step.value
    return None


def _after_branch(request: ChangeRequest) -> Step:
    """A new restore branch is verified; an export's is first emptied and restored into."""
    return (Step.EMPTY_DATABASES if request.plan.action == RequestAction.RESTORE_EXPORT
            else Step.VERIFY)


class RequestSteps:
    """What each step of a change request does."""

    def __init__(self, neon: RestoreNeon, verifier: Verifier, backups: BackupDeletion | None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 tables: TableSteps | None = None,
                 exports: ExportRestores | None = None) -> None:
        self.neon = neon
        self.verifier = verifier
        self.backups = backups
        self.now = now
        self.tables = tables  # the steps of table restores
        self.exports = exports or ExportRestores(None, neon)

    def kind(self, show: Callable[[ChangeRequest], MessageRef | None]) -> Kind[ChangeRequest]:
        return Kind(
            name="request", step_of=step_of, steps=self._steps(), failed=self.failed,
            show=show,
            # idempotent, and the branch exists by then: transient trouble is retried
            retried=frozenset({Step.WAIT_BRANCH, Step.WAIT_PROMOTION, Step.VERIFY,
                               Step.CLEAN_UP, Step.EMPTY_DATABASES, Step.RESTORE_DATABASES})
                    | TableSteps.retried)

    def _steps(self) -> dict[str, Callable[[ChangeRequest], Change[ChangeRequest] | Wait]]:
        def checked(step: Callable[[ChangeRequest], Change[ChangeRequest] | Wait]
                    ) -> Callable[[ChangeRequest], Change[ChangeRequest] | Wait]:
            def run(request: ChangeRequest) -> Change[ChangeRequest] | Wait:
                rules.check_plan_unchanged(request)  # right before Neon is called
                return step(request)
            return run

        return {
            START: self._start,
            Step.CREATE_BRANCH: checked(self._create_restore_branch),
            Step.WAIT_BRANCH: checked(lambda r: self._wait(r, r.branch_id, _after_branch(r))),
            Step.PROMOTE: checked(self._promote),
            Step.WAIT_PROMOTION: checked(
                lambda r: self._wait(r, r.plan.target_branch_id, Step.VERIFY)),
            Step.VERIFY: checked(self._verify),
            Step.CLEAN_UP: self._clean_up,
            Step.DELETE_BACKUP: checked(self._delete_backup),
            **(self.tables.steps(checked) if self.tables is not None else {}),
            Step.CHECK_EXPORT: checked(self.exports.check),
            Step.EMPTY_DATABASES: checked(self.exports.empty),
            Step.RESTORE_DATABASES: checked(self.exports.restore_next),
        }

    def _start(self, request: ChangeRequest) -> Change[ChangeRequest]:
        first = {RequestAction.PROMOTE: Step.PROMOTE,
                 RequestAction.DELETE_BACKUP: Step.DELETE_BACKUP,
                 RequestAction.PRUNE_BACKUPS: Step.DELETE_BACKUP,
                 RequestAction.RESTORE_EXPORT: Step.CHECK_EXPORT}.get(request.plan.action,
                                                                      Step.CREATE_BRANCH)
        if request.plan.action == RequestAction.RESTORE_TABLE and self.tables is not None:
            first = self.tables.first_step(request)
        return Change(replace(request, state=RequestState.RUNNING, step=first),
                      "request.started", {"state": RequestState.RUNNING, "step": first})

    def _create_restore_branch(self, request: ChangeRequest) -> Change[ChangeRequest]:
        plan = request.plan
        existing = self.neon.find_branch_by_name(plan.target_branch_name)
        if existing is not None:  # created before a crash: adopt it
            change = BranchChange(branch=existing)
        else:
            change = self.neon.create_branch(
                plan.target_branch_name, parent_id=plan.source_branch_id,
                parent_timestamp=plan.instant, with_endpoint=True)
        operation_ids = tuple(op.id for op in change.operations)
        return Change(replace(request, step=Step.WAIT_BRANCH, branch_id=change.branch.id,
                              operation_ids=operation_ids),
                      "request.branch_created",
                      {"step": Step.WAIT_BRANCH, "branch_id": change.branch.id,
                       "operation_ids": operation_ids})

    def _promote(self, request: ChangeRequest) -> Change[ChangeRequest]:
        plan = request.plan
        assert plan.target_branch_id is not None and plan.preserve_under_name is not None
        preserved = self.neon.find_branch_by_name(plan.preserve_under_name)
        if preserved is not None:  # the restore ran before a crash: do not run it twice
            change = BranchChange(branch=preserved)
        else:
            change = self.neon.restore_branch(
                plan.target_branch_id, source_branch_id=plan.source_branch_id,
                preserve_under_name=plan.preserve_under_name)
            preserved = self.neon.find_branch_by_name(plan.preserve_under_name)
        operation_ids = tuple(op.id for op in change.operations)
        branch_id = preserved.id if preserved else None
        return Change(replace(request, step=Step.WAIT_PROMOTION, branch_id=branch_id,
                              operation_ids=operation_ids),
                      "request.promoted",
                      {"step": Step.WAIT_PROMOTION, "branch_id": branch_id,
                       "operation_ids": operation_ids})

    def _wait(self, request: ChangeRequest, branch_id: str | None,
              then: Step) -> Change[ChangeRequest] | Wait:
        assert branch_id is not None
        if self.now() - (request.step_started_at or request.updated_at) > RUN_DEADLINE:
            return self.failed(request, f"Neon did not finish within {RUN_DEADLINE}.")
        try:
            if request.operation_ids:
                self.neon.wait_for_operations(list(request.operation_ids),
                                              timeout=WAIT_CHUNK_SECONDS)
            self.neon.wait_for_branch_ready(branch_id, timeout=WAIT_CHUNK_SECONDS)
        except NeonOperationTimeout:
            return WAIT
        return Change(replace(request, step=then))

    def _verify(self, request: ChangeRequest) -> Change[ChangeRequest]:
        plan = request.plan
        if plan.action == RequestAction.RESTORE_EXPORT:  # against the manifest, not a branch
            return self.exports.verify(request, self.now())
        if plan.action == RequestAction.PROMOTE:
            assert plan.target_branch_id is not None
            target, source = plan.target_branch_id, plan.source_branch_id
            compared_with, allow = plan.source_branch_name, False
        else:
            assert request.branch_id is not None
            target, source = request.branch_id, plan.source_branch_id
            # A point-in-time restore is compared with live production, which has moved on
            # since the instant: differences are shown, not counted as failure.
            live = plan.action == RequestAction.RESTORE_POINT_IN_TIME
            compared_with = f"{plan.source_branch_name} (live)" if live \
                else plan.source_branch_name
            allow = live
        report = self.verifier(branch_connection_uri(self.neon, target),
                               branch_connection_uri(self.neon, source),
                               compared_with=compared_with, allow_differences=allow)
        details = {"ok": report.ok, "summary": report.summary(),
                   "tables": report.compared_tables}
        if not report.ok:
            reason = f"Verification failed: {report.summary()}"
            log.warning("request %s failed: %s", request.id, reason)
            if plan.action != RequestAction.PROMOTE:  # the branch is kept to look into
                reason += (f" The restore branch `{plan.target_branch_name}` is kept so you can "
                           "look into it; delete it in the Neon console (Branches) when done.")
            return Change(replace(request, state=RequestState.FAILED, error=reason,
                                  verification=report.to_dict(), finished_at=self.now()),
                          "request.verification_failed", details | {"error": reason})
        return Change(replace(request, state=RequestState.SUCCEEDED, step=Step.DONE,
                              verification=report.to_dict(), finished_at=self.now()),
                      "request.succeeded", details)

    def _delete_backup(self, request: ChangeRequest) -> Change[ChangeRequest] | Wait:
        """Delete the approved backup(s); each deletion is idempotent, so a crash or a
        slow Neon only means asking again."""
        assert self.backups is not None, "deletions need the backup service"
        ids = request.extra.get("backup_ids") or [request.extra["backup_id"]]
        backups = [self.backups.delete_approved(str(i), by=request.requester) for i in ids]
        if any(b.status == BackupStatus.DELETING for b in backups):
            return WAIT
        kept = [b for b in backups if b.status != BackupStatus.DELETED]
        if kept:
            return self.failed(request, "Not deleted: " + "; ".join(
                f"`{b.branch_name}` ({b.error or b.status.value})" for b in kept)
                + f". Deleted: {len(backups) - len(kept)} of {len(backups)}.")
        return Change(replace(request, state=RequestState.SUCCEEDED, step=Step.DONE,
                              finished_at=self.now()),
                      "request.succeeded", {"deleted": [b.branch_name for b in backups]})

    def failed(self, request: ChangeRequest, reason: str) -> Change[ChangeRequest]:
        """The one way a request fails. A restore whose branch may exist removes it first
        (step clean_up); a promotion keeps everything, since its preserved branch is the
        old state of production."""
        if request.plan.action == RequestAction.RESTORE_TABLE and self.tables is not None:
            return self.tables.failed(request, reason)
        made_branch = (request.plan.action in (RequestAction.RESTORE_POINT_IN_TIME,
                                               RequestAction.RESTORE_FROM_BRANCH,
                                               RequestAction.RESTORE_EXPORT)
                       and request.state == RequestState.RUNNING
                       and request.step not in (Step.CHECK_EXPORT, Step.CREATE_BRANCH,
                                                Step.CLEAN_UP, None))
        if made_branch:
            return Change(replace(request, step=Step.CLEAN_UP, error=reason),
                          "request.step_failed", {"branch_id": request.branch_id})
        if request.step == Step.CLEAN_UP:  # removing the branch is what failed
            reason = (f"{request.error} The restore branch `{request.plan.target_branch_name}` "
                      f"could not be removed ({reason}); delete it in the Neon console "
                      "(Branches).")
        return Change(replace(request, state=RequestState.FAILED, finished_at=self.now(),
                              error=reason), "request.failed")

    def _clean_up(self, request: ChangeRequest) -> Change[ChangeRequest] | Wait:
        """Delete the restore branch of a failed restore (gone already is fine), then end
        the request failed, saying what was removed."""
        name = request.plan.target_branch_name
        branch = self.neon.find_branch_by_name(name)
        if branch is not None and not (branch.default or branch.protected):
            try:
                change = self.neon.delete_branch(branch.id)
                if change.operations:
                    self.neon.wait_for_operations(list(change.operations),
                                                  timeout=WAIT_CHUNK_SECONDS)
            except NeonOperationTimeout:
                return WAIT
            except NeonNotFound:
                pass
        return Change(replace(request, state=RequestState.FAILED, finished_at=self.now(),
                              error=f"{request.error} The restore branch `{name}` was "
                              "removed; nothing else was changed."),
                      "request.failed", {"error": request.error, "removed_branch": name})
