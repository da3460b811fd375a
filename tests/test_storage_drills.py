"""Restore drills in the store, on both SQLite and PostgreSQL: round trips, newest-first
lists, the compare-and-set on the version with its audit entry, one open drill at a time,
leases, and the migration."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import inspect

from bot.domain.audit import AuditEvent
from bot.domain.drills import Drill, DrillState, DrillStep, drill_branch_name
from bot.domain.errors import DuplicateDrill
from bot.services.ports import DrillStore
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
    running = store.update_drill(drill.id, drill.version, None, state=DrillState.RUNNING)
    assert running is not None
    done = store.update_drill(drill.id, running.version, None, state=state,
                              step=DrillStep.DONE, finished_at=running.updated_at)
    assert done is not None
    return done


def test_migration_0003_adds_drills_and_goes_down_again(database_url: str) -> None:
    with SqlStore(database_url) as s:
        assert current_revision(database_url) is not None
        inspector = inspect(s.engine)
        assert "drills" in inspector.get_table_names()
        assert {ix["name"] for ix in inspector.get_indexes("drills")} >= {
            "ix_drills_state", "ix_drills_created_at"}
        s.add_drill(make_drill(1), event())

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
        assert s.list_drills() == []
        assert s.verify() == (1, None)
        assert [e.action for e in s.audit_for("d0000001")] == ["drill.requested"]


def test_store_satisfies_the_drill_port(store: SqlStore) -> None:
    port: DrillStore = store
    assert port.get_drill("nope") is None
    assert port.last_successful_drill() is None


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
        summary="Verified 2 tables", error=None, failed_step=None, next_step=None,
        cleanup_error=None, branch_deleted=False, card_channel="C0ALERTS",
        card_ts="1768314300.000100")
    added = store.add_drill(drill, event())
    assert added == drill
    got = store.get_drill(drill.id)
    assert got == drill
    assert got is not None
    assert got.state is DrillState.RUNNING and got.step is DrillStep.DELETE_BRANCH
    assert got.operation_ids == ("op-2", "op-1")
    for stamp in (got.created_at, got.updated_at, got.target_instant, got.started_at,
                  got.step_started_at, got.newest_restored_at):
        assert stamp is not None and stamp.utcoffset() == timedelta(0)
    assert [e.action for e in store.audit_for(drill.id)] == ["drill.requested"]


def test_list_is_newest_first_and_filters_by_state(store: SqlStore) -> None:
    first = store.add_drill(make_drill(1, at=T0), event(subject="d0000001"))
    finish(store, first)
    second = store.add_drill(make_drill(2, at=T0 + timedelta(days=90)),
                             event(subject="d0000002"))
    finish(store, second, DrillState.FAILED)
    third = store.add_drill(make_drill(3, at=T0 + timedelta(days=180)),
                            event(subject="d0000003"))
    assert [d.id for d in store.list_drills()] == [third.id, second.id, first.id]
    assert [d.id for d in store.list_drills(limit=2)] == [third.id, second.id]
    assert [d.id for d in store.list_drills((DrillState.REQUESTED, DrillState.RUNNING))] == [
        third.id]
    assert [d.id for d in store.list_drills((DrillState.FAILED,))] == [second.id]
    assert store.list_drills(()) == []
    last = store.last_successful_drill()
    assert last is not None and last.id == first.id
    with pytest.raises(ValueError):
        store.list_drills(limit=0)


def test_only_one_drill_is_open_at_a_time(store: SqlStore) -> None:
    first = store.add_drill(make_drill(1), event())
    with pytest.raises(DuplicateDrill, match="still requested"):
        store.add_drill(make_drill(2, at=T0 + timedelta(seconds=5)), event(subject="d0000002"))
    assert [e.action for e in store.audit_for("d0000002")] == []  # nothing recorded
    finish(store, first, DrillState.FAILED)
    # once it ended, the next one may start
    second = store.add_drill(make_drill(2, at=T0 + timedelta(seconds=5)),
                             event(subject="d0000002"))
    assert second.state is DrillState.REQUESTED


def test_ids_and_branch_names_are_unique(store: SqlStore) -> None:
    first = store.add_drill(make_drill(1), event())
    finish(store, first)
    with pytest.raises(DuplicateDrill, match="already recorded"):
        store.add_drill(make_drill(1, at=T0 + timedelta(seconds=1)), event())
    with pytest.raises(DuplicateDrill, match="branch named"):
        store.add_drill(make_drill(2), event(subject="d0000002"))


def test_two_starts_racing_record_one_drill(store: SqlStore) -> None:
    barrier = threading.Barrier(6)

    def start(n: int) -> str:
        barrier.wait()
        try:
            store.add_drill(make_drill(n, at=T0 + timedelta(seconds=n)),
                            event(subject=f"d{n:07d}"))
            return "added"
        except DuplicateDrill:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(start, range(1, 7)))
    assert sorted(outcomes) == ["added"] + ["refused"] * 5
    assert len(store.list_drills()) == 1
    assert store.verify()[1] is None


def test_update_is_compare_and_set_with_its_audit_entry(store: SqlStore) -> None:
    drill = store.add_drill(make_drill(1), event())
    running = store.update_drill(drill.id, drill.version, event("drill.started", actor="system"),
                                 state=DrillState.RUNNING, step=DrillStep.CREATE_BRANCH,
                                 started_at=T0)
    assert running is not None
    assert running.version == drill.version + 1 and running.state is DrillState.RUNNING
    assert running.updated_at > drill.updated_at
    # a stale version changes nothing and appends nothing
    assert store.update_drill(drill.id, drill.version, event("drill.lost", actor="system"),
                              step=DrillStep.VERIFY) is None
    assert store.update_drill("nope", 1, event("drill.lost"), step=DrillStep.VERIFY) is None
    timed = store.update_drill(drill.id, running.version,
                               event("drill.branch_created", actor="system"),
                               step=DrillStep.WAIT_BRANCH, step_timings={"create_branch": 0.5},
                               branch_id="br-x", operation_ids=("op-1",))
    assert timed is not None and timed.step_timings == {"create_branch": 0.5}
    assert [e.action for e in store.audit_for(drill.id)] == [
        "drill.requested", "drill.started", "drill.branch_created"]


def test_update_checks_the_state_machine_and_the_fields(store: SqlStore) -> None:
    drill = store.add_drill(make_drill(1), event())
    done = finish(store, drill)
    with pytest.raises(ValueError, match="cannot go from succeeded"):
        store.update_drill(drill.id, done.version, None, state=DrillState.RUNNING)
    with pytest.raises(TypeError, match="no updatable field"):
        store.update_drill(drill.id, done.version, None, colour="blue")
    with pytest.raises(TypeError):
        store.update_drill(drill.id, done.version, None, step_timings={"verify": "slow"})
    with pytest.raises(ValueError, match="timezone-aware"):
        store.update_drill(drill.id, done.version, None,
                           finished_at=datetime(2026, 1, 1))
    assert store.get_drill(drill.id) == done


def test_a_lease_keeps_other_workers_out_until_it_ends(store: SqlStore) -> None:
    drill = store.add_drill(make_drill(1), event())
    claimed = store.claim_drill(drill.id, "worker-a", 30)
    assert claimed is not None and claimed.version == drill.version  # not a change
    assert store.claim_drill(drill.id, "worker-b", 30) is None
    assert store.claim_drill(drill.id, "worker-a", 30) is not None  # renewed by its owner
    store.release_drill(drill.id, "worker-b")  # not the owner: nothing happens
    assert store.claim_drill(drill.id, "worker-b", 30) is None
    store.release_drill(drill.id, "worker-a")
    assert store.claim_drill(drill.id, "worker-b", 0.05) is not None
    threading.Event().wait(0.2)  # the short lease expires
    assert store.claim_drill(drill.id, "worker-c", 30) is not None
    lease = store.lease_of_drill(drill.id)
    assert lease is not None and lease[0] == "worker-c"
    assert store.claim_drill("nope", "worker-a", 30) is None
