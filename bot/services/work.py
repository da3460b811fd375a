"""One engine for long work: backups, restores, promotions and drills (and whatever comes
next) are stored records moved forward one idempotent step at a time.

A kind of work is a `Kind`: which step a record is at (`step_of`), what each step does
(`steps`), how a failure is recorded (`failed`) and how the record is shown in Slack
(`show`). A step reads the record and returns what it became (`Change`, with its audit
entry) or `WAIT` (Neon is still working: run the step again). The engine does the rest,
the same way for every kind:

- **Lease.** `advance` claims the record's work lease (short: `LEASE_SECONDS`) and a
  heartbeat thread renews it every `HEARTBEAT_SECONDS` while steps run, however long a
  step takes; the lease is released at the end. A worker that dies stops renewing, so
  another worker or replica resumes the work within one lease of the death.
- **Fencing.** Every write is a compare-and-set on the record's version that also names
  the lease owner, so a worker that lost its lease (it stalled longer than a lease, and
  another took over) cannot write; it stops as soon as the heartbeat notices.
- **Timings.** When a record moves to another step, the time spent in the step it left is
  added to `step_timings` and `step_started_at` restarts.
- **Failure.** A step that raises fails the record through the kind's `failed`, with the
  reason and an audit entry (`<kind>.failed`-style, with Neon's status and request id when
  Neon was the cause). Transient trouble (Neon locked, rate limited, 5xx, unreachable) in
  a step the kind marks `retried` is tried again with backoff until `retry_for` has passed
  in that step, since those steps are idempotent and the work already exists.
- **Cards.** After each change the record is shown (`show`); where a new card was
  posted, its place is stored on the record, so later changes update that card.
- **Checkpoints.** A step that must store a fact before it goes on (a transaction's id
  before it writes, so a worker resuming after a crash can ask how it ended) calls
  `checkpoint(record)`: written at once, fenced like every write, and the change the step
  then returns is saved over it.

Resume after a crash needs nothing more: the reconciler calls `advance` for every
unfinished record, and the step stored on the record says where to go on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from bot.domain.audit import AuditEvent
from bot.domain.errors import LifeguardError
from bot.neon.errors import (
    NeonError,
    NeonLocked,
    NeonRateLimited,
    NeonServerError,
    NeonUnreachable,
)
from bot.services.branches import jsonable
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import MessageRef, Records

log = logging.getLogger("lifeguard.work")

SYSTEM = "system"
LEASE_SECONDS = 3.0  # a dead worker's record is taken over this long after its last renewal
HEARTBEAT_SECONDS = 1.0  # the holder renews its lease this often while it works
RETRY_FOR = timedelta(minutes=10)  # transient trouble in a retried step is tried this long
RETRY_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)
WAIT_PAUSE_SECONDS = 0.2  # between two runs of a step that is waiting on Neon
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (NeonLocked, NeonRateLimited, NeonServerError,
                                                 NeonUnreachable)


class Item(Protocol):
    """What the engine needs of a record; Backup, ChangeRequest and Drill have it."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def step_started_at(self) -> datetime | None: ...
    @property
    def step_timings(self) -> dict[str, float]: ...
    @property
    def card_channel(self) -> str | None: ...
    @property
    def card_ts(self) -> str | None: ...


W = TypeVar("W", bound=Item)


@dataclass(frozen=True)
class Change(Generic[W]):
    """What a step made of the record, and the audit entry saying so (no entry when
    `action` is None)."""

    item: W
    action: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    actor: str = SYSTEM


class Wait:
    """The step is not finished (Neon is still working): run it again."""

    def __repr__(self) -> str:
        return "WAIT"


WAIT = Wait()

Step = Callable[[W], "Change[W] | Wait"]


@dataclass(frozen=True)
class Kind(Generic[W]):
    """One kind of long work, defined by its steps."""

    name: str  # "backup", "request", "drill": in logs
    step_of: Callable[[W], str | None]  # the step to run now; None when nothing is left
    steps: Mapping[str, Step[W]]
    failed: Callable[[W, str], Change[W]]  # the record failed, with this reason
    show: Callable[[W], MessageRef | None]  # returns where a new card was posted
    subject: Callable[[W], str] = lambda item: item.id  # audit subject
    retried: frozenset[str] = frozenset()  # steps whose transient trouble is retried
    retry_for: timedelta = RETRY_FOR
    # the kind's own transient errors (its ports' busy signals), retried like Neon's
    transient: tuple[type[Exception], ...] = ()


