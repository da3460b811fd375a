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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    rpo_seconds,
    rto_seconds,
    seconds_between,
)
from bot.domain.durations import format_duration, humanize_age
from bot.domain.errors import Conflict, DuplicateDrill, NotAllowed, NotFound
from bot.neon.errors import (
    NeonError,
    NeonLocked,
    NeonNotFound,
    NeonOperationTimeout,
    NeonRateLimited,
    NeonServerError,
    NeonUnreachable,
)
from bot.neon.models import BranchChange
from bot.services.branches import BranchAccess, branch_connection_uri, jsonable
from bot.services.cards import show_and_remember
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import AuditLog, DrillStore, MessageRef
from bot.services.verification import VerificationReport, Verifier

log = logging.getLogger("lifeguard.drills")

SYSTEM = "system"
LEASE_SECONDS = 20.0  # a crashed worker's drill is resumed by another after this
LEASE_RENEW_SECONDS = LEASE_SECONDS / 4  # the holder renews it this often while it works
WAIT_CHUNK_SECONDS = 5.0  # wait on Neon in chunks
WAIT_DEADLINE = timedelta(minutes=30)  # Neon must have made the branch ready by then
DELETE_DEADLINE = timedelta(minutes=30)  # transient trouble deleting is retried this long
# A safety net, should the drill never reach its delete step: Neon removes the branch.
BRANCH_EXPIRY = timedelta(days=1)
_TRANSIENT = (NeonLocked, NeonRateLimited, NeonServerError, NeonUnreachable)


class DrillNeon(BranchAccess, Protocol):
    """The part of the Neon client drills use."""

    def delete_branch(self, branch_id: str) -> BranchChange: ...


class DrillNotifier(Protocol):
    def drill_changed(self, drill: Drill) -> MessageRef | None:
        """Show the drill's report card; returns where a new card was posted."""
        ...


