"""Restores and promotions as change requests: asked, approved by a second person, then
run step by step by whichever worker holds the request's lease.

Every decision is a compare-and-set on the request's version with its audit entry in the
same transaction, so a double click, a Slack retry or two replicas decide once. Every
step is stored before it is done and is idempotent (a create looks for its branch by name
first; a promotion looks for its preserved branch), so a crash resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

from bot.domain import requests as rules
from bot.domain.audit import AuditEntry, AuditEvent
from bot.domain.backups import Backup, BackupStatus
from bot.domain.errors import Conflict, DuplicateRequest, ExternalServiceError, NotAllowed, NotFound
from bot.domain.instants import check_restore_window, describe_instant
from bot.domain.requests import (
    ChangeRequest,
    Plan,
    RequestAction,
    RequestState,
    Step,
)
from bot.domain.restores import (
    check_promotable,
    check_restorable_source,
    new_request_id,
    preserve_branch_name,
    restore_branch_name,
)
from bot.domain.when import parse_when
from bot.neon.errors import NeonError, NeonNotFound, NeonOperationTimeout
from bot.neon.models import Branch, BranchChange
from bot.services.branches import BranchAccess, branch_connection_uri
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import AuditLog, MessageRef, Records
from bot.services.verification import Verifier
from bot.services.work import SYSTEM, WAIT, Change, Engine, Kind, Wait

log = logging.getLogger("lifeguard.restores")

CARD_WAIT_TRIES, CARD_WAIT_SECONDS = 10, 0.1  # at most 1 s, within Slack's 3 s for an ack
WAIT_CHUNK_SECONDS = 5.0
RUN_DEADLINE = timedelta(minutes=30)


class RestoreNeon(BranchAccess, Protocol):
    """The part of the Neon client restores use."""

    def delete_branch(self, branch_id: str) -> BranchChange: ...

    def restore_branch(self, branch_id: str, *, source_branch_id: str,
                       source_timestamp: datetime | None = None,
                       preserve_under_name: str | None = None) -> BranchChange: ...


class BackupDeletion(Protocol):
    """The backup service's part in deleting a backup, which is a change request."""

    def prepare_delete(self, user_id: str, branch_name: str) -> Backup:
        """The recorded, deletable backup of that name; raises saying why not."""
        ...

    def delete_approved(self, backup_id: str, by: str) -> Backup:
        """Delete it now; returns it deleted, still deleting, or ready with the reason."""
        ...


class Directory(Protocol):
    """Who people are, from Slack."""

    def time_zone(self, user_id: str) -> tzinfo:
        """The user's Slack time zone; raises ExternalServiceError when it cannot be read."""
        ...

    def is_approver(self, user_id: str) -> bool | None:
        """True/False, or None when membership cannot be read (callers fail closed)."""
        ...


class RequestNotifier(Protocol):
    def request_changed(self, request: ChangeRequest) -> MessageRef | None:
        """Show the request's card; returns where a new card was posted."""
        ...

    def ask_approvers(self, request: ChangeRequest) -> None:
        """Tell the approvers there is a card waiting for them."""
        ...


class RestoreStore(AuditLog, Protocol):
    requests: Records[ChangeRequest]

    def audit_for(self, subject: str) -> list[AuditEntry]: ...


START = "start"  # an approved request's first step: it starts running


def _check_shown_on(request: ChangeRequest, shown_on: MessageRef | None) -> None:
    """A click (`shown_on`: the message it came from; None for a typed command, which names
    the request itself) acts only on the request whose card it came from: a button value
    altered to name another request is refused (and audited by the caller)."""
    if shown_on is None:
        return
    if request.card_ts is None or (shown_on.channel_id, shown_on.ts) != (request.card_channel,
                                                                         request.card_ts):
        raise NotAllowed(f"That button is not on the card of request {request.id}, so "
                         "nothing was decided. Use the buttons on the request's own card in "
                         "the approvals channel.")


