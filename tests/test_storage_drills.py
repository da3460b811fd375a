"""Restore drills in the store, on both SQLite and PostgreSQL: round trips, newest-first
lists, the compare-and-set on the version with its audit entry, the state machine, one
open drill at a time, leases (and writes that name one), and the migration."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import inspect

from bot.domain.audit import AuditEvent
from bot.domain.drills import Drill, DrillState, DrillStep, drill_branch_name
from bot.domain.errors import DuplicateDrill
from bot.services.ports import Store
from storage import SqlStore, current_revision
from storage.db import create_engine_for
from storage.migrate import alembic_config, migration_lock

T0 = datetime(2026, 1, 13, 14, 25, 0, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


def make_drill(n: int = 1, *, at: datetime = T0, **extra: object) -> Drill:
    fields: dict[str, object] = {
        "id": f"d{n:07d}",
        "state": DrillState.REQUESTED,
        "started_by": "U0ALICE",
        "target_instant": at - timedelta(hours=24),
        "branch_name": drill_branch_name(at),
        "created_at": at,
        "updated_at": at,
    }
    fields.update(extra)
    return Drill(**fields)  # type: ignore[arg-type]


def event(action: str = "drill.requested", subject: str = "d0000001",
          actor: str = "U0ALICE", **details: object) -> AuditEvent:
    return AuditEvent(actor=actor, action=action, subject=subject, details=details)


def finish(store: SqlStore, drill: Drill, state: DrillState = DrillState.SUCCEEDED) -> Drill:
    running = store.drills.save(replace(drill, state=DrillState.RUNNING), drill.version)
    assert running is not None
    done = store.drills.save(replace(running, state=state, step=DrillStep.DONE,
                                     finished_at=running.updated_at), running.version)
    assert done is not None
    return done


def test_migration_0003_adds_drills_and_goes_down_again(database_url: str) -> None:
    with SqlStore(database_url) as s:
        assert current_revision(database_url) is not None
        inspector = inspect(s.engine)
        assert "drills" in inspector.get_table_names()
        assert {ix["name"] for ix in inspector.get_indexes("drills")} >= {
            "ix_drills_state", "ix_drills_created_at"}
        s.drills.add(make_drill(1), event())

    engine = create_engine_for(database_url)
    try:
        config = alembic_config()
        with engine.connect() as conn, migration_lock(conn):
            config.attributes["connection"] = conn
            command.downgrade(config, "0002")
        assert "drills" not in inspect(engine).get_table_names()
        assert "change_requests" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert current_revision(database_url) == "0002"

    with SqlStore(database_url) as s:  # up again: the table is back, empty; the trail kept
        assert s.drills.list() == []
        assert s.verify() == (1, None)
        assert [e.action for e in s.audit_for("d0000001")] == ["drill.requested"]


def test_store_satisfies_the_drill_port(store: SqlStore) -> None:
    port: Store = store
    assert port.drills.get("nope") is None
    assert port.drills.last_successful() is None


def test_add_get_round_trips_every_field_as_aware_utc(store: SqlStore) -> None:
    drill = make_drill(
        1, at=T0.astimezone(PLUS_TWO), state=DrillState.RUNNING, version=4,
        step=DrillStep.DELETE_BRANCH, channel_id="C0OPS", source_branch_id="br-main",
        source_branch_name="main", branch_id="br-drill", operation_ids=("op-2", "op-1"),
        started_at=T0 + timedelta(seconds=1), step_started_at=T0 + timedelta(seconds=9),
        step_timings={"create_branch": 0.25, "wait_branch": 3, "verify": 1.5},
        rto_seconds=4.75, rpo_seconds=1800.0,
        newest_restored_at=(T0 - timedelta(hours=24, minutes=30)).astimezone(PLUS_TWO),
        verification={"ok": True, "compared_tables": 2, "note": "ünïcode ✓", "none": None},
        summary="Verified 2 tables", error="not yet", failed_step=DrillStep.VERIFY,
        next_step="look at it", cleanup_error="still there", branch_deleted=True,
        finished_at=T0 + timedelta(minutes=1), card_channel="C0ALERTS",
        card_ts="1768314300.000100")
    added = store.drills.add(drill, event())
    assert added == drill
    got = store.drills.get(drill.id)
    assert got == drill
    assert got is not None
    assert store.drills.list() == [drill]
    assert got.state is DrillState.RUNNING and got.step is DrillStep.DELETE_BRANCH
    assert got.failed_step is DrillStep.VERIFY and got.branch_deleted is True
    assert got.operation_ids == ("op-2", "op-1")
    assert got.version == 4
    for stamp in (got.created_at, got.updated_at, got.target_instant, got.started_at,
                  got.step_started_at, got.newest_restored_at, got.finished_at):
        assert stamp is not None and stamp.utcoffset() == timedelta(0)
    assert [e.action for e in store.audit_for(drill.id)] == ["drill.requested"]

    store.drills.add(make_drill(2, at=T0 + timedelta(days=1), state=DrillState.SUCCEEDED,
                                step=DrillStep.DONE), event(subject="d0000002"))
    minimal = store.drills.get("d0000002")
    assert minimal is not None
    assert (minimal.operation_ids, minimal.step_timings, minimal.verification,
            minimal.failed_step, minimal.branch_deleted, minimal.version) == (
        (), {}, None, None, False, 1)


def test_list_is_newest_first_and_filters_by_state(store: SqlStore) -> None:
    first = store.drills.add(make_drill(1, at=T0), event(subject="d0000001"))
    finish(store, first)
    second = store.drills.add(make_drill(2, at=T0 + timedelta(days=90)),
                              event(subject="d0000002"))
    finish(store, second, DrillState.FAILED)
    third = store.drills.add(make_drill(3, at=T0 + timedelta(days=180)),
                             event(subject="d0000003"))
    assert [d.id for d in store.drills.list()] == [third.id, second.id, first.id]
    assert [d.id for d in store.drills.list(limit=2)] == [third.id, second.id]
    assert [d.id for d in store.drills.list((DrillState.REQUESTED, DrillState.RUNNING))] == [
        third.id]
    assert [d.id for d in store.drills.list((DrillState.FAILED,))] == [second.id]
    assert store.drills.list(()) == []
    last = store.drills.last_successful()
    assert last is not None and last.id == first.id
    with pytest.raises(ValueError):
        store.drills.list(limit=0)


def test_last_successful_is_the_newest_success(store: SqlStore) -> None:
    for n in (1, 2, 3):
        drill = store.drills.add(make_drill(n, at=T0 + timedelta(days=n)),
                                 event(subject=f"d{n:07d}"))
        finish(store, drill, DrillState.FAILED if n == 3 else DrillState.SUCCEEDED)
    last = store.drills.last_successful()
    assert last is not None and last.id == "d0000002"  # d0000003 is newer but failed


def test_only_one_drill_is_open_at_a_time(store: SqlStore) -> None:
    first = store.drills.add(make_drill(1), event())
    with pytest.raises(DuplicateDrill, match="open_slot"):
        store.drills.add(make_drill(2, at=T0 + timedelta(seconds=5)), event(subject="d0000002"))
    assert store.drills.get("d0000002") is None
    assert [e.action for e in store.audit_for("d0000002")] == []  # nothing recorded
    running = store.drills.save(replace(first, state=DrillState.RUNNING), 1)
    assert running is not None  # still open while it runs
    with pytest.raises(DuplicateDrill, match="open_slot"):
        store.drills.add(make_drill(2, at=T0 + timedelta(seconds=5)), event(subject="d0000002"))
    store.drills.save(replace(running, state=DrillState.FAILED, step=DrillStep.DONE), 2)
    # once it ended, the next one may start
    second = store.drills.add(make_drill(2, at=T0 + timedelta(seconds=5)),
                              event(subject="d0000002"))
    assert second.state is DrillState.REQUESTED
    assert [e.action for e in store.audit_for("d0000002")] == ["drill.requested"]


def test_ids_and_branch_names_are_unique(store: SqlStore) -> None:
    first = store.drills.add(make_drill(1), event())
    done = finish(store, first)
    with pytest.raises(DuplicateDrill, match=r"drills\.id|drills_pkey"):
        store.drills.add(make_drill(1, at=T0 + timedelta(seconds=1)), event("drill.again"))
    with pytest.raises(DuplicateDrill, match="branch_name"):
        store.drills.add(make_drill(2), event(subject="d0000002"))
    assert store.drills.list() == [done]
    assert [e.action for e in store.entries()] == ["drill.requested"]


def test_two_starts_racing_record_one_drill(store: SqlStore) -> None:
    barrier = threading.Barrier(6)

    def start(n: int) -> str:
        barrier.wait()
        try:
            store.drills.add(make_drill(n, at=T0 + timedelta(seconds=n)),
                             event(subject=f"d{n:07d}"))
            return "added"
        except DuplicateDrill:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(start, range(1, 7)))
    assert sorted(outcomes) == ["added"] + ["refused"] * 5
    assert len(store.drills.list()) == 1
    assert store.verify() == (1, None)


def test_two_stores_racing_to_start_record_one_drill(database_url: str) -> None:
    """Two replicas' stores (separate engines and pools) starting a drill at once."""
    with SqlStore(database_url) as one, SqlStore(database_url) as two:
        barrier = threading.Barrier(6)

        def start(n: int) -> bool:
            s = one if n % 2 else two
            barrier.wait()
            try:
                s.drills.add(make_drill(n, at=T0 + timedelta(seconds=n)),
                             event(subject=f"d{n:07d}"))
                return True
            except DuplicateDrill:
                return False

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(start, range(1, 7)))
        assert outcomes.count(True) == 1
        assert len(two.drills.list()) == 1 and one.verify() == (1, None)


