"""The audit trail on both SQLite and PostgreSQL: the chain, tampering, concurrency,
exports, and a property test."""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from bot.domain.audit import GENESIS_HASH, AuditEntry, AuditEvent, find_chain_break
from bot.domain.backups import Backup, BackupStatus
from storage import SqlStore, read_audit_export, write_audit_export
from storage.db import create_engine_for

T0 = datetime(2026, 1, 13, 14, 25, tzinfo=UTC)


class Attacker:
    """Someone with direct database access: disables the append-only triggers, edits,
    and puts the triggers back so nothing looks disturbed."""

    def __init__(self, database_url: str) -> None:
        self.engine: Engine = create_engine_for(database_url)

    def run(self, statement: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
                conn.execute(text(statement), params)
                conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
            else:
                triggers = conn.execute(text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                    "AND tbl_name = 'audit_entries'")).all()
                assert len(triggers) == 2
                for name, _ in triggers:
                    conn.execute(text(f"DROP TRIGGER {name}"))
                conn.execute(text(statement), params)
                for _, sql in triggers:
                    conn.exec_driver_sql(sql)

    def raw(self, column: str, seq: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT {column} FROM audit_entries WHERE seq = :seq"),
                                {"seq": seq}).scalar_one()

    def set(self, column: str, seq: int, value: Any) -> None:
        self.run(f"UPDATE audit_entries SET {column} = :value WHERE seq = :seq",
                 value=value, seq=seq)

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def attacker(database_url: str) -> Iterator[Attacker]:
    a = Attacker(database_url)
    yield a
    a.close()


def ev(n: int, **details: Any) -> AuditEvent:
    return AuditEvent(actor=f"U{n:04d}", action="backup.requested", subject=f"backup-{n}",
                      details={"n": n, **details})


def fill(store: SqlStore, count: int) -> list[AuditEntry]:
    return [store.append(ev(n)) for n in range(1, count + 1)]


# --- the chain -----------------------------------------------------------------------


def test_empty_trail_verifies(store: SqlStore) -> None:
    assert store.verify() == (0, None)
    assert store.head() is None
    assert list(store.entries()) == []


def test_many_appends_make_one_chain_read_in_batches(store: SqlStore) -> None:
    store.batch_size = 7
    appended = fill(store, 40)
    assert [e.seq for e in appended] == list(range(1, 41))
    assert appended[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(appended))
    read = list(store.entries())
    assert read == appended
    for entry in read:
        assert entry.created_at.utcoffset() == timedelta(0)
    assert store.verify() == (40, None)
    assert store.head() == appended[-1]
    since = appended[24].created_at
    assert [e.seq for e in store.entries(since=since)] == [
        e.seq for e in appended if e.created_at >= since]
    assert next(e.seq for e in store.entries(since=since)) <= 25
    with pytest.raises(ValueError):
        list(store.entries(since=datetime(2026, 1, 1)))


def test_event_details_must_be_plain_json(store: SqlStore) -> None:
    bad = [
        AuditEvent("U1", "x", "y", {"when": datetime.now(UTC)}),
        AuditEvent("U1", "x", "y", {"ratio": float("nan")}),
        AuditEvent("U1\x00", "x", "y", {}),
    ]
    for event in bad:
        with pytest.raises(ValueError):
            store.append(event)
    assert store.verify() == (0, None)
    entry = store.append(AuditEvent("U1", "x", "y", {"ids": ("a", "b"), "n": 1.5, "ü": "✓"}))
    assert entry.details == {"ids": ["a", "b"], "n": 1.5, "ü": "✓"}
    assert list(store.entries()) == [entry]


def _tampered(column: str, original: Any, seq: int) -> Any:
    if column in ("actor", "action", "subject"):
        return f"{original}-edited"
    if column == "details":
        return json.dumps({"n": -seq, "edited": True})
    if column == "created_at":
        if isinstance(original, str):  # SQLite keeps naive UTC text
            moved = datetime.fromisoformat(original) + timedelta(microseconds=1)
            return moved.strftime("%Y-%m-%d %H:%M:%S.%f")
        return original + timedelta(microseconds=1)
    if column in ("hash", "prev_hash"):
        return ("f" if column == "hash" else "e") * 64
    raise AssertionError(column)


