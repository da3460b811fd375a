"""The store on both SQLite and PostgreSQL: URLs, engines, migrations, backups
(round trips, compare-and-set on the version, leases, the 0004 migration)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import DateTime, bindparam, inspect, text
from sqlalchemy.exc import IntegrityError

import storage
from bot.domain.audit import AuditEvent
from bot.domain.backups import Backup, BackupStatus
from bot.domain.drills import Drill, DrillState
from bot.domain.errors import DuplicateBackup
from bot.services.ports import Store
from storage import SqlStore, current_revision, upgrade_to_head
from storage.db import create_engine_for, sqlalchemy_url
from storage.migrate import alembic_config, head_revision, migration_lock
from storage.models import metadata

T0 = datetime(2026, 1, 13, 14, 25, 0, 123456, tzinfo=UTC)


def make_backup(n: int = 1, *, at: datetime = T0, status: BackupStatus = BackupStatus.REQUESTED,
                **extra: object) -> Backup:
    fields: dict[str, object] = {
        "id": f"bk-{n}",
        "branch_name": f"backup-20260113-1425{n:02d}",
        "status": status,
        "requested_by": "U0REQUESTER",
        "reason": f"before migration {n}",
        "created_at": at,
        "expires_at": at + timedelta(days=7),
        "updated_at": at,
    }
    fields.update(extra)
    return Backup(**fields)  # type: ignore[arg-type]


def event(action: str = "backup.requested", subject: str = "backup-x", **details: object
          ) -> AuditEvent:
    return AuditEvent(actor="U0REQUESTER", action=action, subject=subject, details=details)


def assert_aware_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


def a_drill() -> Drill:
    """Something that is not a Backup, to hand to the backups' records."""
    return Drill(id="d0000001", state=DrillState.REQUESTED, started_by="U0ALICE",
                 target_instant=T0, branch_name="drill-20260113-142500", created_at=T0,
                 updated_at=T0)


# --- URLs and engines ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///lifeguard.db", "sqlite:///lifeguard.db"),
        ("sqlite:////var/lib/lifeguard/lg.db", "sqlite:////var/lib/lifeguard/lg.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u:p@h/db?sslmode=require", "postgresql+psycopg://u:p@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("  POSTGRES://u@h/db ", "postgresql+psycopg://u@h/db"),
    ],
)
def test_sqlalchemy_url_maps_postgres_to_psycopg3(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "lifeguard.db", "", "postgresql+psycopg2://h/d",
                                 "postgres://"])
def test_sqlalchemy_url_refuses_others_saying_what_is_accepted(bad: str) -> None:
    with pytest.raises(ValueError, match="accepted: sqlite:///") as info:
        sqlalchemy_url(bad)
    assert "postgres://" in str(info.value)


def test_sqlite_engine_is_durable_and_concurrent(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}
    finally:
        engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000,
                      "synchronous": 2}  # 2 = FULL


def test_postgres_engine_uses_psycopg3_with_pre_ping(postgres_url: str) -> None:
    engine = create_engine_for(postgres_url)
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


# --- migrations ----------------------------------------------------------------------


def test_migrations_apply_on_empty_database_and_twice_is_a_no_op(database_url: str) -> None:
    assert current_revision(database_url) is None
    assert upgrade_to_head(database_url) == head_revision()
    assert upgrade_to_head(database_url) == head_revision()
    assert current_revision(database_url) == head_revision()
    engine = create_engine_for(database_url)
    try:
        inspector = inspect(engine)
        assert {"audit_entries", "backups", "alembic_version"} <= set(inspector.get_table_names())
        assert {ix["name"] for ix in inspector.get_indexes("backups")} >= {"ix_backups_status"}
    finally:
        engine.dispose()