def test_save_is_compare_and_set_with_its_audit_entry(store: SqlStore) -> None:
    drill = store.drills.add(make_drill(1), event())
    running = store.drills.save(
        replace(drill, state=DrillState.RUNNING, step=DrillStep.CREATE_BRANCH, started_at=T0),
        drill.version, event("drill.started", actor="system"))
    assert running is not None
    assert running.version == drill.version + 1 and running.state is DrillState.RUNNING
    assert running.updated_at > drill.updated_at
    # a stale version changes nothing and appends nothing
    assert store.drills.save(replace(drill, step=DrillStep.VERIFY), drill.version,
                             event("drill.lost", actor="system")) is None
    assert store.drills.save(replace(drill, id="nope"), 1, event("drill.lost")) is None
    assert store.drills.get(drill.id) == running
    timed = store.drills.save(
        replace(running, step=DrillStep.WAIT_BRANCH, step_timings={"create_branch": 0.5},
                branch_id="br-x", operation_ids=("op-1",)),
        running.version, event("drill.branch_created", actor="system"))
    assert timed is not None and timed.step_timings == {"create_branch": 0.5}
    assert (timed.branch_id, timed.operation_ids, timed.version) == ("br-x", ("op-1",), 3)
    assert timed.started_at == T0  # kept from the entity saved whole
    assert [e.action for e in store.audit_for(drill.id)] == [
        "drill.requested", "drill.started", "drill.branch_created"]