@pytest.mark.parametrize("column",
                         ["actor", "action", "subject", "details", "created_at", "hash",
                          "prev_hash"])
def test_editing_any_field_of_any_entry_is_detected(
        store: SqlStore, attacker: Attacker, column: str) -> None:
    store.batch_size = 3  # breaks both at batch edges and inside batches
    count = 7
    fill(store, count)
    for seq in range(1, count + 1):
        original = attacker.raw(column, seq)
        attacker.set(column, seq, _tampered(column, original, seq))
        checked, broken = store.verify()
        assert broken is not None, f"editing {column} of entry {seq} went unnoticed"
        assert broken.seq == seq
        assert checked == seq - 1
        attacker.set(column, seq, original)
        assert store.verify() == (count, None)


def test_unreadable_edit_is_reported_at_its_entry(store: SqlStore, attacker: Attacker) -> None:
    fill(store, 5)
    attacker.set("details", 3, "not json {")
    assert store.verify()[1] is not None
    assert store.verify()[1].seq == 3  # type: ignore[union-attr]


def test_deleting_an_entry_is_detected(store: SqlStore, attacker: Attacker) -> None:
    fill(store, 6)
    attacker.run("DELETE FROM audit_entries WHERE seq = 4")
    checked, broken = store.verify()
    assert broken is not None and broken.seq == 5 and "removed" in broken.reason
    assert checked == 3


def test_deleting_the_first_entry_is_detected(store: SqlStore, attacker: Attacker) -> None:
    fill(store, 3)
    attacker.run("DELETE FROM audit_entries WHERE seq = 1")
    _, broken = store.verify()
    assert broken is not None and broken.seq == 2


def test_a_deleted_tail_shows_only_against_an_exported_head(
        store: SqlStore, attacker: Attacker) -> None:
    fill(store, 5)
    exported = store.head()
    assert exported is not None
    attacker.run("DELETE FROM audit_entries WHERE seq >= 4")
    assert store.verify() == (3, None)  # a shorter chain is still a valid chain
    head = store.head()
    assert head is not None and (head.seq, head.hash) != (exported.seq, exported.hash)


@pytest.mark.parametrize("statement", [
    "UPDATE audit_entries SET actor = 'U_EVIL' WHERE seq = 2",
    "UPDATE audit_entries SET details = '{}'",
    "DELETE FROM audit_entries WHERE seq = 3",
    "DELETE FROM audit_entries",
])
def test_the_database_refuses_updates_and_deletes(store: SqlStore, statement: str) -> None:
    before = fill(store, 3)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert list(store.entries()) == before
    assert store.verify() == (3, None)


def test_postgres_refuses_truncate(postgres_url: str) -> None:
    with SqlStore(postgres_url) as s:
        fill(s, 2)
        with pytest.raises(DBAPIError, match="append-only"), s.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_entries"))
        assert s.verify() == (2, None)


# --- concurrency ---------------------------------------------------------------------


def test_concurrent_appends_from_two_stores_make_one_chain(database_url: str) -> None:
    """Two SqlStore instances (two engines, as two processes would have) and several
    threads each, appending and adding backups at once."""
    stores = [SqlStore(database_url), SqlStore(database_url)]
    threads, per_thread = 8, 12
    barrier = threading.Barrier(threads)

    def work(worker: int) -> None:
        s = stores[worker % 2]
        barrier.wait()
        for i in range(per_thread):
            if i == 0:
                s.backups.add(Backup(
                    id=f"bk-{worker}", branch_name=f"backup-20260113-1425{worker:02d}",
                    status=BackupStatus.REQUESTED, requested_by="U1", reason="", created_at=T0,
                    expires_at=T0, updated_at=T0), ev(worker, i=i))
            else:
                s.append(ev(worker, i=i))

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        total = threads * per_thread
        assert stores[0].verify() == (total, None)
        seqs = [e.seq for e in stores[1].entries()]
        assert seqs == list(range(1, total + 1))
        assert len(stores[0].backups.list()) == threads
    finally:
        for s in stores:
            s.close()