class DrillServiceStore(DrillStore, AuditLog, Protocol):
    pass


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
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.now = now

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
            return self.store.add_drill(drill, event)
        except DuplicateDrill:
            self._refuse_if_open()  # lost a race with another start: say which drill won
        # a drill of this same second ended already: its branch name is taken
        drill = replace(drill, branch_name=drill_branch_name(now, drill.id))
        event = replace(event, details={**event.details, "branch_name": drill.branch_name})
        try:
            return self.store.add_drill(drill, event)
        except DuplicateDrill:
            self._refuse_if_open()
            raise Conflict("Another drill was started at this same moment; `/drill status` "
                           "shows it.") from None

    def _refuse_if_open(self) -> None:
        running = self.store.list_drills(OPEN_DRILL_STATES, limit=1)
        if running:
            other = running[0]
            raise Conflict(f"Drill `{other.id}` (started by <@{other.started_by}>) is still "
                           f"{other.state.value}; one drill runs at a time. `/drill status` "
                           "shows where it is.")

    # --- running ------------------------------------------------------------------------

    def runnable(self) -> list[Drill]:
        """Drills the reconciler should move forward."""
        return self.store.list_drills(OPEN_DRILL_STATES, limit=50)

    def advance(self, drill_id: str) -> Drill | None:
        """Move an open drill forward as far as it goes now. Only the holder of the lease
        acts (renewing it while it works); safe to call from any worker at any time.
        None when another worker holds it."""
        owner = f"{self.worker_id}/{uuid.uuid4().hex[:8]}"
        drill = self.store.claim_drill(drill_id, owner, LEASE_SECONDS)
        if drill is None:
            return None
        try:
            with self._lease_kept(drill_id, owner) as lost:
                while drill.is_open and not lost.is_set():
                    moved = self._step(drill)
                    if moved is None:  # another change got there first, or wait for later
                        break
                    if moved.version != drill.version:
                        moved = self._show(moved)
                    drill = moved
            return drill
        finally:
            self.store.release_drill(drill_id, owner)

    def settle(self, drill_id: str, timeout: float = 300.0, poll: float = 0.5) -> Drill:
        """Advance, or wait (bounded) for the worker that holds it."""
        deadline = time.monotonic() + timeout
        drill = self.advance(drill_id) or self.get(drill_id)
        while drill.is_open and time.monotonic() < deadline:
            time.sleep(poll)
            drill = self.advance(drill_id) or self.get(drill_id)
        return drill

    @contextmanager
    def _lease_kept(self, drill_id: str, owner: str) -> Iterator[threading.Event]:
        """Renew the lease in the background while the steps run (a verification or a
        wait can outlast one lease); the event is set if the lease was lost."""
        stop, lost = threading.Event(), threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_RENEW_SECONDS):
                try:
                    if self.store.claim_drill(drill_id, owner, LEASE_SECONDS) is None:
                        lost.set()
                        return
                except Exception:  # the store hiccuped: try again at the next tick
                    log.exception("could not renew the lease of drill %s", drill_id)

        keeper = threading.Thread(target=renew, name=f"drill-lease-{drill_id}", daemon=True)
        keeper.start()
        try:
            yield lost
        finally:
            stop.set()
            keeper.join(timeout=LEASE_RENEW_SECONDS * 2)

    def _step(self, drill: Drill) -> Drill | None:
        if drill.state == DrillState.REQUESTED:
            now = self.now()
            return self._set(drill, "drill.started", {"branch_name": drill.branch_name},
                             state=DrillState.RUNNING, step=DrillStep.CREATE_BRANCH,
                             started_at=now, step_started_at=now)
        if drill.step == DrillStep.DELETE_BRANCH:
            return self._delete_branch(drill)
        if drill.step == DrillStep.DONE:
            return self._finish(drill)
        try:
            if drill.step == DrillStep.CREATE_BRANCH:
                return self._create_branch(drill)
            if drill.step == DrillStep.WAIT_BRANCH:
                return self._wait(drill)
            if drill.step == DrillStep.VERIFY:
                return self._verify(drill)
        except NotAllowed as refusal:
            return self._fail(drill, str(refusal))
        except NeonError as error:
            return self._fail(drill, explain_neon_error(error), error=error)
        return self._fail(drill, f"unknown step {drill.step}")

    def _create_branch(self, drill: Drill) -> Drill | None:
        project = self.neon.get_project()
        window = timedelta(seconds=project.history_retention_seconds)
        if drill.target_instant < self.now() - window:
            return self._fail(
                drill, f"The target instant {_utc_text(drill.target_instant)} is outside the "
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
        now = self.now()
        return self._set(
            drill, "drill.branch_created",
            {"branch_id": change.branch.id, "source": source.name,
             "target_instant": drill.target_instant.isoformat(),
             "operation_ids": [op.id for op in change.operations]},
            step=DrillStep.WAIT_BRANCH, branch_id=change.branch.id,
            source_branch_id=source.id, source_branch_name=source.name,
            operation_ids=tuple(op.id for op in change.operations),
            step_timings=self._timed(drill, now), step_started_at=now)

    def _wait(self, drill: Drill) -> Drill | None:
        assert drill.branch_id is not None
        if self.now() - (drill.step_started_at or drill.updated_at) > WAIT_DEADLINE:
            return self._fail(drill, f"Neon did not make the drill branch ready within "
                              f"{humanize_age(WAIT_DEADLINE)}.",
                              next_step="Look at the project's operations in the Neon "
                              "console; run `/drill start` again once Neon is healthy.")
        try:
            if drill.operation_ids:
                self.neon.wait_for_operations(list(drill.operation_ids),
                                              timeout=WAIT_CHUNK_SECONDS)
            self.neon.wait_for_branch_ready(drill.branch_id, timeout=WAIT_CHUNK_SECONDS)
        except NeonOperationTimeout:
            return drill  # still working: wait another chunk (the lease is kept)
        now = self.now()
        timings = self._timed(drill, now)
        return self._set(drill, "drill.branch_ready",
                         {"seconds": timings[DrillStep.WAIT_BRANCH.value]},
                         step=DrillStep.VERIFY, step_timings=timings, step_started_at=now)

    def _verify(self, drill: Drill) -> Drill | None:
        assert drill.branch_id is not None and drill.source_branch_id is not None
        source_name = drill.source_branch_name or "production"
        # Production has moved on since the target instant: differences are expected and
        # shown, not failures. What is checked: connectivity, the tables, the row counts.
        report = self.verifier(branch_connection_uri(self.neon, drill.branch_id),
                               branch_connection_uri(self.neon, drill.source_branch_id),
                               compared_with=f"{source_name} (live)", allow_differences=True)
        now = self.now()
        newest = newest_before(_restored_timestamps(report), drill.target_instant)
        rpo = rpo_seconds(drill.target_instant, newest)
        ok = report.ok and report.compared_tables > 0
        summary = report.summary()
        changes: dict[str, Any] = {
            "verification": report.to_dict(), "summary": summary, "rpo_seconds": rpo,
            "newest_restored_at": newest, "step_timings": self._timed(drill, now),
            "step": DrillStep.DELETE_BRANCH, "step_started_at": now}
        details: dict[str, Any] = {"ok": ok, "compared_tables": report.compared_tables,
                                   "summary": summary, "rpo_seconds": rpo}
        if ok:
            assert drill.started_at is not None
            changes["rto_seconds"] = details["rto_seconds"] = rto_seconds(drill.started_at,
                                                                          now)
        else:
            error, advice = _verification_failure(report, drill, source_name, self.target_age)
            changes |= {"error": error, "failed_step": DrillStep.VERIFY, "next_step": advice}
            details["error"] = error
            log.warning("drill %s failed its verification: %s", drill.id, error)
        return self._set(drill, "drill.verified", details, **changes)

    def _delete_branch(self, drill: Drill) -> Drill | None:
        """Delete the drill branch, whatever happened before. Gone already counts as done.
        Transient Neon trouble is retried (by the reconciler) until DELETE_DEADLINE."""
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
                        drill, f"Lifeguard did not delete branch `{branch.name}`: it is not "
                        f"this drill's unprotected branch `{drill.branch_name}` any more.",
                        f"Check branch `{branch.name}` in the Neon console and delete it "
                        "yourself if it is the drill's.")
                change = self.neon.delete_branch(branch_id)
                if change.operations:
                    self.neon.wait_for_operations(list(change.operations),
                                                  timeout=WAIT_CHUNK_SECONDS)
        except NeonNotFound:
            pass  # gone already: the goal is reached
        except NeonOperationTimeout:
            return drill  # deleting: look again (the branch is then not found)
        except _TRANSIENT as error:
            if self.now() - (drill.step_started_at or drill.updated_at) < DELETE_DEADLINE:
                log.warning("drill %s: deleting %s failed for now (%s); the reconciler "
                            "tries again", drill.id, drill.branch_name, error)
                return None
            return self._cleanup_failed(drill, explain_neon_error(error), None, error)
        except NeonError as error:
            return self._cleanup_failed(drill, explain_neon_error(error), None, error)
        now = self.now()
        timings = self._timed(drill, now)
        return self._set(drill, "drill.branch_deleted",
                         {"branch_name": drill.branch_name, "branch_id": drill.branch_id,
                          "seconds": timings[DrillStep.DELETE_BRANCH.value]},
                         branch_deleted=True, step=DrillStep.DONE, step_timings=timings,
                         step_started_at=now)

    def _cleanup_failed(self, drill: Drill, why: str, advice: str | None,
                        error: NeonError | None = None) -> Drill | None:
        message = f"The drill branch `{drill.branch_name}` could not be deleted: {why}"
        advice = advice or (f"Delete branch `{drill.branch_name}` in the Neon console "
                            "(Branches → … → Delete); Neon also removes it by itself at its "
                            "expiry, a day after the drill started.")
        log.warning("drill %s: %s", drill.id, message)
        details: dict[str, Any] = {"error": message}
        if error is not None:
            details |= {"neon_status": error.status, "neon_request_id": error.request_id}
        now = self.now()
        return self._set(drill, "drill.cleanup_failed", details, cleanup_error=message,
                         next_step=" ".join(filter(None, (drill.next_step, advice))),
                         step=DrillStep.DONE, step_timings=self._timed(drill, now),
                         step_started_at=now)

    def _finish(self, drill: Drill) -> Drill | None:
        now = self.now()
        if drill.failing:
            return self._set(drill, "drill.failed", {
                "error": drill.error, "failed_step": drill.failed_step,
                "cleanup_error": drill.cleanup_error, "next_step": drill.next_step,
                "branch_deleted": drill.branch_deleted, "step_timings": drill.step_timings},
                state=DrillState.FAILED, finished_at=now)
        return self._set(drill, "drill.succeeded", {
            "rto_seconds": drill.rto_seconds, "rpo_seconds": drill.rpo_seconds,
            "summary": drill.summary, "step_timings": drill.step_timings},
            state=DrillState.SUCCEEDED, finished_at=now)

    def _fail(self, drill: Drill, message: str, *, next_step: str | None = None,
              error: NeonError | None = None) -> Drill | None:
        """The step failed: say so, then go on to delete the drill branch."""
        log.warning("drill %s failed at %s: %s", drill.id, drill.step.value, message)
        now = self.now()
        details: dict[str, Any] = {"error": message, "step": drill.step.value}
        if error is not None:
            details |= {"neon_status": error.status, "neon_request_id": error.request_id}
        advice = next_step or ("Fix the cause named above, then run `/drill start` again; "
                               f"`/drill status` shows this drill (`{drill.id}`).")
        return self._set(drill, "drill.step_failed", details, error=message,
                         failed_step=drill.step, next_step=advice,
                         step=DrillStep.DELETE_BRANCH, step_timings=self._timed(drill, now),
                         step_started_at=now)

    @staticmethod
    def _timed(drill: Drill, now: datetime) -> dict[str, float]:
        """The drill's step timings with the current step's time added."""
        timings = dict(drill.step_timings)
        if drill.step_started_at is not None:
            timings[drill.step.value] = seconds_between(drill.step_started_at, now)
        return timings

    def _set(self, drill: Drill, action: str | None, details: dict[str, Any] | None = None,
             **changes: Any) -> Drill | None:
        event = None
        if action is not None:
            event = AuditEvent(SYSTEM, action, drill.id, {
                "step": drill.step.value, **{k: jsonable(v) for k, v in (details or {}).items()}})
        return self.store.update_drill(drill.id, drill.version, event, **changes)

    # --- showing ------------------------------------------------------------------------

    def _show(self, drill: Drill) -> Drill:
        return show_and_remember(
            drill, show=self.notifier.drill_changed,
            remember=lambda d, card: self.store.update_drill(
                d.id, d.version, None, card_channel=card.channel_id, card_ts=card.ts),
            reload=lambda: self.get(drill.id), what=f"drill {drill.id}")

    # --- reading ------------------------------------------------------------------------

    def get(self, drill_id: str) -> Drill:
        drill = self.store.get_drill(drill_id.strip().lower())
        if drill is None:
            raise NotFound(f"There is no drill `{drill_id}`. `/drill history` lists them.")
        return drill

    def status(self) -> DrillOverview:
        latest = self.store.list_drills(None, limit=1)
        current = latest[0] if latest and latest[0].is_open else None
        if current is None:  # an older drill still open (clocks), however unlikely
            running = self.store.list_drills(OPEN_DRILL_STATES, limit=1)
            current = running[0] if running else None
        return DrillOverview(current=current, latest=latest[0] if latest else None,
                             last_success=self.last_success())

    def history(self, limit: int = 10) -> list[Drill]:
        return self.store.list_drills(None, limit=limit)

    def last_success(self) -> Drill | None:
        return self.store.last_successful_drill()

    def audit(self, drill_id: str) -> list[AuditEntry]:
        return self.store.audit_for(drill_id)