def test_save_checks_the_state_machine_and_the_values(store: SqlStore) -> None:
    drill = store.drills.add(make_drill(1), event())
    with pytest.raises(ValueError, match="cannot go from requested to succeeded"):
        store.drills.save(replace(drill, state=DrillState.SUCCEEDED), 1, event("drill.x"))
    done = finish(store, drill)
    with pytest.raises(ValueError, match="cannot go from succeeded"):
        store.drills.save(replace(done, state=DrillState.RUNNING), done.version,
                          event("drill.reopened"))
    with pytest.raises(ValueError, match="cannot go from succeeded"):
        store.drills.save(replace(done, state=DrillState.FAILED), done.version)
    with pytest.raises(ValueError):
        store.drills.save(replace(done, state="nonsense"), done.version)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # not plain JSON data
        store.drills.save(replace(done, step_timings={"verify": float("nan")}), done.version)
    with pytest.raises(ValueError):
        store.drills.save(replace(done, step="somewhere"), done.version)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.drills.save(replace(done, operation_ids="op-1"), done.version)
    with pytest.raises(ValueError, match="naive datetime"):
        store.drills.save(replace(done, finished_at=datetime(2026, 1, 1)), done.version)
    with pytest.raises(TypeError, match="Drill"):
        store.drills.save(object(), done.version)  # type: ignore[arg-type]
    assert store.drills.get(drill.id) == done
    assert [e.action for e in store.audit_for(drill.id)] == ["drill.requested"]
    # an ended drill may still be saved in its own state (its cleanup recorded, say)
    cleaned = store.drills.save(replace(done, branch_deleted=True), done.version)
    assert cleaned is not None and cleaned.branch_deleted


