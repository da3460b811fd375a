"""`SqlStore`: the `Store` of bot.services.ports on SQLite or PostgreSQL.

The audit trail
---------------
Appends are serialised, so any number of threads and processes appending at once still
make one unbroken chain: on PostgreSQL the transaction takes
`pg_advisory_xact_lock(AUDIT_LOCK_KEY)` before reading the last entry; on SQLite every
writing transaction is `BEGIN IMMEDIATE`. The entry gets `seq = last + 1`,
`prev_hash = last hash` (GENESIS_HASH for the first) and `hash = entry_hash(...)`; the
primary key on seq and UNIQUE(prev_hash) make a fork impossible even if the lock were
bypassed. Database triggers refuse UPDATE and DELETE of entries.

`verify()` re-reads the whole chain in batches and reports the first entry whose content,
link or position does not hold: an edited field, a removed or inserted entry, a missing
first entry. What no chain can show on its own is a removed *tail* (the newest entries
deleted, the rest intact), or a chain rewritten from some entry on with freshly computed
hashes: both look like a shorter valid chain. Detect those by comparing `head()` (seq and
hash) with a head exported earlier to somewhere the database's users cannot write
(`python -m bot audit export`, an alert message, object storage): that head's entry must
still be there with the same hash.

Records
-------
Backups, change requests and drills are kept whole through storage.records: one mapping
per entity, `save(entity, expected_version)` a compare-and-set on `version` with the
audit event in the same transaction, and work leases that leave the version alone. The
lock order is always "record row, then audit lock", so they cannot deadlock. A drill's
`open_slot` column is "open" while it is requested or running and NULL afterwards;
UNIQUE(open_slot) makes "one drill at a time" hold even when two starts race on two
replicas.

Transient errors (SQLite "database is locked", PostgreSQL serialization failures and
deadlocks, a connection lost before COMMIT was sent) are retried a few times with backoff;
a connection lost during COMMIT is not retried, since the commit may have happened.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TypeVar

import psycopg.errors
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError

from bot.domain.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    ChainBreak,
    entry_hash,
)
from bot.domain.backups import Backup
from bot.domain.drills import Drill, DrillState, check_drill_transition
from bot.domain.errors import DuplicateBackup, DuplicateDrill, DuplicateExport, DuplicateRequest
from bot.domain.export_jobs import Export, check_export_transition
from bot.domain.requests import (
    ChangeRequest,
    Plan,
    check_transition,
)
from storage.audit_verify import entry_of, verify_chain
from storage.db import create_engine_for, is_postgresql, write_connection
from storage.export_models import exports
from storage.incident_records import INCIDENTS, IncidentEntries, IncidentRecords
from storage.migrate import upgrade_engine
from storage.models import audit_entries, backups, change_requests, drills
from storage.records import EntityMap, Records, state_change

T = TypeVar("T")

AUDIT_LOCK_KEY = 0x4C49464547554152  # "LIFEGUAR": pg_advisory_xact_lock key of the chain
RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY_SECONDS = 0.05

def utcnow() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """Lifeguard's store on SQLite (`sqlite:///…`) or PostgreSQL (`postgres[ql]://…`).

    Thread-safe; open one per process and share it. With `migrate=True` (the default)
    the schema is brought up to date first.
    """

    #: audit entries read per query by `entries()` and `verify()`
    batch_size: int = 1000

    def __init__(self, database_url: str, *, migrate: bool = True) -> None:
        self._engine: Engine = create_engine_for(database_url)
        self._now: Callable[[], datetime] = utcnow
        # SQLite has one writer at a time, and its busy handler waits for the write lock by
        # sleeping in growing steps (up to 100 ms). Threads of this process queue on this
        # lock instead and go the moment the writer before them commits; other processes
        # still meet the busy handler. PostgreSQL needs no such lock.
        self._writer_lock: threading.Lock | contextlib.nullcontext[None] = (
            contextlib.nullcontext() if is_postgresql(self._engine) else threading.Lock())
        if migrate:
            try:
                upgrade_engine(self._engine)
            except BaseException:
                self._engine.dispose()
                raise
        self.backups = BackupRecords(self, BACKUPS)
        self.requests = Records(self, REQUESTS)
        self.drills = DrillRecords(self, DRILLS)
        self.exports = Records(self, EXPORTS)
        self.incidents = IncidentRecords(self, INCIDENTS)
        self.incident_entries = IncidentEntries(self)

    @property
    def engine(self) -> Engine:
        return self._engine

    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------

    def now(self) -> datetime:
        return self._now()

    def transaction(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run `work` in one transaction, retrying it when a transient error allows."""
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            committing = False
            try:
                with (self._writer_lock if write else contextlib.nullcontext()), \
                        self._engine.connect() as conn:
                    if write:
                        write_connection(conn)
                    with conn.begin():
                        result = work(conn)
                        committing = True
                return result
            except DBAPIError as exc:
                if attempt == RETRY_ATTEMPTS or not _is_transient(exc, committing):
                    raise
                delay = RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1)
                time.sleep(delay * (0.5 + random.random()))
            except StatementError as exc:
                # A column type refused a value (storage.models): say what, not where.
                if isinstance(exc.orig, ValueError | TypeError):
                    raise exc.orig from None
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the audit trail -------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditEntry:
        _details_text(event)  # refuse what the chain cannot keep before taking the lock
        return self.transaction(lambda conn: self.append_in(conn, event), write=True)

    def append_in(self, conn: Connection, event: AuditEvent) -> AuditEntry:
        """Append within the caller's (writing) transaction. The only way entries are made."""
        details_text = _details_text(event)
        if is_postgresql(conn):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
        last = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.hash, audit_entries.c.created_at)
            .order_by(audit_entries.c.seq.desc())
            .limit(1)
        ).first()
        created_at = self._now()
        if last is None:
            seq, prev_hash = 1, GENESIS_HASH
        else:
            seq, prev_hash = last.seq + 1, last.hash
            # Never go back in time along the chain, even if the clock does.
            created_at = max(created_at, last.created_at)
        details = json.loads(details_text)
        digest = entry_hash(seq=seq, created_at=created_at, actor=event.actor,
                            action=event.action, subject=event.subject, details=details,
                            prev_hash=prev_hash)
        conn.execute(insert(audit_entries).values(
            seq=seq, created_at=created_at, actor=event.actor, action=event.action,
            subject=event.subject, details=details_text, prev_hash=prev_hash, hash=digest,
        ))
        return AuditEntry(seq=seq, created_at=created_at, actor=event.actor,
                          action=event.action, subject=event.subject, details=details,
                          prev_hash=prev_hash, hash=digest)

    def head(self) -> AuditEntry | None:
        """The newest entry: export its seq and hash somewhere safe to detect later a
        removed tail or a rewritten chain (see the module documentation)."""
        row = self.transaction(
            lambda conn: conn.execute(
                select(audit_entries).order_by(audit_entries.c.seq.desc()).limit(1)
            ).first(),
            write=False,
        )
        return None if row is None else entry_of(row)

    def entries(self, since: datetime | None = None) -> Iterator[AuditEntry]:
        """Entries in seq order (those created at or after `since`), read `batch_size` at
        a time, so a long trail is never loaded at once."""
        if since is not None and since.tzinfo is None:
            raise ValueError("`since` must be timezone-aware")
        after = 0
        while True:
            batch = self._entry_batch(after, since)
            yield from batch
            if len(batch) < self.batch_size:
                return
            after = batch[-1].seq

    def _entry_batch(self, after: int, since: datetime | None,
                     limit: int | None = None) -> list[AuditEntry]:
        query = select(audit_entries).where(audit_entries.c.seq > after)
        if since is not None:
            query = query.where(audit_entries.c.created_at >= since)
        query = query.order_by(audit_entries.c.seq).limit(limit or self.batch_size)
        rows = self.transaction(lambda conn: conn.execute(query).all(), write=False)
        return [entry_of(row) for row in rows]

    def verify(self) -> tuple[int, ChainBreak | None]:
        """(entries checked, the first break or None). The chain must start at seq 1 with
        GENESIS_HASH and continue without gaps; each entry's hash must match its content.
        A removed tail is not detectable here: compare `head()` with an exported head.
        Streams the chain through a raw cursor: see storage/audit_verify.py."""
        return verify_chain(self._engine, fetch_size=self.batch_size)

    # --- records ---------------------------------------------------------------------

    def audit_for(self, subject: str) -> list[AuditEntry]:
        """Every audit entry whose subject is `subject` (a request id), oldest first."""
        rows = self.transaction(
            lambda conn: conn.execute(
                select(audit_entries).where(audit_entries.c.subject == subject)
                .order_by(audit_entries.c.seq)).all(),
            write=False,
        )
        return [entry_of(row) for row in rows]