def _step_of(request: ChangeRequest) -> str | None:
    if request.state == RequestState.APPROVED:
        return START
    if request.state == RequestState.RUNNING and request.step is not None:
        return request.step.value
    return None


@dataclass(frozen=True)
class Window:
    earliest: datetime
    latest: datetime


class RestoreService:
    def __init__(self, store: RestoreStore, neon: RestoreNeon, directory: Directory,
                 notifier: RequestNotifier, verifier: Verifier, *, project_id: str,
                 required_approvals: int, approval_ttl: timedelta,
                 approvers_configured: bool, backups: BackupDeletion | None = None,
                 worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.neon = neon
        self.directory = directory
        self.notifier = notifier
        self.verifier = verifier
        self.project_id = project_id
        self.required_approvals = required_approvals
        self.approval_ttl = approval_ttl
        self.approvers_configured = approvers_configured
        self.backups = backups
        self.now = now
        self.work = Engine(Kind(
            name="request", step_of=_step_of, steps=self._steps(), failed=self._failed,
            show=notifier.request_changed,
            # idempotent, and the branch exists by then: transient trouble is retried
            retried=frozenset({Step.WAIT_BRANCH, Step.WAIT_PROMOTION, Step.VERIFY,
                               Step.CLEAN_UP})),
            store.requests, worker_id=worker_id, now=now)

    # --- asking -------------------------------------------------------------------------

    def record_command(self, user_id: str, text: str) -> None:
        """The command as typed, recorded durably before Slack is acknowledged; the request
        itself needs Neon and Slack lookups, made after the acknowledgement."""
        self.store.append(AuditEvent(user_id, "restore.asked", "restore", {"text": text}))

    def _check_approvers_configured(self) -> None:
        if not self.approvers_configured:
            raise NotAllowed("No approvers are configured, and restores need a second "
                             "person's approval. An admin should set APPROVERS (Slack user ids "
                             "U… and user-group ids S…).")

    def request_point_in_time(self, user_id: str, when_text: str, reason: str, *,
                              channel_id: str | None,
                              response_url: str | None) -> ChangeRequest:
        self._check_approvers_configured()
        zone = self.directory.time_zone(user_id)
        now = self.now()
        instant = parse_when(when_text, now=now, zone=zone)
        project, default = self._neon(lambda: (self.neon.get_project(),
                                               self.neon.default_branch()))
        check_restore_window(instant, now=now, window_seconds=project.history_retention_seconds,
                             zone=zone)
        request_id = new_request_id()
        plan = Plan(
            action=RequestAction.RESTORE_POINT_IN_TIME, project_id=self.project_id,
            requester=user_id, source_branch_id=default.id, source_branch_name=default.name,
            target_branch_name=self._free_name(restore_branch_name(instant), request_id),
            instant=instant)
        return self._record(request_id, plan, reason, channel_id, response_url,
                            {"window_seconds": project.history_retention_seconds,
                             "instant_shown": describe_instant(instant, zone)})

    def request_from_branch(self, user_id: str, branch_name: str, reason: str, *,
                            channel_id: str | None,
                            response_url: str | None) -> ChangeRequest:
        self._check_approvers_configured()
        check_restorable_source(branch_name)
        source = self._named_branch(branch_name)
        request_id = new_request_id()
        plan = Plan(
            action=RequestAction.RESTORE_FROM_BRANCH, project_id=self.project_id,
            requester=user_id, source_branch_id=source.id, source_branch_name=source.name,
            target_branch_name=self._free_name(restore_branch_name(self.now()), request_id))
        return self._record(request_id, plan, reason, channel_id, response_url, {})

    def request_promotion(self, user_id: str, branch_name: str, reason: str, *,
                          channel_id: str | None, response_url: str | None) -> ChangeRequest:
        self._check_approvers_configured()
        check_promotable(branch_name)
        source = self._named_branch(branch_name)
        default = self._neon(self.neon.default_branch)
        if source.id == default.id:
            raise NotAllowed(f"`{branch_name}` is already the live (default) branch.")
        request_id = new_request_id()
        plan = Plan(
            action=RequestAction.PROMOTE, project_id=self.project_id, requester=user_id,
            source_branch_id=source.id, source_branch_name=source.name,
            target_branch_name=default.name, target_branch_id=default.id,
            preserve_under_name=self._free_name(preserve_branch_name(self.now()), request_id))
        return self._record(request_id, plan, reason, channel_id, response_url, {})

    def request_backup_deletion(self, user_id: str, branch_name: str, reason: str, *,
                                channel_id: str | None,
                                response_url: str | None) -> ChangeRequest:
        """A backup is a recovery point: deleting one needs a second person's approval,
        like a restore (an insider must not delete them alone before damaging data)."""
        self._check_approvers_configured()
        assert self.backups is not None, "deletions need the backup service"
        backup = self.backups.prepare_delete(user_id, branch_name)
        assert backup.branch_id is not None
        plan = Plan(action=RequestAction.DELETE_BACKUP, project_id=self.project_id,
                    requester=user_id, source_branch_id=backup.branch_id,
                    source_branch_name=backup.branch_name,
                    target_branch_name=backup.branch_name)
        return self._record(new_request_id(), plan, reason, channel_id, response_url,
                            {"backup_id": backup.id})

    def request_prune(self, user_id: str, branch_names: tuple[str, ...], plan_hash: str, *,
                      channel_id: str | None, response_url: str | None) -> ChangeRequest:
        """The backups a retention plan would delete, as one change request: a second
        person approves deleting recovery points, however many."""
        self._check_approvers_configured()
        assert self.backups is not None, "pruning needs the backup service"
        if not branch_names:
            raise NotAllowed("The retention policy keeps every backup: there is nothing to "
                             "prune.")
        backups = [self.backups.prepare_delete(user_id, name) for name in branch_names]
        plan = Plan(action=RequestAction.PRUNE_BACKUPS, project_id=self.project_id,
                    requester=user_id, source_branch_id=plan_hash,
                    source_branch_name="the retention plan",
                    target_branch_name=f"{len(backups)} backup(s)",
                    branches=tuple(b.branch_name for b in backups))
        return self._record(new_request_id(), plan, "", channel_id, response_url,
                            {"backup_ids": [b.id for b in backups], "plan_hash": plan_hash})

    def _named_branch(self, name: str) -> Branch:
        branch = self._neon(lambda: self.neon.find_branch_by_name(name))
        if branch is None:
            raise NotFound(f"Neon has no branch named `{name}`. `/backup list` shows backups.")
        return branch

    def _free_name(self, name: str, request_id: str) -> str:
        """The natural name, or with the request id added when it is taken already."""
        taken = self._neon(lambda: self.neon.find_branch_by_name(name)) is not None or any(
            name in (r.plan.target_branch_name, r.plan.preserve_under_name)
            for r in self.store.requests.list(rules.OPEN_STATES, limit=200))
        return f"{name}-{request_id[:4]}" if taken else name

    def _record(self, request_id: str, plan: Plan, reason: str, channel_id: str | None,
                response_url: str | None, extra: dict[str, Any]) -> ChangeRequest:
        now = self.now()
        request = ChangeRequest(
            id=request_id, plan=plan, plan_hash=plan.hash(), state=RequestState.PENDING,
            reason=reason, required_approvals=self.required_approvals, created_at=now,
            expires_at=now + self.approval_ttl, updated_at=now, requester_channel=channel_id,
            response_url=response_url, extra=extra)
        event = AuditEvent(plan.requester, "request.created", request_id, {
            "action": plan.action.value, "source": plan.source_branch_name,
            "target": plan.target_branch_name,
            "instant": plan.instant.isoformat() if plan.instant else None,
            "preserve_under_name": plan.preserve_under_name, "reason": reason,
            "plan_hash": request.plan_hash, "expires_at": request.expires_at.isoformat()})
        try:
            recorded = self.store.requests.add(request, event)
        except DuplicateRequest:
            raise Conflict("Two requests got the same id; please ask again.") from None
        shown = self.work.show(recorded)
        self._safely(lambda: self.notifier.ask_approvers(shown), "ask approvers")
        return shown

    # --- deciding -----------------------------------------------------------------------

    def approve(self, request_id: str, user_id: str, *,
                       shown_on: MessageRef | None) -> ChangeRequest:
        def decide(request: ChangeRequest) -> tuple[ChangeRequest, AuditEvent]:
            approvals, quorum = rules.approve(
                request, user_id, is_approver=self.directory.is_approver(user_id),
                now=self.now())
            state = RequestState.APPROVED if quorum else request.state
            return (replace(request, approvals=approvals, state=state),
                    AuditEvent(user_id, "request.approved", request_id, {
                        "approvals": [a.user_id for a in approvals], "quorum_reached": quorum,
                        "plan_hash": request.plan_hash}))

        return self._decide(request_id, user_id, decide, shown_on)

    def reject(self, request_id: str, user_id: str, *,
                      shown_on: MessageRef | None) -> ChangeRequest:
        def decide(request: ChangeRequest) -> tuple[ChangeRequest, AuditEvent]:
            rules.reject(request, user_id, is_approver=self.directory.is_approver(user_id),
                         now=self.now())
            return (replace(request, state=RequestState.REJECTED, decided_by=user_id,
                            finished_at=self.now()),
                    AuditEvent(user_id, "request.rejected", request_id, {}))

        return self._decide(request_id, user_id, decide, shown_on)

    def cancel(self, request_id: str, user_id: str, *,
                      shown_on: MessageRef | None) -> ChangeRequest:
        def decide(request: ChangeRequest) -> tuple[ChangeRequest, AuditEvent]:
            rules.cancel(request, user_id, now=self.now())
            return (replace(request, state=RequestState.CANCELLED, decided_by=user_id,
                            finished_at=self.now()),
                    AuditEvent(user_id, "request.cancelled", request_id, {}))

        return self._decide(request_id, user_id, decide, shown_on)

    def _decide(self, request_id: str, user_id: str,
                decide: Callable[[ChangeRequest], tuple[ChangeRequest, AuditEvent]],
                shown_on: MessageRef | None) -> ChangeRequest:
        """Read, check the rules, compare-and-set; on a lost race read again and re-check,
        so the loser of a double click sees why (e.g. "you already approved"). A click
        decides only the request its card showed (`shown_on`: the message clicked)."""
        for _ in range(5):
            request = self._with_card(request_id, shown_on)
            try:
                decided, event = decide(request)  # a closed request says so first
                _check_shown_on(request, shown_on)
            except NotAllowed as refusal:  # refused clicks are part of the story too
                self.store.append(AuditEvent(user_id, "request.refused", request.id,
                                             {"reason": str(refusal)}))
                raise
            updated = self.store.requests.save(decided, request.version, event)
            if updated is not None:
                return self.work.show(updated)
        raise Conflict(f"Request {request_id} is being changed by others right now; "
                       "look at its card and try again.")

    def _with_card(self, request_id: str, shown_on: MessageRef | None) -> ChangeRequest:
        """The request; for a click, once the place of its card is stored (a click can
        reach us in the moment between posting the card and storing where it went)."""
        request = self.get(request_id)
        for _ in range(CARD_WAIT_TRIES):
            if shown_on is None or request.card_ts is not None:
                break
            time.sleep(CARD_WAIT_SECONDS)
            request = self.get(request_id)
        return request

    def get(self, request_id: str) -> ChangeRequest:
        request = self.store.requests.get(request_id.strip().lower())
        if request is None:
            raise NotFound(f"There is no request `{request_id}`. `/restore status` lists "
                           "the open ones.")
        return request

    def expire_due(self) -> list[ChangeRequest]:
        """Pending requests past their expiry become expired, and their cards say so now."""
        expired: list[ChangeRequest] = []
        now = self.now()
        for request in self.store.requests.list((RequestState.PENDING,), limit=500):
            if not rules.is_expired(request, now):
                continue
            updated = self.store.requests.save(
                replace(request, state=RequestState.EXPIRED, finished_at=now), request.version,
                AuditEvent(SYSTEM, "request.expired", request.id,
                           {"expires_at": request.expires_at.isoformat()}))
            if updated is not None:
                expired.append(self.work.show(updated))
        return expired

    # --- running (the steps of bot.services.work) ---------------------------------------

    def runnable(self) -> list[ChangeRequest]:
        return self.store.requests.list((RequestState.APPROVED, RequestState.RUNNING),
                                        limit=500)

    def advance(self, request_id: str) -> ChangeRequest | None:
        """Move an approved or running request forward as far as it goes now."""
        return self.work.advance(request_id)

    def settle(self, request_id: str, timeout: float = 300.0,
               poll: float = 0.5) -> ChangeRequest:
        """Advance, or wait (bounded) for the worker that holds it."""
        settled = self.work.settle(request_id, is_open=lambda r: r.state in rules.OPEN_STATES[1:],
                                   timeout=timeout, poll=poll)
        return settled or self.get(request_id)

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
            Step.WAIT_BRANCH: checked(lambda r: self._wait(r, r.branch_id, Step.VERIFY)),
            Step.PROMOTE: checked(self._promote),
            Step.WAIT_PROMOTION: checked(
                lambda r: self._wait(r, r.plan.target_branch_id, Step.VERIFY)),
            Step.VERIFY: checked(self._verify),
            Step.CLEAN_UP: self._clean_up,
            Step.DELETE_BACKUP: checked(self._delete_backup),
        }

    def _start(self, request: ChangeRequest) -> Change[ChangeRequest]:
        first = {RequestAction.PROMOTE: Step.PROMOTE,
                 RequestAction.DELETE_BACKUP: Step.DELETE_BACKUP,
                 RequestAction.PRUNE_BACKUPS: Step.DELETE_BACKUP}.get(request.plan.action,
                                                                      Step.CREATE_BRANCH)
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
            return self._failed(request, f"Neon did not finish within {RUN_DEADLINE}.")
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
            return self._failed(request, "Not deleted: " + "; ".join(
                f"`{b.branch_name}` ({b.error or b.status.value})" for b in kept)
                + f". Deleted: {len(backups) - len(kept)} of {len(backups)}.")
        return Change(replace(request, state=RequestState.SUCCEEDED, step=Step.DONE,
                              finished_at=self.now()),
                      "request.succeeded", {"deleted": [b.branch_name for b in backups]})

    def _failed(self, request: ChangeRequest, reason: str) -> Change[ChangeRequest]:
        """The one way a request fails. A restore whose branch may exist removes it first
        (step clean_up); a promotion keeps everything, since its preserved branch is the
        old state of production."""
        made_branch = (request.plan.action in (RequestAction.RESTORE_POINT_IN_TIME,
                                               RequestAction.RESTORE_FROM_BRANCH)
                       and request.state == RequestState.RUNNING
                       and request.step not in (Step.CREATE_BRANCH, Step.CLEAN_UP, None))
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

    def _safely(self, action: Callable[[], object], what: str) -> None:
        try:
            action()
        except Exception:
            log.exception("could not %s", what)

    def _neon(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except NeonError as error:
            raise ExternalServiceError(explain_neon_error(error)) from None

    # --- reading ------------------------------------------------------------------------

    def open_requests(self) -> list[ChangeRequest]:
        return self.store.requests.list(rules.OPEN_STATES, limit=50)

    def recent(self, limit: int = 10) -> list[ChangeRequest]:
        return self.store.requests.list(None, limit=limit)

    def history(self, request_id: str) -> tuple[ChangeRequest, list[AuditEntry]]:
        request = self.get(request_id)
        return request, self.store.audit_for(request.id)

    def window(self) -> Window:
        project = self._neon(self.neon.get_project)
        now = self.now()
        return Window(now - timedelta(seconds=project.history_retention_seconds), now)
