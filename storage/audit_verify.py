"""`audit verify` at the speed of the database: the whole chain streamed through one raw
DB-API cursor, each entry hashed from text the database writes.

The reference rule is `bot.domain.audit.find_chain_break` over entries read through
SQLAlchemy: per entry, the seq must follow the one before, prev_hash must be the hash of
the one before, and `entry_hash(...)` of its fields must be its hash. Done that way, a
million entries spend most of their time making objects (a Row, a datetime, a parsed
details dict, an AuditEntry, then the body dict again) and take half a minute.

Here the query itself writes, for each row, the text `entry_hash` would hash: the JSON
body with its keys in sorted order, each string quoted by the database's JSON quoting
(`json_quote` on SQLite, `to_json` on PostgreSQL: the same escapes as Python's `json`),
the details column as stored (Lifeguard stores it as canonical JSON, written with the
same `json.dumps` options), and the instant in `canonical_timestamp`'s form. Each row
arrives as four values (seq, prev_hash, hash, body), `fetchmany` at a time on sqlite3
and from a server-side cursor on psycopg (so PostgreSQL never sends the table at once),
and Python follows the links and compares SHA-256 digests.

A row this fast path does not accept (a broken link, an edit, text in a form Lifeguard
does not write) is read again alone through SQLAlchemy and judged by the reference rule,
which decides: the first bad entry and its reason are the reference's, and an entry whose
details are equivalent to, but not exactly, canonical JSON still verifies. The fast path
accepts a row only when the text it builds is exactly the text that was hashed when the
entry was written, or when someone computed a fresh hash over other text, which means
rewriting the chain from that entry on: that is caught only by comparing the head with
an exported one (see storage/store.py), by either verifier.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from sqlalchemy import Engine, Row, select

from bot.domain.audit import GENESIS_HASH, AuditEntry, ChainBreak, find_chain_break
from storage.db import is_postgresql
from storage.models import audit_entries

#: rows fetched per round trip (per server-side cursor fetch on PostgreSQL)
FETCH_SIZE = 5000
#: the smallest seq either database can hold: the stream starts there, so an entry slipped
#: in before seq 1 is seen too
_FIRST_POSSIBLE_SEQ = -(2**63)

# SQLite keeps an instant as SQLAlchemy's naive UTC text `YYYY-MM-DD HH:MM:SS.ffffff`;
# text of any other shape gives NULL, so the row gets the reference's closer look.
_SQLITE_QUERY = """
SELECT seq, prev_hash, hash,
       '{"action":' || json_quote(action)
       || ',"actor":' || json_quote(actor)
       || ',"created_at":"' || CASE
              WHEN length(created_at) = 26 AND substr(created_at, 11, 1) = ' '
                   AND substr(created_at, 20, 1) = '.'
              THEN substr(created_at, 1, 10) || 'T' || substr(created_at, 12) || 'Z' END
       || '","details":' || details
       || ',"prev_hash":' || json_quote(prev_hash)
       || ',"seq":' || seq
       || ',"subject":' || json_quote(subject) || '}'
FROM audit_entries WHERE seq >= ? ORDER BY seq
"""

_POSTGRES_QUERY = """
SELECT seq, prev_hash, hash,
       '{"action":' || to_json(action)::text
       || ',"actor":' || to_json(actor)::text
       || ',"created_at":"'
       || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       || '","details":' || details
       || ',"prev_hash":' || to_json(prev_hash)::text
       || ',"seq":' || seq
       || ',"subject":' || to_json(subject)::text || '}'
