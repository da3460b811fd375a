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

Backups
-------
Each mutating method appends its audit event in the same transaction through the same
serialised path, so the record and its audit entry are both written or neither is.
`update_backup` is a compare-and-set on the status; `claim_backup` takes a time-limited
work lease. Lock order is always "backup row, then audit lock", so they cannot deadlock.

Change requests
---------------
Restores and promotions (bot.domain.requests.ChangeRequest), their plan flattened into
columns. `update_request` is a compare-and-set on `version`, which every change bumps:
`UPDATE … SET …, version = version + 1 WHERE id = ? AND version = ?`. A change of
`state` is first checked against the state machine (`check_transition`) on the row read
in the same transaction; a stale version wins over an illegal transition (None, not
ValueError), since the caller's view is out of date either way. `claim_request` takes
the same kind of work lease as `claim_backup` and, like `release_request`, leaves the
version alone. The lock order is the same: request row, then audit lock.

Restore drills
--------------
`drills` works like change requests (compare-and-set on `version`, audit in the same
transaction, the same leases). Its `open_slot` column is "open" while a drill is requested
or running and NULL afterwards; UNIQUE(open_slot) makes "one drill at a time" hold even
when two starts race on two replicas.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import psycopg.errors
from sqlalchemy import Engine, Row, Table, and_, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.domain.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    ChainBreak,
    entry_hash,
)
from bot.domain.backups import Backup, BackupStatus
from bot.domain.drills import Drill, DrillState, DrillStep, check_drill_transition
from bot.domain.errors import DuplicateBackup, DuplicateDrill, DuplicateRequest
from bot.domain.requests import (
    Approval,
    ChangeRequest,
    Plan,
    RequestAction,
    RequestState,
    Step,
    check_transition,
)
from storage.audit_verify import verify_chain
from storage.db import create_engine_for, is_postgresql, write_connection
from storage.migrate import upgrade_engine
from storage.models import audit_entries, backups, change_requests, drills

T = TypeVar("T")

AUDIT_LOCK_KEY = 0x4C49464547554152  # "LIFEGUAR": pg_advisory_xact_lock key of the chain
RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY_SECONDS = 0.05

_BACKUP_FIELDS = tuple(f.name for f in fields(Backup))
_UPDATABLE_FIELDS = frozenset(_BACKUP_FIELDS) - {"id"}
_TIMESTAMP_FIELDS = frozenset({"created_at", "expires_at", "updated_at"})

_PLAN_FIELDS = tuple(f.name for f in fields(Plan))
_REQUEST_FIELDS = tuple(f.name for f in fields(ChangeRequest))
_REQUEST_UPDATABLE_FIELDS = frozenset(_REQUEST_FIELDS) - {"id", "plan", "plan_hash", "version"}
_REQUEST_TIMESTAMP_FIELDS = frozenset({"created_at", "expires_at", "updated_at"})
_REQUEST_OPTIONAL_TIMESTAMP_FIELDS = frozenset({"finished_at", "instant"})

_DRILL_FIELDS = tuple(f.name for f in fields(Drill))
_DRILL_UPDATABLE_FIELDS = frozenset(_DRILL_FIELDS) - {"id", "version", "created_at"}
_DRILL_TIMESTAMP_FIELDS = frozenset({"target_instant", "created_at", "updated_at"})
_DRILL_OPTIONAL_TIMESTAMP_FIELDS = frozenset({"started_at", "step_started_at", "finished_at",
                                              "newest_restored_at"})
