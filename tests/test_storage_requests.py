"""Change requests in the store, on both SQLite and PostgreSQL: round trips, the
compare-and-set on the version, the state machine, races, leases (and writes that name
one) and their audit trail."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import inspect

from bot.domain.audit import AuditEvent
from bot.domain.drills import Drill, DrillState
from bot.domain.errors import DuplicateRequest
from bot.domain.requests import (
    Approval,
    ChangeRequest,
    Plan,
    RequestAction,
    RequestState,
    Step,
)
from bot.services.ports import Store
from storage import SqlStore, current_revision
from storage.db import create_engine_for
from storage.migrate import alembic_config, head_revision, migration_lock

T0 = datetime(2026, 1, 13, 14, 25, 0, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


def make_plan(n: int = 1, **extra: object) -> Plan:
    fields: dict[str, object] = {
        "action": RequestAction.RESTORE_POINT_IN_TIME,
        "project_id": "proj-calm-sea-123",
        "requester": "U0REQUESTER",
        "source_branch_id": "br-main-1",
        "source_branch_name": "main",
        "target_branch_name": f"restore-req-{n}",
        "instant": T0 - timedelta(hours=1),
    }
    fields.update(extra)
    return Plan(**fields)  # type: ignore[arg-type]


def make_request(n: int = 1, *, at: datetime = T0, plan: Plan | None = None,
                 **extra: object) -> ChangeRequest:
    plan = plan or make_plan(n)
    fields: dict[str, object] = {
        "id": f"req-{n}",
        "plan": plan,
        "plan_hash": plan.hash(),
        "state": RequestState.PENDING,
        "reason": f"undo a bad migration {n}",
        "required_approvals": 1,
        "created_at": at,
        "expires_at": at + timedelta(minutes=30),
        "updated_at": at,
    }
    fields.update(extra)
    return ChangeRequest(**fields)  # type: ignore[arg-type]


def event(action: str = "request.created", subject: str = "req-1", actor: str = "U0REQUESTER",
          **details: object) -> AuditEvent:
    return AuditEvent(actor=actor, action=action, subject=subject, details=details)


def assert_aware_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


def actions(store: SqlStore, subject: str = "req-1") -> list[str]:
    return [e.action for e in store.audit_for(subject)]


# --- schema --------------------------------------------------------------------------


def test_migration_0002_adds_change_requests_and_goes_down_again(database_url: str) -> None:
    with SqlStore(database_url) as s:
        assert current_revision(database_url) == head_revision()
        inspector = inspect(s.engine)
        assert "change_requests" in inspector.get_table_names()
        assert {ix["name"] for ix in inspector.get_indexes("change_requests")} == {
            "ix_change_requests_state", "ix_change_requests_created_at"}
        assert "ix_audit_entries_subject" in {
            ix["name"] for ix in inspector.get_indexes("audit_entries")}
        s.append(event("kept"))

    engine = create_engine_for(database_url)
    try:
        config = alembic_config()
        with engine.connect() as conn, migration_lock(conn):
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
        assert "change_requests" not in inspect(engine).get_table_names()
        assert "ix_audit_entries_subject" not in {
            ix["name"] for ix in inspect(engine).get_indexes("audit_entries")}
    finally:
        engine.dispose()
    assert current_revision(database_url) == "0001"

    with SqlStore(database_url) as s:  # and up again, the audit trail untouched
        assert current_revision(database_url) == head_revision()
        assert s.verify() == (1, None)
        assert [e.action for e in s.audit_for("req-1")] == ["kept"]


def test_store_satisfies_the_request_port(store: SqlStore) -> None:
    port: Store = store
    assert port.requests.get("nope") is None
    assert port.requests.list() == []


# --- add, get, list ------------------------------------------------------------------


def test_add_get_round_trips_every_field_as_aware_utc(store: SqlStore) -> None:
    plan = make_plan(1, action=RequestAction.PROMOTE, target_branch_id="br-main-1",
                     source_branch_id="br-restore-9", source_branch_name="restore-req-0",
                     target_branch_name="main", instant=T0.astimezone(PLUS_TWO),
                     preserve_under_name="pre-restore-20260113-142500")
    request = make_request(
        1, at=T0.astimezone(PLUS_TWO), plan=plan, state=RequestState.RUNNING, version=7,
        required_approvals=2,
        approvals=(Approval("U0SECOND", (T0 + timedelta(minutes=2)).astimezone(PLUS_TWO)),
                   Approval("U0FIRST", T0 + timedelta(minutes=1))),
        decided_by="U0DECIDER", step=Step.WAIT_PROMOTION, branch_id="br-pre-restore",
        operation_ids=("op-2", "op-1"), error="not yet", card_channel="C0APPROVALS",
        card_ts="1768314300.000100", requester_channel="D0REQUESTER",
        response_url="https://hooks.slack.com/commands/T/1/x",
        finished_at=(T0 + timedelta(hours=1)).astimezone(PLUS_TWO),
        verification={"ok": True, "tables": [{"name": "users", "rows": 10, "ratio": 0.5}],
                      "note": "ünïcode ✓", "none": None},
        extra={"timezone": "Europe/Paris", "attempts": 3, "nested": {"a": [1, "b"]}},
        step_started_at=(T0 + timedelta(minutes=50)).astimezone(PLUS_TWO),
        step_timings={"create_branch": 0.5, "wait_branch": 12.25},
    )
    added = store.requests.add(request, event(subject="req-1", id="req-1"))
    assert added == request
    got = store.requests.get("req-1")
    assert got == request
    for result in (added, got, store.requests.list()[0], store.requests.find(id="req-1")):
        assert result is not None
        assert result == request
        assert result.plan == plan and result.plan.hash() == request.plan_hash
        assert result.plan.action is RequestAction.PROMOTE
        assert result.state is RequestState.RUNNING and result.step is Step.WAIT_PROMOTION
        assert result.approvers == ("U0SECOND", "U0FIRST")  # in the order given
        for stamp in (result.created_at, result.expires_at, result.updated_at,
                      result.finished_at, result.plan.instant, result.step_started_at,
                      *(a.at for a in result.approvals)):
            assert_aware_utc(stamp)
        assert result.approvals[0].at == T0 + timedelta(minutes=2)
        assert result.version == 7
        assert result.step_timings == {"create_branch": 0.5, "wait_branch": 12.25}

    minimal = make_request(2, plan=make_plan(2, instant=None))
    store.requests.add(minimal, event(subject="req-2"))
    got2 = store.requests.get("req-2")
    assert got2 == minimal
    assert got2 is not None
    assert (got2.plan.instant, got2.step, got2.verification, got2.finished_at) == (
        None, None, None, None)
    assert (got2.approvals, got2.operation_ids, got2.extra, got2.version) == ((), (), {}, 1)
    assert (got2.step_started_at, got2.step_timings) == (None, {})
    assert store.requests.get("nope") is None
    assert store.verify() == (2, None)


def test_list_requests_newest_first_with_state_filter_and_limit(store: SqlStore) -> None:
    states = [RequestState.PENDING, RequestState.APPROVED, RequestState.EXPIRED,
              RequestState.PENDING, RequestState.FAILED]
    for n, state in enumerate(states, start=1):
        store.requests.add(make_request(n, at=T0 + timedelta(minutes=n % 4), state=state),
                           event(subject=f"req-{n}"))
    # created_at: req-4 at T0, req-1 T0+1, req-5 T0+1, req-2 T0+2, req-3 T0+3
    assert [r.id for r in store.requests.list()] == ["req-3", "req-2", "req-5", "req-1",
                                                     "req-4"]
    assert [r.id for r in store.requests.list(limit=2)] == ["req-3", "req-2"]
    assert [r.id for r in store.requests.list((RequestState.PENDING,))] == ["req-1", "req-4"]
    assert [r.id for r in store.requests.list(
        (RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING), limit=2)] == [
        "req-2", "req-1"]
    assert store.requests.list(()) == []
    assert store.requests.list((RequestState.SUCCEEDED,)) == []
    with pytest.raises(ValueError):
        store.requests.list(limit=0)
    with pytest.raises(ValueError):
        store.requests.list(("nonsense",))  # type: ignore[arg-type]


def test_duplicate_id_raises_and_records_nothing(store: SqlStore) -> None:
    first = store.requests.add(make_request(1), event())
    twin = make_request(1, reason="a second request with the same id")
    with pytest.raises(DuplicateRequest):
        store.requests.add(twin, event("request.created.again"))
    assert store.requests.get("req-1") == first
    assert actions(store) == ["request.created"]
    assert store.verify() == (1, None)


def test_bad_values_are_refused_before_anything_is_written(store: SqlStore) -> None:
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive datetime"):
        store.requests.add(make_request(at=naive), event())
    request = make_request()
    with pytest.raises(ValueError, match="naive datetime"):  # the store, not the plan's hash
        store.requests.add(replace(request, plan=replace(request.plan, instant=naive)),
                           event())
    with pytest.raises(ValueError, match="naive datetime"):
        store.requests.add(make_request(approvals=(Approval("U0A", naive),)), event())
    with pytest.raises(ValueError, match="JSON"):
        store.requests.add(make_request(extra={"when": T0}), event())
    with pytest.raises(TypeError, match="plan"):
        store.requests.add(replace(make_request(), plan="restore main"),  # type: ignore[arg-type]
                           event())
    assert store.requests.list() == [] and store.verify() == (0, None)

    added = store.requests.add(make_request(), event())
    bad = [
        (ValueError, dict(finished_at=naive)),
        (ValueError, dict(step_started_at=naive)),
        (ValueError, dict(verification={"ratio": float("nan")})),
        (ValueError, dict(step_timings={"verify": float("inf")})),
        (TypeError, dict(approvals=("U0A",))),
        (TypeError, dict(operation_ids="op-1")),
        (TypeError, dict(operation_ids=(1,))),
        (TypeError, dict(extra=["not", "a", "mapping"])),
        (ValueError, dict(step="somewhere")),
    ]
    for error, change in bad:
        with pytest.raises(error):
            store.requests.save(replace(added, **change), 1, event("request.changed"))
    with pytest.raises(TypeError, match="plan"):
        store.requests.save(replace(added, plan="x"), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ChangeRequest"):  # another kind of entity
        store.requests.save(make_drill(), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected_version"):
        store.requests.save(added, None)  # type: ignore[arg-type]
    got = store.requests.get("req-1")
    assert got == make_request() and got is not None and got.version == 1
    assert actions(store) == ["request.created"]
    assert store.verify() == (1, None)


def make_drill() -> Drill:
    return Drill(id="d0000001", state=DrillState.REQUESTED, started_by="U0ALICE",
                 target_instant=T0, branch_name="drill-20260113-142500", created_at=T0,
                 updated_at=T0)


# --- compare-and-set -----------------------------------------------------------------


def test_save_request_is_compare_and_set_on_the_version(store: SqlStore) -> None:
    store._now = lambda: T0 + timedelta(minutes=5)
    added = store.requests.add(make_request(required_approvals=2), event())
    approval = Approval("U0APPROVER", T0 + timedelta(minutes=4))
    first = store.requests.save(
        replace(added, approvals=(approval,), card_ts="1.2", card_channel="C1"), 1,
        event("request.approved", actor="U0APPROVER"))
    assert first is not None
    assert (first.version, first.approvals, first.card_ts, first.card_channel) == (
        2, (approval,), "1.2", "C1")
    assert first.updated_at == T0 + timedelta(minutes=5)
    assert_aware_utc(first.updated_at)
    assert first.state is RequestState.PENDING  # fields left as they were stay so

    stale = store.requests.save(
        replace(added, state=RequestState.REJECTED, decided_by="U0LATE"), 1,
        event("request.rejected"))
    assert stale is None
    assert store.requests.save(replace(first, error="x"), 1, event("request.touched")) is None
    assert store.requests.get("req-1") == first  # nothing changed
    assert actions(store) == ["request.created", "request.approved"]  # nothing appended
    missing = replace(added, id="missing")
    assert store.requests.save(missing, 1, event("x")) is None
    assert store.requests.save(replace(missing, state=RequestState.APPROVED), 1) is None
    assert store.requests.get("missing") is None

    # `updated_at` is the store's now and `version` expected + 1, whatever the entity says
    store._now = lambda: T0 + timedelta(hours=1)
    second = Approval("U0OTHER", T0 + timedelta(minutes=6))
    approved = store.requests.save(
        replace(first, state=RequestState.APPROVED, approvals=(approval, second),
                updated_at=T0 - timedelta(days=1), version=42, extra={"k": "v"}),
        2, event("request.quorum"))
    assert approved is not None
    assert (approved.version, approved.state, approved.approvers, approved.extra) == (
        3, RequestState.APPROVED, ("U0APPROVER", "U0OTHER"), {"k": "v"})
    assert approved.updated_at == T0 + timedelta(hours=1)
    assert approved.plan == first.plan and approved.plan_hash == first.plan_hash

    quiet = store.requests.save(
        replace(approved, step=Step.CREATE_BRANCH, operation_ids=("op-1",),
                verification={"ok": False}, step_started_at=T0 + timedelta(hours=1),
                step_timings={"create_branch": 1.5}), 3)
    assert quiet is not None and quiet.version == 4
    assert (quiet.step, quiet.operation_ids, quiet.verification, quiet.step_timings) == (
        Step.CREATE_BRANCH, ("op-1",), {"ok": False}, {"create_branch": 1.5})
    assert actions(store) == ["request.created", "request.approved", "request.quorum"]

    cleared = store.requests.save(replace(quiet, verification=None, step=None,
                                          step_started_at=None), 4)
    assert cleared is not None
    assert (cleared.verification, cleared.step, cleared.step_started_at) == (None, None, None)
    assert store.requests.get("req-1") == cleared
    # an entity saved under another id is a save of that other record, not of this one
    assert store.requests.save(replace(cleared, id="req-other"), 5) is None
    assert store.requests.get("req-1") == cleared
    assert store.verify() == (3, None)


def test_illegal_transitions_raise_and_change_nothing(store: SqlStore) -> None:
    added = store.requests.add(make_request(), event())
    with pytest.raises(ValueError, match="pending to running"):
        store.requests.save(replace(added, state=RequestState.RUNNING,
                                    step=Step.CREATE_BRANCH), 1, event("request.running"))
    with pytest.raises(ValueError, match="pending to succeeded"):
        store.requests.save(replace(added, state=RequestState.SUCCEEDED), 1,
                            event("request.succeeded"))
    with pytest.raises(ValueError):
        store.requests.save(replace(added, state="no-such-state"), 1,  # type: ignore[arg-type]
                            event("request.nowhere"))
    assert store.requests.get("req-1") == added
    assert actions(store) == ["request.created"]

    version = 1
    current = added
    for state in (RequestState.APPROVED, RequestState.RUNNING, RequestState.SUCCEEDED):
        moved = store.requests.save(replace(current, state=state), version,
                                    event(f"request.{state.value}"))
        assert moved is not None and moved.state is state
        version, current = moved.version, moved
    done = store.requests.get("req-1")
    for illegal in (RequestState.PENDING, RequestState.RUNNING, RequestState.FAILED,
                    RequestState.APPROVED):
        with pytest.raises(ValueError, match=f"succeeded to {illegal.value}"):
            store.requests.save(replace(current, state=illegal), version,
                                event("request.reopened"))
    # Judged against the row as stored, not against the state the caller read: a caller
    # holding the pending copy at the current version may not skip ahead either.
    with pytest.raises(ValueError, match="succeeded to approved"):
        store.requests.save(replace(added, state=RequestState.APPROVED), version,
                            event("request.approved.again"))
    # A stale version is a lost race (None), even when the transition would be illegal.
    assert store.requests.save(replace(added, state=RequestState.APPROVED), 1,
                               event("x")) is None
    assert store.requests.get("req-1") == done
    assert actions(store) == ["request.created", "request.approved", "request.running",
                              "request.succeeded"]
    assert store.verify() == (4, None)


def test_a_save_that_keeps_the_state_is_not_a_transition(store: SqlStore) -> None:
    added = store.requests.add(make_request(required_approvals=2), event())
    noted = store.requests.save(replace(added, extra={"reminded_at": "x"}), 1,
                                event("request.reminded"))
    assert noted is not None and (noted.state, noted.version) == (RequestState.PENDING, 2)


def test_concurrent_approvals_have_one_winner(store: SqlStore) -> None:
    added = store.requests.add(make_request(required_approvals=2), event())
    workers = 8
    barrier = threading.Barrier(workers)

    def attempt(worker: int) -> ChangeRequest | None:
        barrier.wait()
        approval = Approval(f"U0APPROVER{worker}", T0 + timedelta(seconds=worker))
        return store.requests.save(replace(added, approvals=(approval,)), 1,
                                   event("request.approved", worker=worker))

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(attempt, range(workers)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    (winner,) = winners
    assert winner.version == 2 and len(winner.approvals) == 1
    assert store.requests.get("req-1") == winner
    (_, approved) = store.audit_for("req-1")
    assert approved.details == {"worker": int(winner.approvals[0].user_id[-1])}
    assert store.verify() == (2, None)


def test_two_stores_racing_on_one_transition_have_one_winner(database_url: str) -> None:
    """Two processes' stores (separate engines and pools), four threads each, all moving
    the same request from pending to approved at version 1."""
    with SqlStore(database_url) as one, SqlStore(database_url) as two:
        added = one.requests.add(make_request(), event())
        barrier = threading.Barrier(8)

        def attempt(worker: int) -> ChangeRequest | None:
            s = one if worker % 2 else two
            barrier.wait()
            return s.requests.save(
                replace(added, state=RequestState.APPROVED,
                        approvals=(Approval(f"U0APPROVER{worker}", T0),)),
                1, event("request.approved", actor=f"U0APPROVER{worker}"))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert one.requests.get("req-1") == two.requests.get("req-1") == winners[0]
        assert [(e.action, e.actor) for e in two.audit_for("req-1")] == [
            ("request.created", "U0REQUESTER"),
            ("request.approved", winners[0].approvers[0])]
        assert one.verify() == (2, None)


def test_request_and_audit_event_are_one_transaction(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_append(*_args: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(store, "append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.requests.add(make_request(), event())
    assert store.requests.get("req-1") is None
    monkeypatch.undo()

    added = store.requests.add(make_request(), event())
    monkeypatch.setattr(store, "append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.requests.save(replace(added, state=RequestState.APPROVED), 1,
                            event("request.approved"))
    monkeypatch.undo()
    got = store.requests.get("req-1")
    assert got is not None and (got.state, got.version) == (RequestState.PENDING, 1)
    assert store.verify() == (1, None)


# --- leases ----------------------------------------------------------------------------


def test_claim_request_is_a_lease_and_leaves_the_version_alone(store: SqlStore) -> None:
    clock = [T0]
    store._now = lambda: clock[0]
    added = store.requests.add(make_request(state=RequestState.APPROVED), event())
    claimed = store.requests.claim("req-1", "worker-a", 30)
    assert claimed == added and claimed is not None and claimed.version == 1
    assert store.requests.lease_of("req-1") == ("worker-a", T0 + timedelta(seconds=30))
    assert store.requests.claim("req-1", "worker-b", 30) is None  # held by a
    assert store.requests.claim("req-1", "worker-a", 60) is not None  # a extends its own
    clock[0] = T0 + timedelta(seconds=59)
    assert store.requests.claim("req-1", "worker-b", 30) is None
    store.requests.release("req-1", "worker-b")  # not b's: nothing happens
    assert store.requests.lease_of("req-1") == ("worker-a", T0 + timedelta(seconds=60))

    # Without a lease owner named, the lease does not stop a compare-and-set: the version
    # is the guard for changes. A save leaves the lease as it was.
    moved = store.requests.save(replace(added, state=RequestState.RUNNING,
                                        step=Step.CREATE_BRANCH), 1, event("request.running"))
    assert moved is not None and moved.version == 2
    assert store.requests.lease_of("req-1") == ("worker-a", T0 + timedelta(seconds=60))

    clock[0] = T0 + timedelta(seconds=61)  # a's lease has expired
    taken = store.requests.claim("req-1", "worker-b", 30)
    assert taken == moved  # same version, same updated_at
    lease = store.requests.lease_of("req-1")
    assert lease == ("worker-b", clock[0] + timedelta(seconds=30))
    assert_aware_utc(lease[1] if lease else None)
    store.requests.release("req-1", "worker-b")
    assert store.requests.lease_of("req-1") is None
    assert store.requests.get("req-1") == moved
    assert store.requests.claim("req-1", "worker-c", 5) is not None
    assert store.requests.claim("missing", "worker-c", 5) is None
    assert store.requests.lease_of("missing") is None
    with pytest.raises(ValueError):
        store.requests.claim("req-1", "worker-c", 0)
    assert actions(store) == ["request.created", "request.running"]  # leases are not audited
    assert store.verify() == (2, None)


def test_a_worker_whose_lease_was_taken_cannot_write(store: SqlStore) -> None:
    clock = [T0]
    store._now = lambda: clock[0]
    added = store.requests.add(make_request(state=RequestState.APPROVED), event())
    assert store.requests.claim("req-1", "worker-a", 20) is not None
    running = store.requests.save(
        replace(added, state=RequestState.RUNNING, step=Step.VERIFY), 1,
        event("request.running"), lease_owner="worker-a")
    assert running is not None and running.version == 2

    clock[0] = T0 + timedelta(seconds=25)  # a's verification outlasted its lease
    assert store.requests.claim("req-1", "worker-b", 20) is not None
    # a finishes with the version it last wrote (still current) but b holds the lease now
    late = store.requests.save(
        replace(running, state=RequestState.SUCCEEDED, step=Step.DONE,
                verification={"ok": True, "by": "a"}), 2,
        event("request.succeeded", by="a"), lease_owner="worker-a")
    assert late is None
    assert store.requests.get("req-1") == running  # nothing written
    assert actions(store) == ["request.created", "request.running"]  # nothing appended
    assert store.requests.lease_of("req-1") == ("worker-b", clock[0] + timedelta(seconds=20))
    # a worker that never held it cannot write either
    assert store.requests.save(replace(running, error="x"), 2, event("request.x"),
                               lease_owner="worker-z") is None

    done = store.requests.save(
        replace(running, state=RequestState.SUCCEEDED, step=Step.DONE,
                verification={"ok": True, "by": "b"}), 2,
        event("request.succeeded", by="b"), lease_owner="worker-b")
    assert done is not None and done.verification == {"ok": True, "by": "b"}
    assert [e.details for e in store.audit_for("req-1")][-1] == {"by": "b"}
    assert store.verify() == (3, None)


def test_concurrent_claims_have_one_winner(store: SqlStore) -> None:
    store.requests.add(make_request(state=RequestState.APPROVED), event())
    barrier = threading.Barrier(6)

    def attempt(worker: int) -> ChangeRequest | None:
        barrier.wait()
        return store.requests.claim("req-1", f"worker-{worker}", 60)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert sum(r is not None for r in results) == 1
    got = store.requests.get("req-1")
    assert got is not None and got.version == 1


# --- the audit trail -------------------------------------------------------------------


def test_audit_for_returns_a_subjects_entries_oldest_first(store: SqlStore) -> None:
    assert store.audit_for("req-1") == []
    one = store.requests.add(make_request(1), event(subject="req-1"))
    store.append(event("backup.requested", subject="backup-20260113-142500"))
    two = store.requests.add(make_request(2), event(subject="req-2"))
    store.requests.save(replace(one, state=RequestState.APPROVED), 1,
                        event("request.approved", subject="req-1", actor="U0APPROVER",
                              by="U0APPROVER"))
    store.requests.save(replace(two, state=RequestState.CANCELLED, decided_by="U0REQUESTER"),
                        1, event("request.cancelled", subject="req-2"))
    store.append(event("request.noted", subject="req-1"))

    first = store.audit_for("req-1")
    assert [(e.seq, e.action) for e in first] == [
        (1, "request.created"), (4, "request.approved"), (6, "request.noted")]
    assert first[1].actor == "U0APPROVER" and first[1].details == {"by": "U0APPROVER"}
    assert [e.action for e in store.audit_for("req-2")] == ["request.created",
                                                           "request.cancelled"]
    assert store.audit_for("req-") == []  # exact subjects only
    every = {e.seq: e for e in store.entries()}
    assert all(every[e.seq] == e for e in first)
    assert store.verify() == (6, None)
