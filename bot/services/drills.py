"""Restore drills: rehearse a point-in-time restore end to end, measure it, clean up.

`start` records a drill (with its audit entry) before Slack is acknowledged; `advance`
then moves it one idempotent, stored step at a time, by whichever worker holds its lease
(the one that took the command, or the reconciler after a crash):

    create_branch  the drill branch `drill-YYYYMMDD-HHMMSS` of the default branch as it was
                   `target_age` ago, with a compute endpoint (looked up by name first, so a
                   create whose answer was lost is adopted, not repeated)
    wait_branch    Neon's operations, in short chunks
    verify         the drill branch against production (live, so differences are allowed);
                   a verification that compared no table fails the drill
    delete_branch  always, after a failure too: a drill never leaves its branch behind
    done           the outcome: succeeded, or failed with what failed, what was tried and
                   what to do next

Each step's duration is stored (step -> seconds); the RTO is the time from the start until
the data was verified; the RPO is the target instant minus the newest `…_at` value found
in the restored data (bot.domain.drills).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.domain.audit import AuditEntry, AuditEvent
from bot.domain.drills import (
    OPEN_DRILL_STATES,
    Drill,
    DrillState,
    DrillStep,
    drill_branch_name,
    drill_target,
    is_drill_name,
    new_drill_id,
    newest_before,
    restored_timestamps,
    rpo_seconds,
    rto_seconds,
    seconds_between,
    utc_text,
    verification_failure,
)
from bot.domain.durations import format_duration, humanize_age
from bot.domain.errors import Conflict, DuplicateDrill, NotFound
from bot.domain.text import escape
from bot.neon.errors import (
    NeonError,
    NeonNotFound,
    NeonOperationTimeout,
)
from bot.neon.models import BranchChange
from bot.services.branches import BranchAccess, branch_connection_uri
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import AuditLog, DrillRecords, MessageRef
from bot.services.verification import Verifier
from bot.services.work import TRANSIENT_ERRORS, WAIT, Change, Engine, Kind, Wait

log = logging.getLogger("lifeguard.drills")

WAIT_CHUNK_SECONDS = 5.0  # wait on Neon in chunks
WAIT_DEADLINE = timedelta(minutes=30)  # Neon must have made the branch ready by then
DELETE_DEADLINE = timedelta(minutes=30)  # transient trouble deleting is retried this long
# A safety net, should the drill never reach its delete step: Neon removes the branch.
BRANCH_EXPIRY = timedelta(days=1)


class DrillNeon(BranchAccess, Protocol):
    """The part of the Neon client drills use."""

    def delete_branch(self, branch_id: str) -> BranchChange: ...


class DrillNotifier(Protocol):
    def drill_changed(self, drill: Drill) -> MessageRef | None:
        """Show the drill's report card; returns where a new card was posted."""
        ...


class DrillServiceStore(AuditLog, Protocol):
    drills: DrillRecords

    def audit_for(self, subject: str) -> list[AuditEntry]: ...


START = "start"  # a requested drill's first step: it starts running


def _step_of(drill: Drill) -> str | None:
    if drill.state == DrillState.REQUESTED:
        return START
    return drill.step.value if drill.state == DrillState.RUNNING else None


@dataclass(frozen=True)
class DrillOverview:
    """What `/drill status` shows."""

    current: Drill | None  # the open drill, if one is
    latest: Drill | None  # the newest drill (the current one, if one is open)
    last_success: Drill | None


