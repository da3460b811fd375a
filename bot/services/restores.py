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
from bot.domain.errors import Conflict, DuplicateRequest, ExternalServiceError, NotAllowed, NotFound
from bot.domain.export_restores import files_digest
from bot.domain.instants import check_restore_window, describe_instant
from bot.domain.requests import (
    ChangeRequest,
    Plan,
    RequestAction,
    RequestState,
)
from bot.domain.restores import (
    check_promotable,
    check_restorable_source,
    new_request_id,
    preserve_branch_name,
    restore_branch_name,
)
from bot.domain.when import parse_when
from bot.neon.errors import NeonError
from bot.neon.models import Branch
from bot.services.backup_checks import BackupChecks
from bot.services.export_restore_steps import ExportRestores, export_facts
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import AuditLog, ExportArchive, MessageRef, Records
from bot.services.request_steps import BackupDeletion, RequestSteps, RestoreNeon
from bot.services.table_restores import TableRestores
from bot.services.table_steps import TableSteps
from bot.services.verification import Verifier
from bot.services.work import SYSTEM, Engine

log = logging.getLogger("lifeguard.restores")

CARD_WAIT_TRIES, CARD_WAIT_SECONDS = 10, 0.1  # at most 1 s, within Slack's 3 s for an ack


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


@dataclass(frozen=True)
class Window:
    earliest: datetime
    latest: datetime


class RestoreService:
    def __init__(self, store: RestoreStore, neon: RestoreNeon, directory: Directory,
                 notifier: RequestNotifier, verifier: Verifier, *, project_id: str,
                 required_approvals: int, approval_ttl: timedelta,
                 approvers_configured: bool, backups: BackupDeletion | None = None,
                 worker_id: str | None = None, exports: ExportArchive | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.neon = neon
        self.directory = directory
        self.notifier = notifier
        self.project_id = project_id
        self.required_approvals = required_approvals
        self.approval_ttl = approval_ttl
        self.approvers_configured = approvers_configured
        self.backups = backups
        self.now = now
        self.exports = ExportRestores(exports, neon)
        self.steps = RequestSteps(neon, verifier, backups, now,
                                  tables=TableSteps(neon, backups, now),  # type: ignore[arg-type]
                                  exports=self.exports)
        self.tables = TableRestores(neon, directory, store.requests, self,
                                    project_id=project_id, now=now)
        self.backup_checks = BackupChecks(neon, verifier, store)  # /backup verify
        self.work = Engine(self.steps.kind(notifier.request_changed), store.requests,
                           worker_id=worker_id, now=now)

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

    def check_approvers_configured(self) -> None:
        self._check_approvers_configured()

    def record_request(self, request_id: str, plan: Plan, reason: str, extra: dict[str, Any],
                       *, channel_id: str | None, response_url: str | None) -> ChangeRequest:
        """Record a request another service planned (a table restore), like every other."""
        return self._record(request_id, plan, reason, channel_id, response_url, extra)

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

    def request_export(self, user_id: str, export_id: str, reason: str, *,
                       channel_id: str | None, response_url: str | None) -> ChangeRequest:
        """A restore branch of the default branch emptied and filled with exactly what the
        export holds; the approval binds the export and its files' checksums."""
        self._check_approvers_configured()
        found = self.exports.prepare(export_id)
        assert found.manifest is not None
        default = self._neon(self.neon.default_branch)
        request_id = new_request_id()
        plan = Plan(
            action=RequestAction.RESTORE_EXPORT, project_id=self.project_id,
            requester=user_id, source_branch_id=default.id, source_branch_name=default.name,
            target_branch_name=self._free_name(restore_branch_name(self.now()), request_id),
            export_id=found.export_id, export_digest=files_digest(found.manifest))
        return self._record(request_id, plan, reason, channel_id, response_url,
                            export_facts(found))

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
            "plan_hash": request.plan_hash, "expires_at": request.expires_at.isoformat(),
            **({"table_copy": plan.table_copy.to_dict()} if plan.table_copy else {})})
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
