"""What the closing summary of an incident says: what happened, the linked requests with
their outcomes and approvers, the time from opening to the data restored and verified,
and what Neon support needs (project, branch and operation ids, times, errors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.backups import Backup
from bot.domain.drills import Drill
from bot.domain.incidents import Incident
from bot.domain.requests import ACTION_TITLES, ChangeRequest, RequestAction, RequestState

RESTORING_ACTIONS = (RequestAction.RESTORE_POINT_IN_TIME, RequestAction.RESTORE_FROM_BRANCH,
                     RequestAction.PROMOTE)


@dataclass(frozen=True)
class RequestOutcome:
    id: str
    title: str
    state: str
    requester: str
    approvers: tuple[str, ...]
    decided_by: str | None
    source_branch: str
    target_branch: str
    preserved_branch: str | None
    reason: str
    verified: bool | None  # None: not verified (yet)
    finished_at: datetime | None


@dataclass(frozen=True)
class SupportFacts:
    """The block "for Neon support": every id, time and error a ticket needs."""

    project_id: str
    branches: tuple[tuple[str, str], ...]  # (name, id or "?")
    operation_ids: tuple[str, ...]
    times: tuple[tuple[str, datetime], ...]  # (what, when)
    errors: tuple[str, ...]  # mrkdwn-ready


@dataclass(frozen=True)
class IncidentSummary:
    incident: Incident
    written: str  # what the person closing it wrote (raw; escaped where it is shown)
    requests: tuple[RequestOutcome, ...]
    opened_for: timedelta  # opening to closing
    restored_after: timedelta | None  # opening to the first restore that was verified
    support: SupportFacts


def outcome_of(request: ChangeRequest) -> RequestOutcome:
    verified = None if request.verification is None else bool(request.verification.get("ok"))
    return RequestOutcome(
        id=request.id, title=ACTION_TITLES[request.plan.action], state=request.state.value,
        requester=request.requester, approvers=request.approvers,
        decided_by=request.decided_by, source_branch=request.plan.source_branch_name,
        target_branch=request.plan.target_branch_name,
        preserved_branch=request.plan.preserve_under_name, reason=request.reason,
        verified=verified, finished_at=request.finished_at)


def restored_and_verified_at(requests: list[ChangeRequest]) -> datetime | None:
    """When the data was first back and verified: the earliest restore or promotion that
    succeeded with its verification passed."""
    done = [r.finished_at for r in requests
            if r.plan.action in RESTORING_ACTIONS and r.state == RequestState.SUCCEEDED
            and r.verification is not None and r.verification.get("ok")
            and r.finished_at is not None]
    return min(done) if done else None


def support_facts(project_id: str, incident: Incident, requests: list[ChangeRequest],
                  backups: list[Backup], drills: list[Drill], now: datetime) -> SupportFacts:
    branches: dict[str, str] = {}
    operations: list[str] = []
    times: list[tuple[str, datetime]] = [("incident opened", incident.created_at)]
    errors: list[str] = []
    for request in requests:
        plan = request.plan
        branches.setdefault(plan.source_branch_name, plan.source_branch_id
                            if plan.action != RequestAction.PRUNE_BACKUPS else "?")
        if plan.action == RequestAction.PROMOTE:
            branches[plan.target_branch_name] = plan.target_branch_id or "?"
            if plan.preserve_under_name:
                branches[plan.preserve_under_name] = request.branch_id or "?"
        elif plan.action in (RequestAction.RESTORE_POINT_IN_TIME,
                             RequestAction.RESTORE_FROM_BRANCH):
            branches[plan.target_branch_name] = request.branch_id or "?"
        operations += [o for o in request.operation_ids if o not in operations]
        times.append((f"request {request.id} asked", request.created_at))
        if plan.instant is not None:
            times.append((f"request {request.id} restores to", plan.instant))
        if request.finished_at is not None:
            times.append((f"request {request.id} {request.state.value}", request.finished_at))
        if request.error:
            errors.append(f"request {request.id}: {request.error}")
    for backup in backups:
        branches[backup.branch_name] = backup.branch_id or "?"
        operations += [o for o in backup.operation_ids if o not in operations]
        if backup.error:
            errors.append(f"backup {backup.branch_name}: {backup.error}")
    for drill in drills:
        branches[drill.branch_name] = drill.branch_id or "?"
        operations += [o for o in drill.operation_ids if o not in operations]
        if drill.error:
            errors.append(f"drill {drill.branch_name}: {drill.error}")
    times.append(("incident closed", now))
    return SupportFacts(project_id, tuple(branches.items()), tuple(operations),
                        tuple(sorted(times, key=lambda t: t[1])), tuple(errors))


def summarize(incident: Incident, written: str, project_id: str,
              requests: list[ChangeRequest], backups: list[Backup], drills: list[Drill],
              now: datetime) -> IncidentSummary:
    restored = restored_and_verified_at(requests)
    return IncidentSummary(
        incident=incident, written=written,
        requests=tuple(outcome_of(r) for r in requests),
        opened_for=now - incident.created_at,
        restored_after=None if restored is None else restored - incident.created_at,
        support=support_facts(project_id, incident, requests, backups, drills, now))