class DrillService:
    def __init__(self, store: DrillServiceStore, neon: DrillNeon, notifier: DrillNotifier,
                 verifier: Verifier, *, target_age: timedelta, worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if target_age <= timedelta(0):
            raise ValueError("target_age must be positive")
        self.store = store
        self.neon = neon
        self.notifier = notifier
        self.verifier = verifier
        self.target_age = target_age
        self.now = now
        self.work = Engine(Kind(
            name="drill", step_of=_step_of,
            steps={START: self._start, DrillStep.CREATE_BRANCH: self._create_branch,
                   DrillStep.WAIT_BRANCH: self._wait, DrillStep.VERIFY: self._verify,
                   DrillStep.DELETE_BRANCH: self._delete_branch,
                   DrillStep.DONE: self._finish},
            failed=self._failed, show=notifier.drill_changed,
            retried=frozenset({DrillStep.WAIT_BRANCH, DrillStep.VERIFY,
                               DrillStep.DELETE_BRANCH}),
            retry_for=DELETE_DEADLINE), store.drills, worker_id=worker_id, now=now)

    # --- starting -----------------------------------------------------------------------

    def start(self, user_id: str, channel_id: str | None = None) -> Drill:
        """Record a new drill durably (with its audit entry); nothing is sent to Neon yet,
        `advance` does the work. Raises Conflict while another drill is open."""
        self._refuse_if_open()
        now = self.now()
        drill = Drill(
            id=new_drill_id(), state=DrillState.REQUESTED, started_by=user_id,
            target_instant=drill_target(now, self.target_age),
            branch_name=drill_branch_name(now), created_at=now, updated_at=now,
            channel_id=channel_id)
        event = AuditEvent(user_id, "drill.requested", drill.id, {
            "branch_name": drill.branch_name,
            "target_instant": drill.target_instant.isoformat(),
            "target_age": format_duration(self.target_age)})
        try:
            return self.store.drills.add(drill, event)
        except DuplicateDrill:
            self._refuse_if_open()  # lost a race with another start: say which drill won
        # a drill of this same second ended already: its branch name is taken
        drill = replace(drill, branch_name=drill_branch_name(now, drill.id))
        event = replace(event, details={**event.details, "branch_name": drill.branch_name})
        try:
            return self.store.drills.add(drill, event)
        except DuplicateDrill:
            self._refuse_if_open()
            raise Conflict("Another drill was started at this same moment; `/drill status` "
                           "shows it.") from None

    def _refuse_if_open(self) -> None:
        running = self.store.drills.list(OPEN_DRILL_STATES, limit=1)
        if running:
            other = running[0]
            raise Conflict(f"Drill `{other.id}` (started by <@{other.started_by}>) is still "
                           f"{other.state.value}; one drill runs at a time. `/drill status` "
                           "shows where it is.")

    # --- running ------------------------------------------------------------------------

    def runnable(self) -> list[Drill]:
        """Drills the reconciler should move forward."""
        return self.store.drills.list(OPEN_DRILL_STATES, limit=50)

    def advance(self, drill_id: str) -> Drill | None:
        """Move an open drill forward as far as it goes now (bot.services.work). None
        when another worker holds it."""
        return self.work.advance(drill_id)

    def settle(self, drill_id: str, timeout: float = 300.0, poll: float = 0.5) -> Drill:
        """Advance, or wait (bounded) for the worker that holds it."""
        settled = self.work.settle(drill_id, is_open=lambda d: d.is_open, timeout=timeout,
                                   poll=poll)
        return settled or self.get(drill_id)

    def _start(self, drill: Drill) -> Change[Drill]:
        return Change(replace(drill, state=DrillState.RUNNING, step=DrillStep.CREATE_BRANCH,
                              started_at=self.now()),
                      "drill.started", {"step": drill.step, "branch_name": drill.branch_name})

    def _create_branch(self, drill: Drill) -> Drill | None:
        project = self.neon.get_project()
        window = timedelta(seconds=project.history_retention_seconds)
        if drill.target_instant < self.now() - window:
            return self._step_failed(
                drill, f"The target instant {utc_text(drill.target_instant)} is outside the "
                f"project's restore window ({humanize_age(window)}); Neon cannot restore it.",
                next_step=f"Set DRILL_TARGET_AGE (now {format_duration(self.target_age)}) "
                f"shorter than the restore window ({humanize_age(window)}), or lengthen the "
                "project's history retention in Neon; then `/drill start` again.")
        source = self.neon.default_branch()
        existing = self.neon.find_branch_by_name(drill.branch_name)
        if existing is not None:  # created before a crash: adopt it
            change = BranchChange(branch=existing)
        else:
            change = self.neon.create_branch(
                drill.branch_name, parent_id=source.id, parent_timestamp=drill.target_instant,
                expires_at=self.now() + BRANCH_EXPIRY, with_endpoint=True)
        operation_ids = tuple(op.id for op in change.operations)
        return Change(
            replace(drill, step=DrillStep.WAIT_BRANCH, branch_id=change.branch.id,
                    source_branch_id=source.id, source_branch_name=source.name,
                    operation_ids=operation_ids),
            "drill.branch_created",
            {"step": drill.step, "branch_id": change.branch.id, "source": source.name,
             "target_instant": drill.target_instant, "operation_ids": operation_ids})

    def _wait(self, drill: Drill) -> Change[Drill] | Wait:
        assert drill.branch_id is not None
        if self.now() - (drill.step_started_at or drill.updated_at) > WAIT_DEADLINE:
            return self._step_failed(drill, f"Neon did not make the drill branch ready within "
                              f"{humanize_age(WAIT_DEADLINE)}.",
                              next_step="Look at the project's operations in the Neon "
                              "console; run `/drill start` again once Neon is healthy.")
        try:
            if drill.operation_ids:
                self.neon.wait_for_operations(list(drill.operation_ids),
                                              timeout=WAIT_CHUNK_SECONDS)
            self.neon.wait_for_branch_ready(drill.branch_id, timeout=WAIT_CHUNK_SECONDS)
        except NeonOperationTimeout:
            return WAIT  # still working: wait another chunk (the lease is kept)
        return Change(replace(drill, step=DrillStep.VERIFY), "drill.branch_ready",
                      {"step": drill.step, "seconds": self._in_step(drill)})

    def _verify(self, drill: Drill) -> Change[Drill]:
        assert drill.branch_id is not None and drill.source_branch_id is not None
        source_name = drill.source_branch_name or "production"
        # Production has moved on since the target instant: differences are expected and
        # shown, not failures. What is checked: connectivity, the tables, the row counts.
        report = self.verifier(branch_connection_uri(self.neon, drill.branch_id),
                               branch_connection_uri(self.neon, drill.source_branch_id),
                               compared_with=f"{source_name} (live)", allow_differences=True)
        now = self.now()
        newest = newest_before(restored_timestamps(report), drill.target_instant)
        rpo = rpo_seconds(drill.target_instant, newest)
        ok = report.ok and report.compared_tables > 0
        summary = report.summary()
        verified = replace(drill, verification=report.to_dict(), summary=summary,
                           rpo_seconds=rpo, newest_restored_at=newest,
                           step=DrillStep.DELETE_BRANCH)
        details: dict[str, Any] = {"step": drill.step, "ok": ok,
                                   "compared_tables": report.compared_tables,
                                   "summary": summary, "rpo_seconds": rpo}
        if ok:
            assert drill.started_at is not None
            verified = replace(verified, rto_seconds=rto_seconds(drill.started_at, now))
            details["rto_seconds"] = verified.rto_seconds
        else:
            error, advice = verification_failure(report, drill, source_name, self.target_age)
            verified = replace(verified, error=error, failed_step=DrillStep.VERIFY,
                               next_step=advice)
            details["error"] = error
            log.warning("drill %s failed its verification: %s", drill.id, error)
        return Change(verified, "drill.verified", details)

    def _delete_branch(self, drill: Drill) -> Change[Drill] | Wait:
        """Delete the drill branch, whatever happened before. Gone already counts as done.
        Transient Neon trouble is retried (by the engine) until DELETE_DEADLINE."""
        try:
            branch_id = drill.branch_id
            if branch_id is None:  # a create whose answer was lost may still have made it
                found = self.neon.find_branch_by_name(drill.branch_name)
                branch_id = found.id if found else None
            if branch_id is not None:
                branch = self.neon.get_branch(branch_id)
                if (branch.default or branch.protected or branch.name != drill.branch_name
                        or not is_drill_name(branch.name)):
                    return self._cleanup_failed(
                        drill, f"Lifeguard did not delete branch `{escape(branch.name)}`: it "
                        f"is not this drill's unprotected branch `{drill.branch_name}` any more.",
                        f"Check branch `{escape(branch.name)}` in the Neon console and delete it "
                        "yourself if it is the drill's.")
                change = self.neon.delete_branch(branch_id)
                if change.operations:
                    self.neon.wait_for_operations(list(change.operations),
                                                  timeout=WAIT_CHUNK_SECONDS)
        except NeonNotFound:
            pass  # gone already: the goal is reached
        except NeonOperationTimeout:
            return WAIT  # deleting: look again (the branch is then not found)
        except TRANSIENT_ERRORS:
            raise  # the engine tries again, with backoff, until DELETE_DEADLINE
        except NeonError as error:
            return self._cleanup_failed(drill, explain_neon_error(error), None, error)
        return Change(replace(drill, branch_deleted=True, step=DrillStep.DONE),
                      "drill.branch_deleted",
                      {"step": drill.step, "branch_name": drill.branch_name,
                       "branch_id": drill.branch_id, "seconds": self._in_step(drill)})

    def _cleanup_failed(self, drill: Drill, why: str, advice: str | None,
                        error: NeonError | None = None) -> Change[Drill]:
        message = f"The drill branch `{drill.branch_name}` could not be deleted: {why}"
        advice = advice or (f"Delete branch `{drill.branch_name}` in the Neon console "
                            "(Branches → … → Delete); Neon also removes it by itself at its "
                            "expiry, a day after the drill started.")
        log.warning("drill %s: %s", drill.id, message)
        details: dict[str, Any] = {"error": message}
        if error is not None:
            details |= {"neon_status": error.status, "neon_request_id": error.request_id}
        return Change(replace(drill, cleanup_error=message, step=DrillStep.DONE,
                              next_step=" ".join(filter(None, (drill.next_step, advice)))),
                      "drill.cleanup_failed", {"step": drill.step} | details)

    def _finish(self, drill: Drill) -> Change[Drill]:
        now = self.now()
        if drill.failing:
            return Change(replace(drill, state=DrillState.FAILED, finished_at=now),
                          "drill.failed", {
                              "step": drill.step, "error": drill.error,
                              "failed_step": drill.failed_step,
                              "cleanup_error": drill.cleanup_error,
                              "next_step": drill.next_step,
                              "branch_deleted": drill.branch_deleted,
                              "step_timings": drill.step_timings})
        return Change(replace(drill, state=DrillState.SUCCEEDED, finished_at=now),
                      "drill.succeeded", {
                          "step": drill.step, "rto_seconds": drill.rto_seconds,
                          "rpo_seconds": drill.rpo_seconds, "summary": drill.summary,
                          "step_timings": drill.step_timings})

    def _failed(self, drill: Drill, reason: str) -> Change[Drill]:
        """A step failed (the engine's one way to fail): go on to delete the drill branch;
        when deleting it is what failed, the drill ends saying what is left."""
        if drill.step == DrillStep.DELETE_BRANCH:
            return self._cleanup_failed(drill, reason, None)
        return self._step_failed(drill, reason)

    def _step_failed(self, drill: Drill, message: str, *,
                     next_step: str | None = None) -> Change[Drill]:
        """The step failed: say so, then go on to delete the drill branch."""
        log.warning("drill %s failed at %s: %s", drill.id, drill.step.value, message)
        advice = next_step or ("Fix the cause named above, then run `/drill start` again; "
                               f"`/drill status` shows this drill (`{drill.id}`).")
        return Change(replace(drill, error=message, failed_step=drill.step, next_step=advice,
                              step=DrillStep.DELETE_BRANCH),
                      "drill.step_failed", {"error": message, "step": drill.step})

    def _in_step(self, drill: Drill) -> float:
        """Seconds since the drill's current step began."""
        return seconds_between(drill.step_started_at or drill.updated_at, self.now())

    # --- reading ------------------------------------------------------------------------

    def get(self, drill_id: str) -> Drill:
        drill = self.store.drills.get(drill_id.strip().lower())
        if drill is None:
            raise NotFound(f"There is no drill `{drill_id}`. `/drill history` lists them.")
        return drill

    def status(self) -> DrillOverview:
        latest = self.store.drills.list(None, limit=1)
        current = latest[0] if latest and latest[0].is_open else None
        if current is None:  # an older drill still open (clocks), however unlikely
            running = self.store.drills.list(OPEN_DRILL_STATES, limit=1)
            current = running[0] if running else None
        return DrillOverview(current=current, latest=latest[0] if latest else None,
                             last_success=self.last_success())

    def history(self, limit: int = 10) -> list[Drill]:
        return self.store.drills.list(None, limit=limit)

    def last_success(self) -> Drill | None:
        return self.store.drills.last_successful()

    def audit(self, drill_id: str) -> list[AuditEntry]:
        return self.store.audit_for(drill_id)
