"""The engine for long work (bot.services.work) on its own, on records that remember
every claim and every write: leases and heartbeats, two workers, crashes at each step,
failures, and a worker that lost its lease."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain.audit import AuditEvent
from bot.neon.errors import NeonRequestRejected, NeonServerError
from bot.services.ports import MessageRef
from bot.services.work import WAIT, Change, Engine, Kind, Wait, checkpoint

LEASE = 0.4
BEAT = 0.1


@dataclass(frozen=True)
class Job:
    id: str
    step: str = "one"
    version: int = 1
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    step_started_at: datetime | None = None
    step_timings: dict[str, float] = field(default_factory=dict)
    card_channel: str | None = None
    card_ts: str | None = None
    error: str | None = None
    done: tuple[str, ...] = ()  # the steps that finished, in order


class RememberingRecords:
    """In-memory records with real leases (on the real clock) that keep a log of writes."""

    def __init__(self, *jobs: Job) -> None:
        self.lock = threading.Lock()
        self.jobs = {job.id: job for job in jobs}
        self.leases: dict[str, tuple[str, float]] = {}
        self.saves: list[tuple[str | None, Job]] = []  # (lease owner, job) of every write
        self.events: list[AuditEvent] = []
        self.refused: list[str | None] = []  # owners whose write was refused
        self.releases = True

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def claim(self, job_id: str, owner: str, lease_seconds: float) -> Job | None:
        with self.lock:
            held = self.leases.get(job_id)
            if held and held[0] != owner and held[1] > time.monotonic():
                return None
            self.leases[job_id] = (owner, time.monotonic() + lease_seconds)
            return self.jobs[job_id]

    def release(self, job_id: str, owner: str) -> None:
        with self.lock:
            if self.releases and self.leases.get(job_id, ("",))[0] == owner:
                del self.leases[job_id]

    def save(self, job: Job, expected_version: int, event: AuditEvent | None = None, *,
             lease_owner: str | None = None) -> Job | None:
        with self.lock:
            stored = self.jobs[job.id]
            held = self.leases.get(job.id)
            if stored.version != expected_version or (
                    lease_owner is not None and (held is None or held[0] != lease_owner)):
                self.refused.append(lease_owner)
                return None
            saved = replace(job, version=expected_version + 1)
            self.jobs[job.id] = saved
            self.saves.append((lease_owner, saved))
            if event is not None:
                self.events.append(event)
            return saved

    def add(self, job: Job, event: AuditEvent) -> Job:
        raise NotImplementedError("the engine never adds records")

    def list(self, states: Any = None, *, limit: int | None = None) -> list[Job]:
        return list(self.jobs.values())


STEPS = ("one", "two", "three")


def job_kind(run: dict[str, Any], shown: list[Job] | None = None,
             retried: frozenset[str] = frozenset()) -> Kind[Job]:
    """Three steps; `run[name]` (optional) is called before a step finishes."""
    def step(name: str, following: str) -> Any:
        def do(job: Job) -> Change[Job] | Wait:
            action = run.get(name)
            if action is not None and action(job) is WAIT:
                return WAIT
            return Change(replace(job, step=following, done=(*job.done, name)),
                          f"job.{name}_done", {"n": len(job.done) + 1})
        return do

    def show(job: Job) -> MessageRef | None:
        if shown is not None:
            shown.append(job)
        return None if job.card_ts else MessageRef("C0CARDS", f"{len(job.done)}.0")

    return Kind(name="job", step_of=lambda job: None if job.step in ("end", "failed")
                else job.step,
                steps={"one": step("one", "two"), "two": step("two", "three"),
                       "three": step("three", "end")},
                failed=lambda job, reason: Change(replace(job, step="failed", error=reason),
                                                  "job.failed"),
                show=show, retried=retried)


def engine(records: RememberingRecords, kind: Kind[Job], name: str) -> Engine[Job]:
    return Engine(kind, records, worker_id=name, lease_seconds=LEASE, heartbeat_seconds=BEAT)


def test_the_steps_run_in_order_once_each_with_audit_entries_timings_and_one_card():
    records = RememberingRecords(Job("j1", step_started_at=datetime.now(UTC)))
    shown: list[Job] = []
    finished = engine(records, job_kind({}, shown), "a").advance("j1")
    assert finished is not None and finished.step == "end"
    assert finished.done == STEPS
    assert [e.action for e in records.events] == ["job.one_done", "job.two_done",
                                                  "job.three_done"]
    assert set(finished.step_timings) == set(STEPS)
    assert (finished.card_channel, finished.card_ts) == ("C0CARDS", "1.0")  # posted once
    assert all(s.card_ts in (None, "1.0") for s in shown)
    assert records.leases == {}  # released at the end


def test_a_step_that_outlasts_several_lease_periods_is_never_taken_over():
    runs: list[str] = []

    def slow(job: Job) -> None:
        runs.append(job.id)
        time.sleep(LEASE * 4)

    records = RememberingRecords(Job("j1"))
    first = engine(records, job_kind({"two": slow}), "first")
    second = engine(records, job_kind({"two": slow}), "second")
    worker = threading.Thread(target=first.advance, args=("j1",))
    worker.start()
    while not runs:
        time.sleep(0.005)  # the first worker is in the slow step
    refused = 0
    while worker.is_alive():  # the second worker polls all along
        if second.advance("j1") is None:
            refused += 1
        time.sleep(BEAT / 2)
    worker.join()
    assert refused >= LEASE * 3 / BEAT
    assert runs == ["j1"]
    assert records.jobs["j1"].done == STEPS
    assert {owner.split("/")[0] for owner, _ in records.saves} == {"first"}


def test_two_workers_on_one_job_run_each_step_once():
    counts = {name: 0 for name in STEPS}
    lock = threading.Lock()

    def counted(name: str) -> Any:
        def run(job: Job) -> None:
            with lock:
                counts[name] += 1
            time.sleep(0.05)
        return run

    records = RememberingRecords(Job("j1"))
    kind = job_kind({name: counted(name) for name in STEPS})
    workers = [threading.Thread(target=engine(records, kind, f"w{i}").advance, args=("j1",))
               for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # whoever lost the claim tries again later, as the reconciler does
    engine(records, kind, "late").advance("j1")
    assert counts == dict.fromkeys(STEPS, 1)
    assert records.jobs["j1"].done == STEPS


class Killed(BaseException):
    """The process died in the middle of a step."""


@pytest.mark.parametrize("crash_at", STEPS)
def test_a_kill_at_each_step_resumes_at_that_step(crash_at: str):
    ran: list[str] = []
    crashed = []

    def maybe_crash(name: str) -> Any:
        def run(job: Job) -> None:
            ran.append(name)
            if name == crash_at and not crashed:
                crashed.append(name)
                records.releases = False  # a dead process releases nothing
                raise Killed
        return run

    records = RememberingRecords(Job("j1"))
    kind = job_kind({name: maybe_crash(name) for name in STEPS})
    with pytest.raises(Killed):
        engine(records, kind, "dead").advance("j1")
    records.releases = True
    assert records.jobs["j1"].step == crash_at  # what was stored before the kill

    restarted = engine(records, kind, "restarted")
    assert restarted.advance("j1") is None  # the dead worker's lease still holds
    time.sleep(LEASE + BEAT)
    finished = restarted.advance("j1")
    assert finished is not None and finished.done == STEPS
    # steps before the crash ran once, the crashed one twice, the rest once
    assert ran == [*STEPS[:STEPS.index(crash_at) + 1], *STEPS[STEPS.index(crash_at):]]


def test_a_step_that_raises_fails_the_job_with_its_reason_and_an_audit_entry():
    def refuse(job: Job) -> None:
        raise NeonRequestRejected("Neon refused: the name is too long", status=422,
                                  request_id="req-42")

    records = RememberingRecords(Job("j1"))
    failed = engine(records, job_kind({"two": refuse}), "a").advance("j1")
    assert failed is not None and failed.step == "failed"
    assert failed.error is not None and "the name is too long" in failed.error
    last = records.events[-1]
    assert last.action == "job.failed"
    assert last.details["step"] == "two" and last.details["neon_request_id"] == "req-42"
    assert last.details["neon_status"] == 422


def test_an_unexpected_error_fails_the_job_naming_an_error_id(caplog):
    def broken(job: Job) -> None:
        raise KeyError("missing")

    records = RememberingRecords(Job("j1"))
    failed = engine(records, job_kind({"one": broken}), "a").advance("j1")
    assert failed is not None and failed.step == "failed"
    assert failed.error is not None and "error id" in failed.error
    error_id = failed.error.rsplit("error id ", 1)[1].rstrip(").")
    assert error_id in caplog.text


def test_transient_trouble_in_a_retried_step_is_tried_again_not_failed(monkeypatch):
    monkeypatch.setattr("bot.services.work.RETRY_BACKOFF_SECONDS", (0.01,))
    attempts = []

    def flaky(job: Job) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise NeonServerError("Neon answered 503", status=503)

    records = RememberingRecords(Job("j1"))
    finished = engine(records, job_kind({"two": flaky}, retried=frozenset({"two"})),
                      "a").advance("j1")
    assert finished is not None and finished.done == STEPS
    assert len(attempts) == 3

    # the same trouble in a step that is not retried fails at once
    attempts.clear()
    records = RememberingRecords(Job("j2"))
    failed = engine(records, job_kind({"two": flaky}), "a").advance("j2")
    assert failed is not None and failed.step == "failed" and len(attempts) == 1


def test_a_worker_that_lost_its_lease_stops_before_it_writes():
    release_step = threading.Event()

    def stalled(job: Job) -> None:
        release_step.wait(5)

    records = RememberingRecords(Job("j1"))
    old = engine(records, job_kind({"two": stalled}), "old")
    # the old worker's heartbeat stops (a stalled process): its lease runs out
    old.heartbeat_seconds = 60.0
    old.lease_seconds = LEASE
    worker = threading.Thread(target=old.advance, args=("j1",))
    worker.start()
    deadline = time.monotonic() + 5
    while records.jobs["j1"].step != "two" and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(LEASE + BEAT)
    new = engine(records, job_kind({}), "new")
    finished = new.advance("j1")
    assert finished is not None and finished.done == STEPS
    release_step.set()  # the old worker wakes up and tries to write its step
    worker.join()
    assert records.jobs["j1"].done == STEPS  # untouched by the old worker
    # only what it wrote before it stalled: step one (and its card)
    assert [job.done for owner, job in records.saves
            if owner and owner.startswith("old/")] == [("one",), ("one",)]
    assert any(owner and owner.startswith("old/") for owner in records.refused)


def test_the_heartbeat_keeps_the_lease_and_releases_it_at_the_end():
    seen: list[tuple[str, float]] = []

    def slow(job: Job) -> None:
        for _ in range(5):
            time.sleep(LEASE / 2)
            seen.append(records.leases["j1"])

    records = RememberingRecords(Job("j1"))
    engine(records, job_kind({"one": slow}), "a").advance("j1")
    untils = [until for _, until in seen]
    assert untils == sorted(untils) and untils[-1] > untils[0]  # renewed while it ran
    assert "j1" not in records.leases


def test_a_wait_runs_the_step_again_until_it_is_done():
    polls = []

    def waiting(job: Job) -> Wait | None:
        polls.append(1)
        return WAIT if len(polls) < 4 else None

    records = RememberingRecords(Job("j1", step_started_at=datetime.now(UTC)))
    finished = engine(records, job_kind({"one": waiting}), "a").advance("j1")
    assert finished is not None and finished.done == STEPS and len(polls) == 4
    # three pauses between the four runs are counted in the step's time
    assert finished.step_timings["one"] >= 0.5


def test_a_checkpoint_is_stored_at_once_and_the_steps_change_goes_over_it():
    """A fact stored mid-step (a transaction id before writing) is on the record while the
    step still runs, under the step's lease; the step's change is then saved once, over
    the checkpoint, without the engine reading the record again or running the step twice."""
    records = RememberingRecords(Job("j1"))
    seen_mid_step: list[Job] = []
    runs: list[str] = []

    def noting(job: Job) -> None:
        runs.append(job.step)
        if job.step == "two":
            noted = checkpoint(replace(job, error="xid 42"))
            seen_mid_step.append(records.jobs["j1"])
            assert noted == records.jobs["j1"]

    finished = engine(records, job_kind({"two": noting}), "a").advance("j1")
    assert finished is not None and finished.done == STEPS
    assert runs == ["two"]  # the step with the checkpoint ran once: no lost race
    assert seen_mid_step[0].error == "xid 42" and seen_mid_step[0].done == ("one",)
    assert records.refused == []
    owners = {owner for owner, _ in records.saves}
    assert len(owners) == 1 and None not in owners  # every write under the one lease
    assert [e.action for e in records.events] == ["job.one_done", "job.two_done",
                                                  "job.three_done"]


def test_a_checkpoint_of_a_worker_that_lost_its_lease_is_refused_and_stops_the_step():
    """The step stops where its checkpoint fails: nothing of the stale worker is written
    after that, the record is not failed, and the worker that holds it finishes it."""
    records = RememberingRecords(Job("j1", step="two", done=("one",)))
    after_checkpoint: list[str] = []
    new_finished: list[Job | None] = []

    def taken_over(job: Job) -> None:
        # another worker takes the record over while this step runs (a stalled process)
        records.leases["j1"] = ("elsewhere", time.monotonic() + 60)
        checkpoint(replace(job, error="xid 7"))
        after_checkpoint.append("went on")

    old = engine(records, job_kind({"two": taken_over}), "old")
    result = old.advance("j1")
    assert after_checkpoint == []
    assert records.jobs["j1"].error is None and records.jobs["j1"].step == "two"
    assert result is not None and result.step == "two"  # left to the lease's holder
    assert [owner for owner in records.refused if owner and owner.startswith("old/")]
    del records.leases["j1"]
    new_finished.append(engine(records, job_kind({}), "new").advance("j1"))
    assert new_finished[0] is not None and new_finished[0].done == STEPS


def test_a_checkpoint_outside_a_step_is_refused():
    with pytest.raises(RuntimeError, match="a step the engine is running"):
        checkpoint(Job("j1"))