def test_migrations_match_the_models(database_url: str) -> None:
    upgrade_to_head(database_url)
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_concurrent_starts_migrate_once(database_url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        revisions = list(pool.map(lambda _: upgrade_to_head(database_url), range(4)))
    assert revisions == [head_revision()] * 4


def test_works_from_another_working_directory(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with SqlStore(database_url) as s:
        s.backups.add(make_backup(), event())
        assert s.backups.get("bk-1") is not None
        assert s.verify() == (1, None)
    assert current_revision(database_url) == head_revision()


def test_alembic_command_line_with_the_packaged_ini(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    ini = Path(storage.__file__).resolve().parent / "alembic.ini"
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert current_revision(url) == head_revision()


def test_store_satisfies_the_port(store: SqlStore) -> None:
    port: Store = store
    port.ping()


def test_without_migrate_the_store_does_not_touch_the_schema(database_url: str) -> None:
    with SqlStore(database_url, migrate=False) as s:
        s.ping()
    assert current_revision(database_url) is None


# --- backups -------------------------------------------------------------------------


def test_add_get_round_trips_every_field_as_aware_utc(store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    backup = make_backup(
        1, at=T0.astimezone(plus_two), version=3, branch_id="br-abc",
        parent_branch_id="br-main", operation_ids=("op-1", "op-2"), error="none yet",
        channel_id="C0ASKED", card_channel="C0CARDS", card_ts="1.2",
        response_url="https://hooks.slack.com/x", deleted_by="U0OTHER", logical_size=2**40,
        step_started_at=(T0 + timedelta(seconds=4)).astimezone(plus_two),
        step_timings={"requested": 0.25, "creating": 3.5},
    )
    added = store.backups.add(backup, event(subject=backup.branch_name))
    assert added == backup
    for got in (added, store.backups.get("bk-1"),
                store.backups.by_branch_name(backup.branch_name),
                store.backups.find(branch_name=backup.branch_name), store.backups.list()[0]):
        assert got == backup
        assert got is not None
        assert got.status is BackupStatus.REQUESTED
        for stamp in (got.created_at, got.expires_at, got.updated_at, got.step_started_at):
            assert_aware_utc(stamp)
        assert got.created_at == T0
        assert (got.version, got.channel_id, got.card_channel, got.card_ts) == (
            3, "C0ASKED", "C0CARDS", "1.2")
        assert got.operation_ids == ("op-1", "op-2")
        assert got.step_timings == {"requested": 0.25, "creating": 3.5}

    minimal = store.backups.add(make_backup(2), event())
    assert minimal == make_backup(2)
    assert (minimal.version, minimal.operation_ids, minimal.step_timings, minimal.card_ts,
            minimal.step_started_at) == (1, (), {}, None, None)
    assert store.backups.get("nope") is None
    assert store.backups.by_branch_name("backup-nope") is None
    assert [(e.action, e.subject) for e in store.entries()] == [
        ("backup.requested", backup.branch_name), ("backup.requested", "backup-x")]


def test_naive_datetimes_are_refused_and_nothing_is_written(store: SqlStore) -> None:
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive datetime"):
        store.backups.add(make_backup(at=naive), event())
    assert store.backups.list() == [] and store.verify() == (0, None)
    added = store.backups.add(make_backup(), event())
    with pytest.raises(ValueError, match="naive datetime"):
        store.backups.save(replace(added, expires_at=datetime(2030, 1, 1)), 1,
                           event("backup.extended"))
    with pytest.raises(ValueError, match="naive datetime"):
        store.backups.save(replace(added, step_started_at=naive), 1, event("backup.step"))
    assert store.backups.get("bk-1") == added
    assert store.verify() == (1, None)


def test_wrong_typed_values_are_refused_and_nothing_is_written(store: SqlStore) -> None:
    added = store.backups.add(make_backup(), event())
    with pytest.raises(TypeError):  # one operation id, not a sequence of them
        store.backups.save(replace(added, operation_ids="op-1"), 1, event("backup.creating"))
    with pytest.raises(TypeError):
        store.backups.save(replace(added, operation_ids=(1, 2)), 1, event("backup.creating"))
    with pytest.raises(ValueError):
        store.backups.save(replace(added, status="nonsense"), 1, event("backup.nonsense"))
    with pytest.raises(ValueError):  # not plain JSON data
        store.backups.save(replace(added, step_timings={"creating": float("nan")}), 1,
                           event("backup.timed"))
    with pytest.raises(TypeError, match="Backup"):  # another kind of entity
        store.backups.save(a_drill(), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected_version"):
        store.backups.save(added, "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected_version"):
        store.backups.save(added, True)
    assert store.backups.get("bk-1") == added
    assert [e.action for e in store.entries()] == ["backup.requested"]
    assert store.verify() == (1, None)


def test_list_backups_newest_first_with_status_filter_and_limit(store: SqlStore) -> None:
    statuses = [BackupStatus.READY, BackupStatus.REQUESTED, BackupStatus.FAILED,
                BackupStatus.READY]
    for n, status in enumerate(statuses, start=1):
        store.backups.add(make_backup(n, at=T0 + timedelta(minutes=n), status=status),
                          event())
    assert [b.id for b in store.backups.list()] == ["bk-4", "bk-3", "bk-2", "bk-1"]
    assert [b.id for b in store.backups.list(limit=3)] == ["bk-4", "bk-3", "bk-2"]
    assert [b.id for b in store.backups.list((BackupStatus.READY,))] == ["bk-4", "bk-1"]
    assert [b.id for b in store.backups.list((BackupStatus.FAILED, BackupStatus.REQUESTED))
            ] == ["bk-3", "bk-2"]
    assert [b.id for b in store.backups.list((BackupStatus.READY,), limit=1)] == ["bk-4"]
    assert store.backups.list(()) == []
    assert store.backups.list((BackupStatus.DELETED,)) == []
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            store.backups.list(limit=bad)  # type: ignore[arg-type]


def test_save_backup_is_compare_and_set_on_the_version(store: SqlStore) -> None:
    later = T0 + timedelta(minutes=5)
    store._now = lambda: later
    added = store.backups.add(make_backup(), event())
    moved = store.backups.save(
        replace(added, status=BackupStatus.CREATING, operation_ids=("op-9",),
                branch_id="br-new"), added.version, event("backup.creating"))
    assert moved is not None
    assert (moved.status, moved.operation_ids, moved.branch_id, moved.version) == (
        BackupStatus.CREATING, ("op-9",), "br-new", 2)
    assert moved.updated_at == later
    assert_aware_utc(moved.updated_at)
    assert (moved.reason, moved.created_at) == (added.reason, added.created_at)

    # Another writer that read version 1 lost the race: nothing written, nothing appended,
    # whatever the status it thought the backup had.
    stale = store.backups.save(replace(added, status=BackupStatus.FAILED, error="boom"), 1,
                               event("backup.failed"))
    assert stale is None
    assert store.backups.save(replace(moved, error="boom"), 1, event("backup.failed")) is None
    assert store.backups.get("bk-1") == moved  # nothing changed
    assert [e.action for e in store.entries()] == ["backup.requested", "backup.creating"]
    missing = replace(added, id="missing", branch_name="backup-missing")
    assert store.backups.save(missing, 1, event("backup.ready")) is None
    assert store.backups.get("missing") is None

    # The expected version is the guard, not the entity's own `version` field (which is
    # written as expected + 1); `updated_at` is always the store's now.
    store._now = lambda: later + timedelta(hours=1)
    done = store.backups.save(
        replace(moved, status=BackupStatus.READY, version=99, logical_size=123,
                updated_at=T0 - timedelta(days=1)), 2)
    assert done is not None
    assert (done.status, done.version, done.logical_size) == (BackupStatus.READY, 3, 123)
    assert done.updated_at == later + timedelta(hours=1)
    assert len(list(store.entries())) == 2  # no event given, none appended

    # A backup may even go back a status: backups have no state machine in the store.
    retried = store.backups.save(replace(done, status=BackupStatus.DELETING), 3)
    assert retried is not None and retried.version == 4
    assert store.verify() == (2, None)


def test_concurrent_compare_and_set_has_one_winner(store: SqlStore) -> None:
    added = store.backups.add(make_backup(), event())
    barrier = threading.Barrier(8)

    def attempt(worker: int) -> Backup | None:
        barrier.wait()
        return store.backups.save(
            replace(added, status=BackupStatus.CREATING, branch_id=f"br-{worker}"),
            added.version, event("backup.creating", worker=worker))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    (winner,) = winners
    assert store.backups.get("bk-1") == winner and winner.version == 2
    (_, creating) = store.entries()
    assert creating.action == "backup.creating"
    assert f"br-{creating.details['worker']}" == winner.branch_id  # the winner's event
    assert store.verify() == (2, None)


def test_two_stores_racing_on_one_backup_have_one_winner(database_url: str) -> None:
    """Two processes' stores (separate engines and pools), four threads each."""
    with SqlStore(database_url) as one, SqlStore(database_url) as two:
        added = one.backups.add(make_backup(), event())
        barrier = threading.Barrier(8)

        def attempt(worker: int) -> Backup | None:
            s = one if worker % 2 else two
            barrier.wait()
            return s.backups.save(replace(added, status=BackupStatus.READY,
                                          branch_id=f"br-{worker}"),
                                  1, event("backup.ready", worker=worker))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert one.backups.get("bk-1") == two.backups.get("bk-1") == winners[0]
        assert [e.action for e in two.entries()] == ["backup.requested", "backup.ready"]
        assert one.verify() == (2, None)


def test_claim_is_a_lease_and_leaves_the_version_alone(store: SqlStore) -> None:
    clock = [T0]
    store._now = lambda: clock[0]
    added = store.backups.add(make_backup(), event())
    claimed = store.backups.claim("bk-1", "worker-a", 30)
    assert claimed == added  # same version, same updated_at: a lease is not a change
    assert store.backups.lease_of("bk-1") == ("worker-a", T0 + timedelta(seconds=30))
    assert store.backups.claim("bk-1", "worker-b", 30) is None  # held by a
    assert store.backups.claim("bk-1", "worker-a", 60) is not None  # a extends its own
    clock[0] = T0 + timedelta(seconds=59)
    assert store.backups.claim("bk-1", "worker-b", 30) is None
    store.backups.release("bk-1", "worker-b")  # not b's: nothing happens
    assert store.backups.lease_of("bk-1") == ("worker-a", T0 + timedelta(seconds=60))
    clock[0] = T0 + timedelta(seconds=61)  # a's lease has expired
    claimed = store.backups.claim("bk-1", "worker-b", 30)
    assert claimed is not None and claimed.id == "bk-1" and claimed.version == 1
    lease = store.backups.lease_of("bk-1")
    assert lease == ("worker-b", clock[0] + timedelta(seconds=30))
    assert_aware_utc(lease[1] if lease else None)
    store.backups.release("bk-1", "worker-b")
    assert store.backups.lease_of("bk-1") is None
    assert store.backups.claim("bk-1", "worker-c", 5) is not None
    assert store.backups.claim("missing", "worker-c", 5) is None
    assert store.backups.lease_of("missing") is None
    with pytest.raises(ValueError):
        store.backups.claim("bk-1", "worker-c", 0)
    assert store.backups.get("bk-1") == added
    assert [e.action for e in store.entries()] == ["backup.requested"]  # leases: no audit


def test_a_worker_whose_lease_was_taken_cannot_write(store: SqlStore) -> None:
    clock = [T0]
    store._now = lambda: clock[0]
    added = store.backups.add(make_backup(), event())
    assert store.backups.claim("bk-1", "worker-a", 20) is not None
    step = store.backups.save(replace(added, status=BackupStatus.CREATING), 1,
                              event("backup.creating"), lease_owner="worker-a")
    assert step is not None and step.version == 2
    assert store.backups.lease_of("bk-1") == ("worker-a", T0 + timedelta(seconds=20))

    clock[0] = T0 + timedelta(seconds=21)  # a stalled; b takes the work over
    assert store.backups.claim("bk-1", "worker-b", 20) is not None
    # a wakes up with the version it wrote last: still current, but the lease is b's
    late = store.backups.save(replace(step, status=BackupStatus.FAILED, error="a's view"), 2,
                              event("backup.failed"), lease_owner="worker-a")
    assert late is None
    assert store.backups.get("bk-1") == step  # nothing written
    assert [e.action for e in store.entries()] == ["backup.requested", "backup.creating"]
    assert store.backups.lease_of("bk-1") == ("worker-b", clock[0] + timedelta(seconds=20))

    ready = store.backups.save(replace(step, status=BackupStatus.READY), 2,
                               event("backup.ready"), lease_owner="worker-b")
    assert ready is not None and (ready.status, ready.version) == (BackupStatus.READY, 3)
    store.backups.release("bk-1", "worker-b")
    # once released, nobody's lease covers a write that names one
    assert store.backups.save(replace(ready, error="x"), 3, event("backup.noted"),
                              lease_owner="worker-b") is None
    assert store.backups.get("bk-1") == ready
    assert [e.action for e in store.entries()] == [
        "backup.requested", "backup.creating", "backup.ready"]


def test_concurrent_claims_have_one_winner(store: SqlStore) -> None:
    store.backups.add(make_backup(), event())
    barrier = threading.Barrier(6)

    def attempt(worker: int) -> Backup | None:
        barrier.wait()
        return store.backups.claim("bk-1", f"worker-{worker}", 60)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert sum(r is not None for r in results) == 1


def test_duplicate_branch_name_raises_and_records_nothing(store: SqlStore) -> None:
    first = store.backups.add(make_backup(1), event())
    twin = make_backup(2, branch_name=first.branch_name)
    with pytest.raises(DuplicateBackup):
        store.backups.add(twin, event("backup.requested.again"))
    assert store.backups.get("bk-2") is None
    with pytest.raises(DuplicateBackup):  # the same id again
        store.backups.add(make_backup(1, branch_name="backup-other"), event("again"))
    assert store.backups.by_branch_name("backup-other") is None
    assert [e.action for e in store.entries()] == ["backup.requested"]
    third = store.backups.add(make_backup(3), event())
    with pytest.raises(DuplicateBackup):
        store.backups.save(replace(third, branch_name=first.branch_name), 1,
                           event("backup.renamed"))
    assert store.backups.get("bk-3") == third
    assert store.verify() == (2, None)


def test_a_missing_required_value_is_refused_and_is_not_a_duplicate(store: SqlStore) -> None:
    """Only a taken unique key is a Duplicate…: services turn that into "already exists",
    which would be a false answer for a backup without a reason."""
    refused = (TypeError, ValueError, IntegrityError)
    with pytest.raises(refused):
        store.backups.add(make_backup(reason=None), event())
    with pytest.raises(refused):
        store.backups.add(make_backup(status=None), event())
    assert store.backups.list() == [] and store.verify() == (0, None)
    added = store.backups.add(make_backup(), event())
    with pytest.raises(refused):
        store.backups.save(replace(added, requested_by=None), 1, event("backup.changed"))
    assert store.backups.get("bk-1") == added
    assert store.verify() == (1, None)


def test_record_and_audit_event_are_one_transaction(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_append(*_args: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(store, "append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.backups.add(make_backup(), event())
    assert store.backups.get("bk-1") is None
    monkeypatch.undo()

    added = store.backups.add(make_backup(), event())
    monkeypatch.setattr(store, "append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.backups.save(replace(added, status=BackupStatus.CREATING), 1,
                           event("backup.creating"))
    monkeypatch.undo()
    assert store.backups.get("bk-1") == added  # status and version as they were
    assert store.verify() == (1, None)


# --- migration 0004 --------------------------------------------------------------------


def test_migration_0004_moves_a_posted_card_and_starts_versions_at_one(
        database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        config = alembic_config()
        with engine.connect() as conn, migration_lock(conn):
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
        insert_0003_backup = text(
            "INSERT INTO backups (id, branch_name, status, requested_by, reason, created_at, "
            "expires_at, updated_at, operation_ids, channel_id, message_ts) VALUES (:id, "
            ":name, 'ready', 'U0ALICE', 'before v2', :at, :at, :at, :ops, :channel, :ts)"
        ).bindparams(bindparam("at", type_=DateTime(timezone=True)))
        # 0003 wrote naive UTC on SQLite and timestamptz on PostgreSQL
        at = T0 if engine.dialect.name == "postgresql" else T0.replace(tzinfo=None)
        with engine.begin() as conn:  # backups as 0003 kept them: the card in message_ts
            for n, ts in ((1, "1768314300.000100"), (2, None)):
                conn.execute(insert_0003_backup,
                             {"id": f"bk-{n}", "name": f"backup-20260113-14250{n}", "at": at,
                              "ops": '["op-1"]', "channel": "C0OPS", "ts": ts})
    finally:
        engine.dispose()
    assert current_revision(database_url) == "0003"

    with SqlStore(database_url) as s:  # opening it upgrades to head
        assert current_revision(database_url) == head_revision()
        posted = s.backups.get("bk-1")
        assert posted is not None
        assert (posted.channel_id, posted.card_channel, posted.card_ts, posted.version) == (
            "C0OPS", "C0OPS", "1768314300.000100", 1)
        assert (posted.status, posted.operation_ids, posted.created_at) == (
            BackupStatus.READY, ("op-1",), T0)
        assert (posted.step_started_at, posted.step_timings) == (None, {})
        unposted = s.backups.get("bk-2")
        assert unposted is not None
        assert (unposted.channel_id, unposted.card_channel, unposted.card_ts,
                unposted.version) == ("C0OPS", None, None, 1)
        saved = s.backups.save(replace(posted, status=BackupStatus.DELETING), 1,
                               event("backup.deleting"))
        assert saved is not None and saved.version == 2 and saved.card_ts == posted.card_ts


def test_a_writer_waits_for_the_sqlite_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    with SqlStore(f"sqlite:///{path}") as s:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        released = threading.Timer(0.3, other.execute, args=("ROLLBACK",))
        released.start()
        started = time.monotonic()
        entry = s.append(event("waited"))
        assert time.monotonic() - started >= 0.25
        released.join()
        other.close()
        assert entry.seq == 1 and s.verify() == (1, None)


def test_transient_errors_are_retried(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    import storage.store as store_module

    monkeypatch.setattr(store_module, "RETRY_BASE_DELAY_SECONDS", 0.001)
    failures = [2]
    real: Callable[..., object] = store.append_in

    def flaky(*args: object) -> object:
        if failures[0]:
            failures[0] -= 1
            if store.engine.dialect.name == "sqlite":
                orig: Exception = sqlite3.OperationalError("database is locked")
            else:
                import psycopg.errors
                orig = psycopg.errors.SerializationFailure("could not serialize access")
            raise OperationalError("SELECT 1", {}, orig)
        return real(*args)

    monkeypatch.setattr(store, "append_in", flaky)
    entry = store.append(event("retried"))
    assert failures == [0]
    assert entry.seq == 1
    assert [e.action for e in store.entries()] == ["retried"]