FROM audit_entries WHERE seq >= %s ORDER BY seq
"""


@dataclass(frozen=True)
class _Position:
    """Where the fast path stopped: entries accepted, and the link the next must hold."""

    checked: int
    prev_hash: str
    expected_seq: int
    suspect_seq: int | None  # the first row the fast path did not accept; None at the end


def verify_chain(engine: Engine, fetch_size: int = FETCH_SIZE) -> tuple[int, ChainBreak | None]:
    """(entries checked, the first break or None), as `find_chain_break` over the whole
    trail from seq 1 and GENESIS_HASH answers, a row that cannot be read being a break."""
    checked, prev_hash, expected_seq, start = 0, GENESIS_HASH, 1, _FIRST_POSSIBLE_SEQ
    while True:
        position = _fast_check(engine, start, prev_hash, expected_seq, fetch_size)
        checked += position.checked
        if position.suspect_seq is None:
            return checked, None
        entry, broken = _reference_check(engine, position.suspect_seq, position.prev_hash,
                                         position.expected_seq)
        if broken is not None:
            return checked, broken
        assert entry is not None
        # Equivalent to what was hashed, though not written the way Lifeguard writes it.
        checked += 1
        prev_hash, expected_seq, start = entry.hash, entry.seq + 1, entry.seq + 1


def _fast_check(engine: Engine, start: int, prev_hash: str, expected_seq: int,
                fetch_size: int) -> _Position:
    """Accept rows from seq `start` on until the end or the first row that needs a closer
    look."""
    checked = 0
    with closing(_stream_rows(engine, start, fetch_size)) as rows:
        for seq, stored_prev, stored_hash, body in rows:
            if (seq != expected_seq or stored_prev != prev_hash or body is None
                    or sha256(body.encode("utf-8")).hexdigest() != stored_hash):
                return _Position(checked, prev_hash, expected_seq, seq)
            checked += 1
            prev_hash, expected_seq = stored_hash, seq + 1
    return _Position(checked, prev_hash, expected_seq, None)


def _stream_rows(engine: Engine, start: int, fetch_size: int) -> Iterator[tuple[Any, ...]]:
    """(seq, prev_hash, hash, body) of rows with seq >= `start` in seq order, `fetch_size`
    at a time, from one statement (so from one consistent snapshot of the table)."""
    postgresql = is_postgresql(engine)
    with closing(engine.raw_connection()) as pooled:
        connection: Any = pooled.driver_connection
        if postgresql:
            # A named cursor lives on the server: the client holds one fetch at a time.
            cursor = connection.cursor(name="lifeguard_audit_verify")
            cursor.itersize = fetch_size
        else:
            cursor = connection.cursor()
            cursor.arraysize = fetch_size
        try:
            cursor.execute(_POSTGRES_QUERY if postgresql else _SQLITE_QUERY, (start,))
            while rows := cursor.fetchmany(fetch_size):
                yield from rows
        finally:
            cursor.close()
            if postgresql:  # end the named cursor's read transaction before pooling
                connection.rollback()


def entry_of(row: Row[Any]) -> AuditEntry:
    """A stored row as an audit entry; ValueError or TypeError when it was edited into
    something that cannot be one."""
    details = json.loads(row.details)
    if not isinstance(details, dict):
        raise ValueError("details is not a JSON object")
    return AuditEntry(seq=row.seq, created_at=row.created_at, actor=row.actor,
                      action=row.action, subject=row.subject, details=details,
                      prev_hash=row.prev_hash, hash=row.hash)


def _reference_check(engine: Engine, seq: int, prev_hash: str,
                     expected_seq: int) -> tuple[AuditEntry | None, ChainBreak | None]:
    """The entry at `seq` read and judged the reference way: (the entry, None) when it
    holds, (None, the break) when it does not."""
    try:
        with engine.connect() as conn:  # converting the row may fail, as for an edit
            row = conn.execute(select(audit_entries).where(audit_entries.c.seq == seq)).one()
        entry = entry_of(row)
    except (ValueError, TypeError) as exc:
        return None, ChainBreak(seq, f"it cannot be read ({exc}); it was edited")
    broken = find_chain_break([entry], prev_hash, expected_seq)
    return (None, broken) if broken is not None else (entry, None)