# --- exports -------------------------------------------------------------------------


def _varied_events() -> list[AuditEvent]:
    return [
        AuditEvent("U0A", "backup.requested", "backup-20260113-142500",
                   {"reason": 'before "v2", with commas, and\nnewlines', "size": 12}),
        AuditEvent("U0B", "restore.approved", "req-1",
                   {"nested": {"list": [1, 2.5, None, True]}, "émoji": "🛟"}),
        AuditEvent("system", "backup.created", "backup-20260113-142500", {}),
        AuditEvent("cli:ops", "audit.exported", "=SUM(A1)", {"since": None}),
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_round_trips_every_field(store: SqlStore, fmt: str) -> None:
    entries = [store.append(e) for e in _varied_events()]
    out = io.StringIO()
    assert write_audit_export(store.entries(), fmt, out) == len(entries)  # type: ignore[arg-type]
    text_out = out.getvalue()

    if fmt == "jsonl":
        lines = text_out.splitlines()
        assert len(lines) == len(entries)
        records = [json.loads(line) for line in lines]
    else:
        records = list(csv.DictReader(io.StringIO(text_out)))
        assert len(records) == len(entries)
        for record in records:
            record["details"] = json.loads(record["details"])
            record["seq"] = int(record["seq"])
    for record, entry in zip(records, entries, strict=True):
        assert list(record) == ["seq", "created_at", "actor", "action", "subject", "details",
                                "prev_hash", "hash"]
        assert record["seq"] == entry.seq
        assert record["created_at"].endswith("Z")
        assert datetime.fromisoformat(record["created_at"]) == entry.created_at
        assert (record["actor"], record["action"], record["subject"]) == (
            entry.actor, entry.action, entry.subject)
        assert record["details"] == entry.details
        assert (record["prev_hash"], record["hash"]) == (entry.prev_hash, entry.hash)

    back = list(read_audit_export(fmt, io.StringIO(text_out)))  # type: ignore[arg-type]
    assert back == entries
    assert find_chain_break(back) is None  # an export verifies on its own


def test_export_of_nothing_and_unknown_format() -> None:
    out = io.StringIO()
    assert write_audit_export([], "jsonl", out) == 0 and out.getvalue() == ""
    assert write_audit_export([], "csv", out) == 0
    with pytest.raises(ValueError, match="jsonl, csv"):
        write_audit_export([], "xml", out)  # type: ignore[arg-type]


# --- property ------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_events = st.builds(AuditEvent, actor=_text, action=_text, subject=_text,
                    details=st.dictionaries(_text, _json, max_size=4))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_events, min_size=1, max_size=6), data=st.data())
def test_any_chain_verifies_and_any_edit_is_found(
        store: SqlStore, attacker: Attacker, events: list[AuditEvent], data: st.DataObject,
) -> None:
    # The store lives across examples: each example extends the chain.
    appended = [store.append(e) for e in events]
    for event, entry in zip(events, appended, strict=True):
        assert json.dumps(entry.details, sort_keys=True) == json.dumps(
            json.loads(json.dumps(event.details)), sort_keys=True)
    total, broken = store.verify()
    assert broken is None and total == appended[-1].seq

    target = data.draw(st.sampled_from(appended))
    original = attacker.raw("details", target.seq)
    attacker.set("details", target.seq, json.dumps({"tampered": original}))
    checked, broken = store.verify()
    assert broken is not None and broken.seq == target.seq
    assert checked == target.seq - 1
    attacker.set("details", target.seq, original)
    assert store.verify() == (total, None)