_DRILL_OPEN_SLOT = "open"


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

    def _transaction(self, work: Callable[[Connection], T], *, write: bool) -> T:
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
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the audit trail -------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditEntry:
        details = _details_text(event)
        return self._transaction(lambda conn: self._append_in(conn, event, details),
                                 write=True)

    def _append_in(self, conn: Connection, event: AuditEvent, details_text: str) -> AuditEntry:
        """Append within the caller's (writing) transaction. The only way entries are made."""
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
        row = self._transaction(
            lambda conn: conn.execute(
                select(audit_entries).order_by(audit_entries.c.seq.desc()).limit(1)
            ).first(),
            write=False,
        )
        return None if row is None else _entry(row)

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
        rows = self._transaction(lambda conn: conn.execute(query).all(), write=False)
        return [_entry(row) for row in rows]

    def verify(self) -> tuple[int, ChainBreak | None]:
        """(entries checked, the first break or None). The chain must start at seq 1 with
        GENESIS_HASH and continue without gaps; each entry's hash must match its content.
        A removed tail is not detectable here: compare `head()` with an exported head.
        Streams the chain through a raw cursor: see storage/audit_verify.py."""
        return verify_chain(self._engine, fetch_size=self.batch_size)

    # --- backups ---------------------------------------------------------------------

    def add_backup(self, backup: Backup, event: AuditEvent) -> Backup:
        values = _backup_values(backup)
        values["id"] = backup.id
        details = _details_text(event)

        def work(conn: Connection) -> Backup:
            conn.execute(insert(backups).values(**values))
            self._append_in(conn, event, details)
            return _one_backup(conn, backup.id)

        try:
            return self._transaction(work, write=True)
        except IntegrityError as exc:
            if self.backup_by_branch_name(backup.branch_name) is not None:
                raise DuplicateBackup(
                    f"a backup named {backup.branch_name} is already recorded") from exc
            raise

    def get_backup(self, backup_id: str) -> Backup | None:
        row = self._transaction(
            lambda conn: conn.execute(select(backups).where(backups.c.id == backup_id)).first(),
            write=False,
        )
        return None if row is None else _backup(row)

    def backup_by_branch_name(self, branch_name: str) -> Backup | None:
        row = self._transaction(
            lambda conn: conn.execute(
                select(backups).where(backups.c.branch_name == branch_name)).first(),
            write=False,
        )
        return None if row is None else _backup(row)

    def list_backups(self, statuses: tuple[BackupStatus, ...] | None = None) -> list[Backup]:
        """Newest first (by created_at, then id)."""
        query = select(backups)
        if statuses is not None:
            if not statuses:
                return []
            query = query.where(backups.c.status.in_([BackupStatus(s).value
                                                      for s in statuses]))
        query = query.order_by(backups.c.created_at.desc(), backups.c.id.desc())
        rows = self._transaction(lambda conn: conn.execute(query).all(), write=False)
        return [_backup(row) for row in rows]

    def update_backup(self, backup_id: str, expected_status: BackupStatus,
                      event: AuditEvent | None = None, **changes: Any) -> Backup | None:
        """Compare-and-set: `UPDATE … WHERE id = ? AND status = ?`. None (and nothing
        written, no event appended) when the status had moved on or there is no such
        backup. `updated_at` is set to now unless given. Raises TypeError for a field
        Backup does not have, DuplicateBackup when renaming onto a taken branch name."""
        unknown = set(changes) - _UPDATABLE_FIELDS
        if unknown:
            raise TypeError(f"Backup has no updatable field(s) {', '.join(sorted(unknown))}")
        values = _backup_values(changes)
        values.setdefault("updated_at", self._now())
        details = None if event is None else _details_text(event)
        expected = BackupStatus(expected_status).value

        def work(conn: Connection) -> Backup | None:
            result = conn.execute(
                update(backups)
                .where(and_(backups.c.id == backup_id, backups.c.status == expected))
                .values(**values)
            )
            if result.rowcount != 1:
                return None
            if event is not None and details is not None:
                self._append_in(conn, event, details)
            return _one_backup(conn, backup_id)

        try:
            return self._transaction(work, write=True)
        except IntegrityError as exc:
            if "branch_name" in changes:
                raise DuplicateBackup(
                    f"a backup named {changes['branch_name']} is already recorded") from exc
            raise

    def claim_backup(self, backup_id: str, owner: str, lease_seconds: float) -> Backup | None:
        """Take (or extend, for the same owner) the work lease until now + lease_seconds.
        None when another owner's lease has not expired, or there is no such backup.
        Leases use this process's clock: keep replicas' clocks in sync (NTP)."""
        return self._claim(backups, backup_id, owner, lease_seconds, _one_backup)

    def release_backup(self, backup_id: str, owner: str) -> None:
        """Give up the lease if `owner` holds it; otherwise do nothing."""
        self._release(backups, backup_id, owner)

    def lease_of(self, backup_id: str) -> tuple[str, datetime] | None:
        """(owner, until) of the backup's current lease, expired or not; None if none."""
        return self._lease_of(backups, backup_id)

    # --- work leases (backups and change requests) -----------------------------------

    def _claim(self, table: Table, row_id: str, owner: str, lease_seconds: float,
               read: Callable[[Connection, str], T]) -> T | None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")

        def work(conn: Connection) -> T | None:
            now = self._now()
            result = conn.execute(
                update(table)
                .where(and_(
                    table.c.id == row_id,
                    or_(table.c.lease_until.is_(None), table.c.lease_until < now,
                        table.c.lease_owner == owner),
                ))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            )
            if result.rowcount != 1:
                return None
            return read(conn, row_id)

        return self._transaction(work, write=True)

    def _release(self, table: Table, row_id: str, owner: str) -> None:
        self._transaction(
            lambda conn: conn.execute(
                update(table)
                .where(and_(table.c.id == row_id, table.c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None)
            ),
            write=True,
        )

    def _lease_of(self, table: Table, row_id: str) -> tuple[str, datetime] | None:
        row = self._transaction(
            lambda conn: conn.execute(
                select(table.c.lease_owner, table.c.lease_until)
                .where(table.c.id == row_id)).first(),
            write=False,
        )
        if row is None or row.lease_owner is None or row.lease_until is None:
            return None
        return row.lease_owner, row.lease_until

    # --- change requests -------------------------------------------------------------

    def add_request(self, request: ChangeRequest, event: AuditEvent) -> ChangeRequest:
        """Insert the request and append `event` in one transaction. Raises
        DuplicateRequest (and records nothing) when the id is taken."""
        if not isinstance(request, ChangeRequest):
            raise TypeError(f"expected a ChangeRequest, got {type(request).__name__}")
        values = _request_values(request)
        values["id"] = request.id
        details = _details_text(event)

        def work(conn: Connection) -> ChangeRequest:
            conn.execute(insert(change_requests).values(**values))
            self._append_in(conn, event, details)
            return _one_request(conn, request.id)

        try:
            return self._transaction(work, write=True)
        except IntegrityError as exc:
            if self.get_request(request.id) is not None:
                raise DuplicateRequest(
                    f"a change request {request.id} is already recorded") from exc
            raise

    def get_request(self, request_id: str) -> ChangeRequest | None:
        row = self._transaction(
            lambda conn: conn.execute(
                select(change_requests).where(change_requests.c.id == request_id)).first(),
            write=False,
        )
        return None if row is None else _request(row)

    def list_requests(self, states: tuple[RequestState, ...] | None = None,
                      limit: int = 50) -> list[ChangeRequest]:
        """At most `limit` requests (in `states`, if given), newest first (by created_at,
        then id, both descending)."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("limit must be an int")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(change_requests)
        if states is not None:
            if not states:
                return []
            query = query.where(change_requests.c.state.in_(
                [RequestState(s).value for s in states]))
        query = query.order_by(change_requests.c.created_at.desc(),
                               change_requests.c.id.desc()).limit(limit)
        rows = self._transaction(lambda conn: conn.execute(query).all(), write=False)
        return [_request(row) for row in rows]

    def update_request(self, request_id: str, expected_version: int,
                       event: AuditEvent | None = None, **changes: Any) -> ChangeRequest | None:
        """Compare-and-set on the version: `UPDATE … SET …, version = version + 1,
        updated_at = now WHERE id = ? AND version = ?`, and `event` appended in the same
        transaction. None (nothing written, no event appended) when the version had moved
        on or there is no such request. `updated_at` is now unless given.

        Any ChangeRequest field but id, plan, plan_hash and version may be changed
        (TypeError otherwise, or for a value of the wrong type; ValueError for a naive
        datetime or data JSON cannot hold). A `state` change must be allowed by
        `check_transition` from the state stored at `expected_version` (ValueError, and
        nothing written, otherwise; staying in the same state is not a transition)."""
        unknown = set(changes) - _REQUEST_UPDATABLE_FIELDS
        if unknown:
            raise TypeError(
                f"ChangeRequest has no updatable field(s) {', '.join(sorted(unknown))}")
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise TypeError("expected_version must be an int")
        values = _request_values(changes)
        new_state = RequestState(changes["state"]) if "state" in changes else None
        details = None if event is None else _details_text(event)
        table = change_requests

        def work(conn: Connection) -> ChangeRequest | None:
            if new_state is not None:
                current = conn.execute(
                    select(table.c.state, table.c.version).where(table.c.id == request_id)
                ).first()
                if current is None or current.version != expected_version:
                    return None  # stale: the caller must read again whatever it wants
                check_transition(RequestState(current.state), new_state)
            stamped = {"updated_at": self._now(), **values}
            result = conn.execute(
                update(table)
                .where(and_(table.c.id == request_id, table.c.version == expected_version))
                .values(**stamped, version=table.c.version + 1)
            )
            if result.rowcount != 1:
                return None
            if event is not None and details is not None:
                self._append_in(conn, event, details)
            return _one_request(conn, request_id)

        return self._transaction(work, write=True)

    def claim_request(self, request_id: str, owner: str,
                      lease_seconds: float) -> ChangeRequest | None:
        """Take (or extend, for the same owner) the work lease until now + lease_seconds.
        None when another owner's lease has not expired, or there is no such request.
        The version is not bumped: a lease is not a change of the request."""
        return self._claim(change_requests, request_id, owner, lease_seconds, _one_request)

    def release_request(self, request_id: str, owner: str) -> None:
        """Give up the lease if `owner` holds it; otherwise do nothing."""
        self._release(change_requests, request_id, owner)

    def lease_of_request(self, request_id: str) -> tuple[str, datetime] | None:
        """(owner, until) of the request's current lease, expired or not; None if none."""
        return self._lease_of(change_requests, request_id)

    def audit_for(self, subject: str) -> list[AuditEntry]:
        """Every audit entry whose subject is `subject` (a request id), oldest first."""
        rows = self._transaction(
            lambda conn: conn.execute(
                select(audit_entries).where(audit_entries.c.subject == subject)
                .order_by(audit_entries.c.seq)).all(),
            write=False,
        )
        return [_entry(row) for row in rows]

    # --- restore drills --------------------------------------------------------------
    # Like change requests: compare-and-set on `version`, the audit event in the same
    # transaction, work leases that leave the version alone. The `open_slot` column is
    # kept here, not in the domain: "open" while the drill is requested or running, NULL
    # once it ended, so its UNIQUE constraint admits one open drill at a time.

    def add_drill(self, drill: Drill, event: AuditEvent) -> Drill:
        """Insert the drill and append `event` in one transaction. Raises DuplicateDrill
        (and records nothing) when another drill is open or the id or branch name is
        taken."""
        if not isinstance(drill, Drill):
            raise TypeError(f"expected a Drill, got {type(drill).__name__}")
        values = _drill_values(drill)
        values["id"] = drill.id
        values["open_slot"] = _DRILL_OPEN_SLOT if drill.is_open else None
        details = _details_text(event)

        def work(conn: Connection) -> Drill:
            conn.execute(insert(drills).values(**values))
            self._append_in(conn, event, details)
            return _one_drill(conn, drill.id)

        try:
            return self._transaction(work, write=True)
        except IntegrityError as exc:
            if self.get_drill(drill.id) is not None:
                raise DuplicateDrill(f"a drill {drill.id} is already recorded") from exc
            open_drills = self.list_drills((DrillState.REQUESTED, DrillState.RUNNING), limit=1)
            if open_drills:
                raise DuplicateDrill(
                    f"drill {open_drills[0].id} is still {open_drills[0].state.value}") from exc
            raise DuplicateDrill(
                f"a drill branch named {drill.branch_name} is already recorded") from exc

    def get_drill(self, drill_id: str) -> Drill | None:
        row = self._transaction(
            lambda conn: conn.execute(select(drills).where(drills.c.id == drill_id)).first(),
            write=False,
        )
        return None if row is None else _drill(row)

    def list_drills(self, states: tuple[DrillState, ...] | None = None,
                    limit: int = 50) -> list[Drill]:
        """At most `limit` drills (in `states`, if given), newest first (by created_at,
        then id, both descending)."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("limit must be an int")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(drills)
        if states is not None:
            if not states:
                return []
            query = query.where(drills.c.state.in_([DrillState(s).value for s in states]))
        query = query.order_by(drills.c.created_at.desc(), drills.c.id.desc()).limit(limit)
        rows = self._transaction(lambda conn: conn.execute(query).all(), write=False)
        return [_drill(row) for row in rows]

    def last_successful_drill(self) -> Drill | None:
        """The newest drill that succeeded, or None."""
        found = self.list_drills((DrillState.SUCCEEDED,), limit=1)
        return found[0] if found else None

    def update_drill(self, drill_id: str, expected_version: int,
                     event: AuditEvent | None = None, **changes: Any) -> Drill | None:
        """Compare-and-set on the version: `UPDATE … SET …, version = version + 1,
        updated_at = now WHERE id = ? AND version = ?`, and `event` appended in the same
        transaction. None (nothing written, no event appended) when the version had moved
        on or there is no such drill. `updated_at` is now unless given.

        Any Drill field but id, version and created_at may be changed (TypeError
        otherwise, or for a value of the wrong type; ValueError for a naive datetime or
        data JSON cannot hold). A `state` change must be allowed by
        `check_drill_transition` from the state stored at `expected_version` (ValueError,
        nothing written, otherwise); a final state frees the open slot."""
        unknown = set(changes) - _DRILL_UPDATABLE_FIELDS
        if unknown:
            raise TypeError(f"Drill has no updatable field(s) {', '.join(sorted(unknown))}")
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise TypeError("expected_version must be an int")
        values = _drill_values(changes)
        new_state = DrillState(changes["state"]) if "state" in changes else None
        if new_state is not None:
            values["open_slot"] = (_DRILL_OPEN_SLOT if new_state in (DrillState.REQUESTED,
                                                                     DrillState.RUNNING)
                                   else None)
        details = None if event is None else _details_text(event)
        table = drills

        def work(conn: Connection) -> Drill | None:
            if new_state is not None:
                current = conn.execute(
                    select(table.c.state, table.c.version).where(table.c.id == drill_id)
                ).first()
                if current is None or current.version != expected_version:
                    return None
                if DrillState(current.state) != new_state:
                    check_drill_transition(DrillState(current.state), new_state)
            stamped = {"updated_at": self._now(), **values}
            result = conn.execute(
                update(table)
                .where(and_(table.c.id == drill_id, table.c.version == expected_version))
                .values(**stamped, version=table.c.version + 1)
            )
            if result.rowcount != 1:
                return None
            if event is not None and details is not None:
                self._append_in(conn, event, details)
            return _one_drill(conn, drill_id)

        try:
            return self._transaction(work, write=True)
        except IntegrityError as exc:
            raise DuplicateDrill(f"drill {drill_id} cannot be changed so: {exc.orig}") from exc

    def claim_drill(self, drill_id: str, owner: str, lease_seconds: float) -> Drill | None:
        """Take (or extend, for the same owner) the work lease until now + lease_seconds.
        None when another owner's lease has not expired, or there is no such drill. The
        version is not bumped."""
        return self._claim(drills, drill_id, owner, lease_seconds, _one_drill)

    def release_drill(self, drill_id: str, owner: str) -> None:
        """Give up the lease if `owner` holds it; otherwise do nothing."""
        self._release(drills, drill_id, owner)

    def lease_of_drill(self, drill_id: str) -> tuple[str, datetime] | None:
        """(owner, until) of the drill's current lease, expired or not; None if none."""
        return self._lease_of(drills, drill_id)


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


def _entry(row: Row[Any]) -> AuditEntry:
    details = json.loads(row.details)
    if not isinstance(details, dict):
        raise ValueError("details is not a JSON object")
    return AuditEntry(seq=row.seq, created_at=row.created_at, actor=row.actor,
                      action=row.action, subject=row.subject, details=details,
                      prev_hash=row.prev_hash, hash=row.hash)


def _backup_values(source: Backup | Mapping[str, Any]) -> dict[str, Any]:
    """Column values for the given Backup fields (all of them for a Backup)."""
    items = ({name: getattr(source, name) for name in _BACKUP_FIELDS if name != "id"}
             if isinstance(source, Backup) else dict(source))
    values: dict[str, Any] = {}
    for name, value in items.items():
        if name == "status":
            value = BackupStatus(value).value
        elif name == "operation_ids":
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError("operation_ids must be a sequence of strings")
            value = json.dumps(list(value))
        elif name in _TIMESTAMP_FIELDS:
            if not isinstance(value, datetime):
                raise TypeError(f"{name} must be a datetime")
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
        values[name] = value
    return values


def _backup(row: Row[Any]) -> Backup:
    data = row._mapping
    kwargs: dict[str, Any] = {name: data[name] for name in _BACKUP_FIELDS}
    kwargs["status"] = BackupStatus(data["status"])
    kwargs["operation_ids"] = tuple(json.loads(data["operation_ids"]))
    return Backup(**kwargs)


def _one_backup(conn: Connection, backup_id: str) -> Backup:
    return _backup(conn.execute(select(backups).where(backups.c.id == backup_id)).one())


def _aware(name: str, value: object, *, nullable: bool = False) -> datetime | None:
    if value is None and nullable:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _approvals_text(value: object) -> str:
    if isinstance(value, str | Mapping | Approval) or not isinstance(value, Iterable):
        raise TypeError("approvals must be a sequence of Approval")
    items = []
    for approval in value:
        if not isinstance(approval, Approval):
            raise TypeError(f"approvals must be Approval, got {type(approval).__name__}")
        if not isinstance(approval.user_id, str):
            raise TypeError("an approval's user_id must be a string")
        _aware("an approval's time", approval.at)
        items.append({"user_id": approval.user_id, "at": _rfc3339(approval.at)})
    return json.dumps(items, ensure_ascii=False)


def _approvals(text_value: str) -> tuple[Approval, ...]:
    return tuple(Approval(user_id=item["user_id"],
                          at=datetime.fromisoformat(item["at"]).astimezone(UTC))
                 for item in json.loads(text_value))


def _json_object_text(name: str, value: object, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping")
    try:
        return json.dumps(dict(value), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be plain JSON data: {exc}") from exc


def _request_values(source: ChangeRequest | Mapping[str, Any]) -> dict[str, Any]:
    """Column values for the given ChangeRequest fields (all of them, the plan's
    flattened, for a ChangeRequest)."""
    if isinstance(source, ChangeRequest):
        if not isinstance(source.plan, Plan):
            raise TypeError("a request's plan must be a Plan")
        items = {name: getattr(source, name) for name in _REQUEST_FIELDS
                 if name not in ("id", "plan")}
        items.update({name: getattr(source.plan, name) for name in _PLAN_FIELDS})
    else:
        items = dict(source)
    values: dict[str, Any] = {}
    for name, value in items.items():
        if name == "state":
            value = RequestState(value).value
        elif name == "action":
            value = RequestAction(value).value
        elif name == "step":
            value = None if value is None else Step(value).value
        elif name == "approvals":
            value = _approvals_text(value)
        elif name == "operation_ids":
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError("operation_ids must be a sequence of strings")
            value = json.dumps(list(value))
        elif name == "verification":
            value = _json_object_text(name, value, nullable=True)
        elif name == "extra":
            value = _json_object_text(name, value)
        elif name in ("version", "required_approvals"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int")
        elif name in _REQUEST_TIMESTAMP_FIELDS:
            _aware(name, value)
        elif name in _REQUEST_OPTIONAL_TIMESTAMP_FIELDS:
            _aware(name, value, nullable=True)
        values[name] = value
    return values


def _request(row: Row[Any]) -> ChangeRequest:
    data = row._mapping
    plan_kwargs: dict[str, Any] = {name: data[name] for name in _PLAN_FIELDS}
    plan_kwargs["action"] = RequestAction(data["action"])
    kwargs: dict[str, Any] = {name: data[name] for name in _REQUEST_FIELDS if name != "plan"}
    kwargs["plan"] = Plan(**plan_kwargs)
    kwargs["state"] = RequestState(data["state"])
    kwargs["step"] = None if data["step"] is None else Step(data["step"])
    kwargs["approvals"] = _approvals(data["approvals"])
    kwargs["operation_ids"] = tuple(json.loads(data["operation_ids"]))
    kwargs["verification"] = (None if data["verification"] is None
                              else json.loads(data["verification"]))
    kwargs["extra"] = json.loads(data["extra"])
    return ChangeRequest(**kwargs)


def _one_request(conn: Connection, request_id: str) -> ChangeRequest:
    return _request(conn.execute(
        select(change_requests).where(change_requests.c.id == request_id)).one())


def _drill_values(source: Drill | Mapping[str, Any]) -> dict[str, Any]:
    """Column values for the given Drill fields (all of them but id, for a Drill)."""
    items = ({name: getattr(source, name) for name in _DRILL_FIELDS if name != "id"}
             if isinstance(source, Drill) else dict(source))
    values: dict[str, Any] = {}
    for name, value in items.items():
        if name == "state":
            value = DrillState(value).value
        elif name == "step":
            value = DrillStep(value).value
        elif name == "failed_step":
            value = None if value is None else DrillStep(value).value
        elif name == "operation_ids":
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError("operation_ids must be a sequence of strings")
            value = json.dumps(list(value))
        elif name == "step_timings":
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, int | float)
                    and not isinstance(v, bool) for k, v in value.items()):
                raise TypeError("step_timings must map step names to seconds")
            value = _json_object_text(name, value)
        elif name == "verification":
            value = _json_object_text(name, value, nullable=True)
        elif name in ("rto_seconds", "rpo_seconds"):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise TypeError(f"{name} must be a number of seconds")
        elif name == "branch_deleted":
            if not isinstance(value, bool):
                raise TypeError("branch_deleted must be a bool")
        elif name == "version":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("version must be an int")
        elif name in _DRILL_TIMESTAMP_FIELDS:
            _aware(name, value)
        elif name in _DRILL_OPTIONAL_TIMESTAMP_FIELDS:
            _aware(name, value, nullable=True)
        values[name] = value
    return values


def _drill(row: Row[Any]) -> Drill:
    data = row._mapping
    kwargs: dict[str, Any] = {name: data[name] for name in _DRILL_FIELDS}
    kwargs["state"] = DrillState(data["state"])
    kwargs["step"] = DrillStep(data["step"])
    kwargs["failed_step"] = (None if data["failed_step"] is None
                             else DrillStep(data["failed_step"]))
    kwargs["operation_ids"] = tuple(json.loads(data["operation_ids"]))
    kwargs["step_timings"] = json.loads(data["step_timings"])
    kwargs["verification"] = (None if data["verification"] is None
                              else json.loads(data["verification"]))
    kwargs["branch_deleted"] = bool(data["branch_deleted"])
    return Drill(**kwargs)


def _one_drill(conn: Connection, drill_id: str) -> Drill:
    return _drill(conn.execute(select(drills).where(drills.c.id == drill_id)).one())


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
