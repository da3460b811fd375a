"""Change requests: restores and promotions that need a second person's approval.

    pending ──approve (quorum)──▶ approved ──▶ running ──▶ succeeded | failed
       └──▶ rejected | cancelled | expired

Rules (DESIGN.md, "Rules of the domain"): the requester never approves their own request;
each approver counts once; approvers must be in APPROVERS, and when membership cannot be
read the click is refused; an approval is bound to a hash of what will run, checked again
right before Neon is called.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.domain.errors import NotAllowed
from bot.domain.table_restores import TableCopy


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


OPEN_STATES = (RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING)
FINAL_STATES = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.REJECTED,
                RequestState.CANCELLED, RequestState.EXPIRED)

ALLOWED_TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    RequestState.PENDING: frozenset({RequestState.APPROVED, RequestState.REJECTED,
                                     RequestState.CANCELLED, RequestState.EXPIRED}),
    RequestState.APPROVED: frozenset({RequestState.RUNNING, RequestState.FAILED}),
    RequestState.RUNNING: frozenset({RequestState.SUCCEEDED, RequestState.FAILED}),
}


def check_transition(current: RequestState, new: RequestState) -> None:
    if new not in ALLOWED_TRANSITIONS.get(current, frozenset()):
        raise ValueError(f"a request cannot go from {current.value} to {new.value}")


class RequestAction(StrEnum):
    RESTORE_POINT_IN_TIME = "restore_pitr"  # restore branch of the default branch at an instant
    RESTORE_FROM_BRANCH = "restore_from_branch"  # restore branch from a backup branch
    PROMOTE = "promote"  # the default branch restored in place from a restore/backup branch
    DELETE_BACKUP = "delete_backup"  # a backup branch deleted (it is a recovery point)
    PRUNE_BACKUPS = "prune_backups"  # the backups the retention policy no longer keeps
    RESTORE_EXPORT = "restore_export"  # restore branch holding exactly what an export holds
    RESTORE_TABLE = "restore_table"  # one table copied from a backup or restore into live


ACTION_TITLES = {
    RequestAction.RESTORE_POINT_IN_TIME: "Point-in-time restore",
    RequestAction.RESTORE_FROM_BRANCH: "Restore from a backup",
    RequestAction.PROMOTE: "Promotion to the live branch",
    RequestAction.DELETE_BACKUP: "Deletion of a backup",
    RequestAction.PRUNE_BACKUPS: "Pruning of backups",
    RequestAction.RESTORE_EXPORT: "Restore from an export",
    RequestAction.RESTORE_TABLE: "Table restore",
}


class Step(StrEnum):
    """Where a running request is; each step is idempotent and stored before it is done."""

    CREATE_BRANCH = "create_branch"  # restores: create the restore branch
    WAIT_BRANCH = "wait_branch"  # restores: wait for Neon's operations
    PROMOTE = "promote"  # promotion: restore the default branch from the source
    WAIT_PROMOTION = "wait_promotion"
    VERIFY = "verify"
    CLEAN_UP = "clean_up"  # a restore that failed removes the branch it made
    DELETE_BACKUP = "delete_backup"  # deletion and pruning: the backup branches are deleted
    CHECK_EXPORT = "check_export"  # export restores: every file's SHA-256, before Neon
    EMPTY_DATABASES = "empty_databases"  # export restores: the branch's databases dropped
    RESTORE_DATABASES = "restore_databases"  # export restores: pg_restore, one at a time
    SAFETY_BACKUP = "safety_backup"  # table restores that change live rows: a backup first
    WAIT_SAFETY_BACKUP = "wait_safety_backup"
    COPY_TABLE = "copy_table"  # table restores: the rows copied into the live branch
    DROP_SOURCE = "drop_source"  # table restores `at <when>`: the branch made for it removed
    DONE = "done"


@dataclass(frozen=True)
class Approval:
    user_id: str
    at: datetime


@dataclass(frozen=True)
class Plan:
    """Exactly what will run. Its hash binds the approvals to it."""

    action: RequestAction
    project_id: str
    requester: str
    source_branch_id: str  # the branch the data comes from
    source_branch_name: str
    target_branch_name: str  # the branch created (restores) or restored in place (promotion)
    target_branch_id: str | None = None  # promotion: the default branch's id
    instant: datetime | None = None  # point in time of the source, if any
    preserve_under_name: str | None = None  # promotion: where the replaced state is kept
    branches: tuple[str, ...] = ()  # pruning: every backup branch it deletes
    export_id: str | None = None  # export restores: the export restored
    export_digest: str | None = None  # its files' SHA-256s (export_restores.files_digest)
    table_copy: TableCopy | None = None  # table restores: the table, mode and row condition

    def hash(self) -> str:
        body = {
            "action": self.action.value,
            "project_id": self.project_id,
            "requester": self.requester,
            "source_branch_id": self.source_branch_id,
            "source_branch_name": self.source_branch_name,
            "target_branch_name": self.target_branch_name,
            "target_branch_id": self.target_branch_id,
            "instant": _instant_text(self.instant),
            "preserve_under_name": self.preserve_under_name,
        }
        if self.branches:  # only then, so the hashes of plans without it stay as they were
            body["branches"] = list(self.branches)
        if self.export_id is not None:  # likewise: only export restores bind these
            body["export_id"] = self.export_id
            body["export_digest"] = self.export_digest
        if self.table_copy is not None:  # likewise
            body["table_copy"] = self.table_copy.to_dict()
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _instant_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ChangeRequest:
    id: str
    plan: Plan
    plan_hash: str
    state: RequestState
    reason: str
    required_approvals: int
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    version: int = 1  # bumped by every change: the compare-and-set token
    approvals: tuple[Approval, ...] = ()
    decided_by: str | None = None  # who rejected or cancelled
    step: Step | None = None
    branch_id: str | None = None  # the restore branch (restores) or preserved branch (promotion)
    operation_ids: tuple[str, ...] = ()
    error: str | None = None
    verification: dict[str, Any] | None = None  # the verification report, as stored
    card_channel: str | None = None
    card_ts: str | None = None
    requester_channel: str | None = None
    response_url: str | None = None
    finished_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    step_started_at: datetime | None = None  # when the current step began
    step_timings: dict[str, float] = field(default_factory=dict)  # step -> seconds

    @property
    def requester(self) -> str:
        return self.plan.requester

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.user_id for a in self.approvals)

    def approvals_missing(self) -> int:
        return max(0, self.required_approvals - len(self.approvals))


def check_plan_unchanged(request: ChangeRequest) -> None:
    """Right before Neon is called: the plan must still be what was approved."""
    if request.plan.hash() != request.plan_hash:
        raise NotAllowed(
            f"Request {request.id} was changed after it was approved (its plan no longer "
            "matches the approved hash). Nothing was run; ask for a new request."
        )


def _check_open(request: ChangeRequest, now: datetime) -> None:
    if request.state != RequestState.PENDING:
        raise NotAllowed(f"Request {request.id} is already {request.state.value}; "
                         "nothing more can be decided on it.")
    if now >= request.expires_at:
        raise NotAllowed(f"Request {request.id} expired at "
                         f"{request.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one.")


def check_approver(user_id: str, is_approver: bool | None, verb: str) -> None:
    """`is_approver` is None when membership could not be read: fail closed."""
    if is_approver is None:
        raise NotAllowed(
            f"Lifeguard could not check whether you may {verb} (Slack did not tell it who is "
            "in the approvers' user group), so it refuses. Try again in a minute."
        )
    if not is_approver:
        raise NotAllowed(f"Only the approvers named in APPROVERS may {verb} requests; "
                         f"<@{user_id}> is not one of them.")


def approve(request: ChangeRequest, user_id: str, *, is_approver: bool | None,
            now: datetime) -> tuple[tuple[Approval, ...], bool]:
    """The approvals after this click and whether the quorum is reached; raises NotAllowed."""
    _check_open(request, now)
    if user_id == request.requester:
        raise NotAllowed("You asked for this request, so you cannot approve it: a second "
                         "person must (two-person rule).")
    check_approver(user_id, is_approver, "approve")
    if user_id in request.approvers:
        raise NotAllowed(f"You already approved request {request.id}; it needs "
                         f"{request.approvals_missing()} more approver(s), each counted once.")
    approvals = (*request.approvals, Approval(user_id, now))
    return approvals, len(approvals) >= request.required_approvals


def reject(request: ChangeRequest, user_id: str, *, is_approver: bool | None,
           now: datetime) -> None:
    _check_open(request, now)
    if user_id == request.requester:
        raise NotAllowed("You asked for this request; use Cancel to withdraw it.")
    check_approver(user_id, is_approver, "reject")


def cancel(request: ChangeRequest, user_id: str, *, now: datetime) -> None:
    _check_open(request, now)
    if user_id != request.requester:
        raise NotAllowed(f"Only <@{request.requester}>, who asked, may cancel request "
                         f"{request.id}; approvers can reject it.")


def is_expired(request: ChangeRequest, now: datetime) -> bool:
    return request.state == RequestState.PENDING and now >= request.expires_at