class BackupRecords(Records[Backup]):
    def by_branch_name(self, branch_name: str) -> Backup | None:
        return self.find(branch_name=branch_name)


class DrillRecords(Records[Drill]):
    def last_successful(self) -> Drill | None:
        """The newest drill that succeeded, or None."""
        found = self.list((DrillState.SUCCEEDED,), limit=1)
        return found[0] if found else None


BACKUPS = EntityMap(backups, Backup, DuplicateBackup, state_column="status")
REQUESTS = EntityMap(change_requests, ChangeRequest, DuplicateRequest, state_column="state",
                     nested={"plan": Plan},
                     check=state_change(check_transition))
DRILLS = EntityMap(drills, Drill, DuplicateDrill, state_column="state",
                   kept=lambda drill: {"open_slot": "open" if drill.is_open else None},
                   check=state_change(check_drill_transition))
EXPORTS = EntityMap(exports, Export, DuplicateExport, state_column="state",
                    check=state_change(check_export_transition))


# --- conversions -----------------------------------------------------------------------


def _details_text(event: AuditEvent) -> str:
    """The event's details as canonical JSON text; refuses what the chain cannot keep."""
    for name in ("actor", "action", "subject"):
        value = getattr(event, name)
        if not isinstance(value, str):
            raise TypeError(f"audit event {name} must be a string, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError(f"audit event {name} contains a NUL character")
    if not isinstance(event.details, Mapping):
        raise TypeError("audit event details must be a mapping")
    try:
        return json.dumps(event.details, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit event details must be plain JSON data: {exc}") from exc


def _is_transient(exc: DBAPIError, committing: bool) -> bool:
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return "database is locked" in message or "database is busy" in message
    if isinstance(orig, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return True  # the server rolled the transaction back: safe to run it again
    if exc.connection_invalidated or isinstance(orig, psycopg.OperationalError):
        return not committing  # lost before COMMIT: nothing was written
    return False