class LeaseLost(Exception):
    """A checkpoint could not be written: another worker holds the record now, or another
    change got there first. The step stops; the engine reads the record again."""


@dataclass
class _RunningStep:
    records: Records[Any]
    owner: str
    item: Any  # the record as last stored: what the step's change is saved over


_running_step: ContextVar[_RunningStep | None] = ContextVar("running_step", default=None)


def checkpoint(item: W) -> W:
    """Store `item`, the record the running step works on with a fact it must not lose, at
    once and under the step's lease; the stored record. LeaseLost when it cannot be
    (the step must then stop: raise it on). Only for a step the engine runs."""
    running = _running_step.get()
    if running is None:
        raise RuntimeError("checkpoint() is for a step the engine is running")
    saved = running.records.save(item, running.item.version, lease_owner=running.owner)
    if saved is None:
        raise LeaseLost(f"{item.id} changed or was taken over while a step ran")
    running.item = saved
    return saved


class Engine(Generic[W]):
    """Runs the records of one kind of work."""

    def __init__(self, kind: Kind[W], records: Records[W], *, worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 lease_seconds: float = LEASE_SECONDS,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 < heartbeat_seconds < lease_seconds:
            raise ValueError("the heartbeat must come well within the lease")
        self.kind = kind
        self.records = records
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.now = now
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.sleep = sleep

    # --- running ------------------------------------------------------------------------

    def advance(self, item_id: str, *, patient: bool = False) -> W | None:
        """Move the record forward as far as it goes now. Safe to call from any worker at
        any time: only the holder of the lease acts. None when another worker holds it.

        `patient` (the reconciler's way): when another worker holds the lease, keep asking
        for one lease period, so the work of a worker that just died is resumed the moment
        its last lease runs out, not at the reconciler's next round."""
        # One owner per call, not per process: two threads of one process must not both
        # think they hold the same record.
        owner = f"{self.worker_id}/{uuid.uuid4().hex[:8]}"
        item = self.records.claim(item_id, owner, self.lease_seconds)
        tries = int(self.lease_seconds / self.heartbeat_seconds) + 1 if patient else 0
        while item is None and tries > 0:
            self.sleep(self.heartbeat_seconds)
            item = self.records.claim(item_id, owner, self.lease_seconds)
            tries -= 1
        if item is None:
            return None
        try:
            with self._heartbeat(item_id, owner) as lost:
                return self._run(item, owner, lost)
        finally:
            self.records.release(item_id, owner)

    def settle(self, item_id: str, *, is_open: Callable[[W], bool], timeout: float = 300.0,
               poll: float = 0.5) -> W | None:
        """Advance the record, or, while another worker holds it, wait (bounded) for that
        worker: for answering the person who is waiting on it."""
        deadline = time.monotonic() + timeout
        item = self.advance(item_id) or self.records.get(item_id)
        while item is not None and is_open(item) and time.monotonic() < deadline:
            self.sleep(poll)
            item = self.advance(item_id) or self.records.get(item_id)
        return item

    def _run(self, item: W, owner: str, lost: threading.Event) -> W:
        retries = 0
        while (step := self.kind.step_of(item)) is not None:
            if lost.is_set():
                log.warning("%s %s: lease lost, another worker goes on", self.kind.name,
                            item.id)
                return item
            running = _RunningStep(self.records, owner, item)
            try:
                outcome = self._step(step, item, retries, running)
            except LeaseLost as error:
                log.warning("%s %s: %s; reading it again", self.kind.name, item.id, error)
                fresh = self.records.get(item.id)
                if fresh is None or lost.is_set():
                    return fresh or item
                item = fresh
                continue
            item = running.item  # a checkpoint stored it anew: the change goes over that
            if isinstance(outcome, Wait):
                retries = retries + 1 if outcome is _RETRY else 0
                self.sleep(self._pause(outcome, retries))
                continue
            retries = 0
            saved = self._save(item, step, outcome, owner)
            if saved is None:  # another change got there first, or the lease is gone
                fresh = self.records.get(item.id)
                if fresh is None or lost.is_set():
                    return fresh or item
                item = fresh
                continue
            item = self.show(saved, owner)
        return item

    def _step(self, step: str, item: W, retries: int,
              running: _RunningStep) -> Change[W] | Wait:
        run = self.kind.steps.get(step)
        if run is None:
            return self._failure(item, step, f"unknown step {step!r}", None)
        token = _running_step.set(running)
        try:
            return run(item)
        except LeaseLost:
            raise
        except TRANSIENT_ERRORS + self.kind.transient as error:
            started = item.step_started_at or item.updated_at
            if step in self.kind.retried and self.now() - started < self.kind.retry_for:
                log.warning("%s %s: %s failed for now (%s); trying again", self.kind.name,
                            item.id, step, error)
                return _RETRY
            if isinstance(error, NeonError):
                return self._failure(running.item, step, explain_neon_error(error), error)
            return self._failure(running.item, step, str(error), None)
        except NeonError as error:
            return self._failure(running.item, step, explain_neon_error(error), error)
        except LifeguardError as error:
            return self._failure(running.item, step, str(error), None)
        except Exception as error:  # a bug or a store error: fail it, saying where to look
            error_id = uuid.uuid4().hex[:8]
            log.exception("%s %s: step %s raised (error id %s)", self.kind.name, item.id,
                          step, error_id)
            return self._failure(running.item, step, f"Lifeguard hit an unexpected error at step "
                                 f"{step} ({type(error).__name__}, error id {error_id}).",
                                 None)
        finally:
            _running_step.reset(token)

    def _failure(self, item: W, step: str, reason: str, error: NeonError | None) -> Change[W]:
        log.warning("%s %s failed at %s: %s", self.kind.name, item.id, step, reason)
        change = self.kind.failed(item, reason)
        details: dict[str, Any] = {"error": reason, "step": step, **change.details}
        if error is not None:
            details |= {"neon_status": error.status, "neon_request_id": error.request_id}
        return replace(change, details=details)

    @staticmethod
    def _pause(outcome: Wait, retries: int) -> float:
        if outcome is _RETRY:
            return RETRY_BACKOFF_SECONDS[min(retries, len(RETRY_BACKOFF_SECONDS)) - 1]
        return WAIT_PAUSE_SECONDS

    # --- writing ------------------------------------------------------------------------

    def _save(self, before: W, step: str, change: Change[W], owner: str) -> W | None:
        item = self._timed(before, step, change.item)
        event = None
        if change.action is not None:
            event = AuditEvent(change.actor, change.action, self.kind.subject(item),
                               {k: jsonable(v) for k, v in change.details.items()})
        return self.records.save(item, before.version, event, lease_owner=owner)

    def _timed(self, before: W, step: str, after: W) -> W:
        """`after` with the time spent in `step` added, when it leaves that step."""
        if self.kind.step_of(after) == step:
            return after
        now = self.now()
        timings = dict(after.step_timings)
        if before.step_started_at is not None:
            timings[step] = round(timings.get(step, 0.0)
                                  + (now - before.step_started_at).total_seconds(), 3)
        return replace(after, step_timings=timings, step_started_at=now)  # type: ignore[type-var]

    def show(self, item: W, owner: str | None = None) -> W:
        """Show the record in Slack; when a new card was posted, store where (read again
        and tried again when another change got there first). Slack trouble is logged and
        never stops the work itself."""
        try:
            posted = self.kind.show(item)
        except Exception:
            log.exception("could not show %s %s in Slack", self.kind.name, item.id)
            return item
        if posted is None:
            return item
        for _ in range(3):
            placed = replace(item, card_channel=posted.channel_id,  # type: ignore[type-var]
                             card_ts=posted.ts)
            saved = self.records.save(placed, item.version, lease_owner=owner)
            if saved is not None:
                return saved
            fresh = self.records.get(item.id)
            if fresh is None:
                break
            item = fresh
        return replace(item, card_channel=posted.channel_id,  # type: ignore[type-var]
                       card_ts=posted.ts)

    # --- the lease ----------------------------------------------------------------------

    @contextmanager
    def _heartbeat(self, item_id: str, owner: str) -> Iterator[threading.Event]:
        """Renew the lease in the background while steps run; the event is set once the
        lease is lost (another worker took the record over)."""
        stop, lost = threading.Event(), threading.Event()

        def renew() -> None:
            while not stop.wait(self.heartbeat_seconds):
                try:
                    if self.records.claim(item_id, owner, self.lease_seconds) is None:
                        lost.set()
                        return
                except Exception:  # the store hiccuped: try again at the next beat
                    log.exception("could not renew the lease of %s %s", self.kind.name,
                                  item_id)

        beat = threading.Thread(target=renew, name=f"lease-{self.kind.name}-{item_id}",
                                daemon=True)
        beat.start()
        try:
            yield lost
        finally:
            stop.set()
            beat.join(timeout=self.heartbeat_seconds * 2)


_RETRY = Wait()  # a transient failure: run the step again after a backoff