def test_a_lease_keeps_other_workers_out_until_it_ends(store: SqlStore) -> None:
    drill = store.drills.add(make_drill(1), event())
    claimed = store.drills.claim(drill.id, "worker-a", 30)
    assert claimed is not None and claimed.version == drill.version  # not a change
    assert store.drills.claim(drill.id, "worker-b", 30) is None
    assert store.drills.claim(drill.id, "worker-a", 30) is not None  # renewed by its owner
    store.drills.release(drill.id, "worker-b")  # not the owner: nothing happens
    assert store.drills.claim(drill.id, "worker-b", 30) is None
    store.drills.release(drill.id, "worker-a")
    assert store.drills.lease_of(drill.id) is None
    assert store.drills.claim(drill.id, "worker-b", 0.05) is not None
    threading.Event().wait(0.2)  # the short lease expires
    assert store.drills.claim(drill.id, "worker-c", 30) is not None
    lease = store.drills.lease_of(drill.id)
    assert lease is not None and lease[0] == "worker-c"
    assert store.drills.claim("nope", "worker-a", 30) is None
    assert store.drills.get(drill.id) == drill


def test_a_worker_whose_lease_was_taken_cannot_write(store: SqlStore) -> None:
    clock = [T0]
    store._now = lambda: clock[0]
    drill = store.drills.add(make_drill(1), event())
    assert store.drills.claim(drill.id, "worker-a", 20) is not None
    running = store.drills.save(replace(drill, state=DrillState.RUNNING), 1,
                                event("drill.started"), lease_owner="worker-a")
    assert running is not None
    clock[0] = T0 + timedelta(seconds=21)
    assert store.drills.claim(drill.id, "worker-b", 20) is not None
    assert store.drills.save(replace(running, step=DrillStep.WAIT_BRANCH), 2,
                             event("drill.branch_created"), lease_owner="worker-a") is None
    assert store.drills.get(drill.id) == running
    assert [e.action for e in store.audit_for(drill.id)] == ["drill.requested",
                                                             "drill.started"]
    moved = store.drills.save(replace(running, step=DrillStep.WAIT_BRANCH), 2,
                              event("drill.branch_created"), lease_owner="worker-b")
    assert moved is not None and moved.step is DrillStep.WAIT_BRANCH


def test_drill_and_audit_event_are_one_transaction(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_append(*_args: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(store, "append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.drills.add(make_drill(1), event())
    monkeypatch.undo()
    assert store.drills.get("d0000001") is None
    drill = store.drills.add(make_drill(1), event())  # its open slot was not taken
    monkeypatch.setattr(store, "append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.drills.save(replace(drill, state=DrillState.RUNNING), 1, event("drill.started"))
    monkeypatch.undo()
    assert store.drills.get("d0000001") == drill
    assert store.verify() == (1, None)