# --- helpers -------------------------------------------------------------------------------


def _restored_timestamps(report: VerificationReport) -> list[str | None]:
    """Every newest `…_at` value read on the restored (target) side."""
    return [target for table in report.tables for (_, target) in table.newest.values()]


def _verification_failure(report: VerificationReport, drill: Drill, source_name: str,
                          target_age: timedelta) -> tuple[str, str]:
    """(what failed, what to do next) for a verification that did not pass."""
    instant = _utc_text(drill.target_instant)
    age = format_duration(target_age)
    if report.error:
        return (f"Verification could not finish: {report.error}",
                "Check that Lifeguard can reach Neon's computes (`python -m bot doctor`), "
                "then run `/drill start` again.")
    if report.compared_tables == 0 and report.missing_in_target:
        missing = ", ".join(report.missing_in_target[:5])
        more = (f" and {len(report.missing_in_target) - 5} more"
                if len(report.missing_in_target) > 5 else "")
        return (f"The drill compared no tables: none of production's tables ({missing}"
                f"{more}) are in `{source_name}` as restored to {instant}, so nothing was "
                "verified.",
                f"If those tables were created less than {age} ago, they did not exist at the "
                "target instant: run the drill again once they are older than DRILL_TARGET_AGE "
                f"({age}). Otherwise a point-in-time restore is not giving your data back: "
                "investigate now (the restore window, the default branch) before you need it.")
    if report.compared_tables == 0:
        return (f"The drill compared no tables: production (`{source_name}`) has no tables, "
                "so nothing was verified.",
                "Check that NEON_PROJECT_ID names the production project and that its "
                "default branch holds the data; a drill that compares nothing proves nothing.")
    return (f"Verification failed: {report.summary()}",
            "Look at what is listed as missing or failed above: a restore to this instant "
            "would not give that back. Fix the cause (or the VERIFY_CHECKS check), then run "
            "`/drill start` again.")


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
