"""The store on both SQLite and PostgreSQL: URLs, engines, migrations, backups."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

import storage
from bot.domain.audit import AuditEvent
from bot.domain.backups import Backup, BackupStatus
from bot.domain.errors import DuplicateBackup
from bot.services.ports import Store
from storage import SqlStore, current_revision, upgrade_to_head
from storage.db import create_engine_for, sqlalchemy_url
from storage.migrate import head_revision
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
        s.add_backup(make_backup(), event())
        assert s.get_backup("bk-1") is not None
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
        1, at=T0.astimezone(plus_two), branch_id="br-abc", parent_branch_id="br-main",
        operation_ids=("op-1", "op-2"), error="none yet", channel_id="C1", message_ts="1.2",
        response_url="https://hooks.slack.com/x", deleted_by="U0OTHER", logical_size=2**40,
    )
    added = store.add_backup(backup, event(subject=backup.branch_name))
    assert added == backup
    for got in (added, store.get_backup("bk-1"), store.backup_by_branch_name(backup.branch_name)):
        assert got == backup
        assert got is not None
        assert got.status is BackupStatus.REQUESTED
        for stamp in (got.created_at, got.expires_at, got.updated_at):
            assert_aware_utc(stamp)
        assert got.created_at == T0
    assert store.get_backup("nope") is None
    assert store.backup_by_branch_name("backup-nope") is None
    (entry,) = store.entries()
    assert (entry.action, entry.subject) == ("backup.requested", backup.branch_name)


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.add_backup(make_backup(at=T0.replace(tzinfo=None)), event())
    store.add_backup(make_backup(), event())
    with pytest.raises(ValueError, match="timezone-aware"):
        store.update_backup("bk-1", BackupStatus.REQUESTED, expires_at=datetime(2030, 1, 1))
    assert store.verify() == (1, None)


def test_list_backups_newest_first_with_status_filter(store: SqlStore) -> None:
    statuses = [BackupStatus.READY, BackupStatus.REQUESTED, BackupStatus.FAILED,
                BackupStatus.READY]
    for n, status in enumerate(statuses, start=1):
        store.add_backup(make_backup(n, at=T0 + timedelta(minutes=n), status=status), event())
    assert [b.id for b in store.list_backups()] == ["bk-4", "bk-3", "bk-2", "bk-1"]
    assert [b.id for b in store.list_backups((BackupStatus.READY,))] == ["bk-4", "bk-1"]
    assert [b.id for b in store.list_backups((BackupStatus.FAILED, BackupStatus.REQUESTED))] == [
        "bk-3", "bk-2"]
    assert store.list_backups(()) == []


def test_update_backup_is_compare_and_set(store: SqlStore) -> None:
    store.add_backup(make_backup(), event())
    moved = store.update_backup("bk-1", BackupStatus.REQUESTED, event("backup.creating"),
                                status=BackupStatus.CREATING, operation_ids=("op-9",),
                                branch_id="br-new")
    assert moved is not None
    assert (moved.status, moved.operation_ids, moved.branch_id) == (
        BackupStatus.CREATING, ("op-9",), "br-new")
    assert moved.updated_at > T0
    assert_aware_utc(moved.updated_at)

    stale = store.update_backup("bk-1", BackupStatus.REQUESTED, event("backup.failed"),
                                status=BackupStatus.FAILED, error="boom")
    assert stale is None
    assert store.get_backup("bk-1") == moved  # nothing changed
    assert [e.action for e in store.entries()] == ["backup.requested", "backup.creating"]
    assert store.update_backup("missing", BackupStatus.REQUESTED, status="ready") is None

    done = store.update_backup("bk-1", BackupStatus.CREATING, status=BackupStatus.READY,
                               updated_at=T0 + timedelta(hours=1), logical_size=123)
    assert done is not None and done.updated_at == T0 + timedelta(hours=1)
    assert len(list(store.entries())) == 2  # no event given, none appended

    with pytest.raises(TypeError, match="lease_owner"):
        store.update_backup("bk-1", BackupStatus.READY, lease_owner="me")
    with pytest.raises(TypeError, match="id"):
        store.update_backup("bk-1", BackupStatus.READY, id="other")


def test_concurrent_compare_and_set_has_one_winner(store: SqlStore) -> None:
    store.add_backup(make_backup(), event())
    barrier = threading.Barrier(8)

    def attempt(worker: int) -> Backup | None:
        barrier.wait()
        return store.update_backup("bk-1", BackupStatus.REQUESTED,
                                   event("backup.creating", worker=worker),
                                   status=BackupStatus.CREATING, branch_id=f"br-{worker}")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get_backup("bk-1") == winners[0]
    assert [e.action for e in store.entries()] == ["backup.requested", "backup.creating"]
    assert store.verify() == (2, None)


def test_claim_is_a_lease(store: SqlStore) -> None:
    clock = [T0]
    store._now = lambda: clock[0]
    store.add_backup(make_backup(), event())
    assert store.claim_backup("bk-1", "worker-a", 30) is not None
    assert store.lease_of("bk-1") == ("worker-a", T0 + timedelta(seconds=30))
    assert store.claim_backup("bk-1", "worker-b", 30) is None  # held by a
    assert store.claim_backup("bk-1", "worker-a", 60) is not None  # a extends its own
    clock[0] = T0 + timedelta(seconds=59)
    assert store.claim_backup("bk-1", "worker-b", 30) is None
    store.release_backup("bk-1", "worker-b")  # not b's: nothing happens
    assert store.lease_of("bk-1") == ("worker-a", T0 + timedelta(seconds=60))
    clock[0] = T0 + timedelta(seconds=61)  # a's lease has expired
    claimed = store.claim_backup("bk-1", "worker-b", 30)
    assert claimed is not None and claimed.id == "bk-1"
    lease = store.lease_of("bk-1")
    assert lease == ("worker-b", clock[0] + timedelta(seconds=30))
    assert_aware_utc(lease[1] if lease else None)
    store.release_backup("bk-1", "worker-b")
    assert store.lease_of("bk-1") is None
    assert store.claim_backup("bk-1", "worker-c", 5) is not None
    assert store.claim_backup("missing", "worker-c", 5) is None
    with pytest.raises(ValueError):
        store.claim_backup("bk-1", "worker-c", 0)


def test_concurrent_claims_have_one_winner(store: SqlStore) -> None:
    store.add_backup(make_backup(), event())
    barrier = threading.Barrier(6)

    def attempt(worker: int) -> Backup | None:
        barrier.wait()
        return store.claim_backup("bk-1", f"worker-{worker}", 60)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert sum(r is not None for r in results) == 1


def test_duplicate_branch_name_raises_and_records_nothing(store: SqlStore) -> None:
    first = store.add_backup(make_backup(1), event())
    twin = make_backup(2, branch_name=first.branch_name)
    with pytest.raises(DuplicateBackup):
        store.add_backup(twin, event("backup.requested.again"))
    assert store.get_backup("bk-2") is None
    assert [e.action for e in store.entries()] == ["backup.requested"]
    store.add_backup(make_backup(3), event())
    with pytest.raises(DuplicateBackup):
        store.update_backup("bk-3", BackupStatus.REQUESTED, branch_name=first.branch_name)
    assert store.verify() == (2, None)


def test_record_and_audit_event_are_one_transaction(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_append(*_args: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(store, "_append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.add_backup(make_backup(), event())
    assert store.get_backup("bk-1") is None
    monkeypatch.undo()

    store.add_backup(make_backup(), event())
    monkeypatch.setattr(store, "_append_in", failing_append)
    with pytest.raises(RuntimeError):
        store.update_backup("bk-1", BackupStatus.REQUESTED, event("backup.creating"),
                            status=BackupStatus.CREATING)
    backup = store.get_backup("bk-1")
    assert backup is not None and backup.status is BackupStatus.REQUESTED


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
    real: Callable[..., object] = store._append_in

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

    monkeypatch.setattr(store, "_append_in", flaky)
    entry = store.append(event("retried"))
    assert failures == [0]
    assert entry.seq == 1
    assert [e.action for e in store.entries()] == ["retried"]
