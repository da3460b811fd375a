"""Audit chains for tests and benchmarks: many chained entries made at once and written in
bulk (as `SqlStore.append` would have written them, a million in seconds rather than a
million transactions), and the reference verifier the fast one must agree with."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import select

from bot.domain.audit import GENESIS_HASH, AuditEntry, ChainBreak, entry_hash, find_chain_break
from storage import SqlStore
from storage.models import audit_entries

T0 = datetime(2026, 1, 13, 14, 25, tzinfo=UTC)
_SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's text for a naive UTC instant


def _details(n: int) -> tuple[str, str, str, dict[str, Any]]:
    """(actor, action, subject, details) in the shapes Lifeguard records, varied by n."""
    kind = n % 4
    if kind == 0:
        return ("U0ALICE", "backup.requested", f"backup-{n:08d}",
                {"reason": "before the v2 migration", "branch": f"backup-{n:08d}"})
    if kind == 1:
        return ("system", "backup.created", f"backup-{n:08d}",
                {"branch_id": f"br-{n:08x}", "operation_ids": [f"op-{n}", f"op-{n + 1}"],
                 "seconds": n / 1000})
    if kind == 2:
        return ("U0BOB", "request.approved", f"req-{n:08x}",
                {"plan_hash": f"{n:064x}", "approvals": 1, "required": 1})
    return ("U0CAROL", "restore.requested", f"req-{n:08x}",
            {"reason": "commande supprimée par erreur — « urgent » 🛟", "instant": None,
             "nested": {"list": [1, 2.5, True, None]}})


class ChainRow(NamedTuple):
    """One row of audit_entries as `SqlStore.append` writes it (details as stored text)."""

    seq: int
    created_at: datetime
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: str
    hash: str


def chained_rows(count: int, start: datetime = T0) -> Iterator[ChainRow]:
    """`count` rows from seq 1, each linked to the one before and hashed by `entry_hash`,
    as the store appends them."""
    prev_hash = GENESIS_HASH
    for seq in range(1, count + 1):
        actor, action, subject, details = _details(seq)
        created_at = start + timedelta(milliseconds=seq, microseconds=seq % 997)
        digest = entry_hash(seq=seq, created_at=created_at, actor=actor, action=action,
                            subject=subject, details=details, prev_hash=prev_hash)
        yield ChainRow(seq, created_at, actor, action, subject,
                       json.dumps(details, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, allow_nan=False), prev_hash, digest)
        prev_hash = digest


def bulk_insert(database_url: str, rows: list[ChainRow]) -> None:
    """Write `rows` into a migrated, empty store at `database_url` in one transaction."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-1000000")  # 1 GB: the unique indexes fit in it
            db.executemany(
                "INSERT INTO audit_entries (seq, created_at, actor, action, subject, details,"
                " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row._replace(created_at=row.created_at.astimezone(UTC).strftime(
                    _SQLITE_TIMESTAMP)) for row in rows))
        return
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor, cursor.copy(
            "COPY audit_entries (seq, created_at, actor, action, subject, details, "
            "prev_hash, hash) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def old_verify(store: SqlStore) -> tuple[int, ChainBreak | None]:
    """`SqlStore.verify` as it was before storage/audit_verify.py, for comparison: entries
    read through SQLAlchemy `store.batch_size` at a time, each batch checked by
    `find_chain_break`."""
    checked, prev_hash, expected_seq = 0, GENESIS_HASH, 1
    entries = store.entries()
    while True:
        try:
            batch = list(itertools.islice(entries, store.batch_size))
        except (ValueError, TypeError):  # an unreadable row: find it one entry at a time
            found, broken = reference_verify(store)
            return found, broken
        broken = find_chain_break(batch, prev_hash, expected_seq)
        if broken is not None:
            return checked + sum(1 for e in batch if e.seq < broken.seq), broken
        checked += len(batch)
        if len(batch) < store.batch_size:
            return checked, None
        prev_hash, expected_seq = batch[-1].hash, batch[-1].seq + 1


def reference_verify(store: SqlStore) -> tuple[int, ChainBreak | None]:
    """The first bad entry by definition, slowly: every row read alone through SQLAlchemy
    in seq order (a row that cannot be converted is a break), then `find_chain_break`."""
    with store.engine.connect() as conn:
        seqs = conn.execute(select(audit_entries.c.seq).order_by(audit_entries.c.seq)
                            ).scalars().all()
    checked, prev_hash, expected_seq = 0, GENESIS_HASH, 1
    for seq in seqs:
        try:
            with store.engine.connect() as conn:
                row = conn.execute(select(audit_entries).where(audit_entries.c.seq == seq)
                                   ).one()
            details = json.loads(row.details)
            if not isinstance(details, dict):
                raise ValueError("details is not a JSON object")
            entry = AuditEntry(seq=row.seq, created_at=row.created_at, actor=row.actor,
                               action=row.action, subject=row.subject, details=details,
                               prev_hash=row.prev_hash, hash=row.hash)
        except (ValueError, TypeError) as exc:
            return checked, ChainBreak(seq, f"it cannot be read ({exc}); it was edited")
        broken = find_chain_break([entry], prev_hash, expected_seq)
        if broken is not None:
            return checked, broken
        checked += 1
        prev_hash, expected_seq = entry.hash, entry.seq + 1
    return checked, None
