"""The export's dump side, streamed with no temporary file:

    pg_dump -Fc -Z0 ──> zstd ──> age (every recipient) ──> SHA-256 and size ──> sink

from a snapshot held open for pg_dump. pg_dump is a child process (bot/exports/children.py);
compression (zstandard) and encryption (pyrage, the Rust age implementation, whose output
the `age` command line reads) run in this process on bounded buffers, so memory stays flat
whatever the database's size. bot/exports/readback.py reads an export back.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import pyrage
import zstandard
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bot.domain.export_errors import DumpFailed, ExportError
from bot.domain.export_manifest import TableRows
from bot.domain.exports import check_recipients
from bot.exports.children import (
    READ_SIZE,
    PyrageWriter,
    StderrReader,
    child_environment,
    client_connection,
    ended,
    stop,
    widen,
)
from bot.exports.tools import PgTools

# zstd level 1: on pg_dump's output it compresses about as well as the default 3 (better,
# on the bench's data) at a good part of the CPU, which the database server and pg_dump
# share with this process (tests/bench/test_export_pipeline.py).
COMPRESSION_LEVEL = 1
PROGRESS_EVERY = 1024 * 1024

Progress = Callable[[int], None]


class Sink(Protocol):
    def write(self, data: bytes, /) -> Any: ...


def load_recipients(keys: Sequence[str]) -> list[pyrage.x25519.Recipient]:
    """age public keys (`age1…`) as pyrage recipients; ExportError naming a bad one."""
    try:
        checked = check_recipients(keys)
    except ValueError as error:
        raise ExportError(f"EXPORT_RECIPIENTS: {error}") from None
    recipients = []
    for key in checked:
        try:
            recipients.append(pyrage.x25519.Recipient.from_str(key))
        except pyrage.RecipientError:
            raise ExportError(f"EXPORT_RECIPIENTS: {key!r} is not a valid age public "
                              "key") from None
    return recipients


# Snapshot.


@dataclass(frozen=True)
class Snapshot:
    """An exported snapshot of one database, held open while it is dumped."""

    snapshot_id: str
    taken_at: datetime
    lsn: str | None  # None when the server would not tell (permissions, a replica)
    server_version: str  # "15.10"
    server_version_num: int  # 150010
    tables: tuple[TableRows, ...]  # exact row counts in this snapshot


# User tables: ordinary tables and partitions (a partitioned parent holds no rows of its
# own), in every schema but the system's, and not those of an extension, whose rows
# pg_dump does not dump (the extension's own script makes them at restore).
_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""


@contextmanager
def snapshot(uri: str, *, connect_timeout: int = 30) -> Iterator[Snapshot]:
    """A REPEATABLE READ, read-only transaction on the database of `uri` whose snapshot
    is exported (pg_export_snapshot) for `pg_dump --snapshot`, with the LSN, the server's
    version and every user table's exact row count read in that same snapshot. The
    transaction stays open until the block ends, as pg_dump needs."""
    try:
        conn = psycopg.connect(uri, connect_timeout=connect_timeout, autocommit=True)
    except psycopg.Error as error:
        raise ExportError(f"cannot connect to the database to export it: "
                          f"{_postgres_message(error, uri)}") from None
    try:
        try:
            taken = _take_snapshot(conn)
        except psycopg.Error as error:
            raise ExportError(f"the export's snapshot failed: "
                              f"{_postgres_message(error, uri)}") from None
        yield taken
    finally:
        conn.close()  # which ends the transaction: the snapshot is needed no longer


def _take_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    # A long dump must not be cut short by the server's own limits on this session.
    conn.execute("SET statement_timeout = 0")
    conn.execute("SET idle_in_transaction_session_timeout = 0")
    version = conn.execute("SELECT current_setting('server_version'), "
                           "current_setting('server_version_num')::int").fetchone()
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    exported = conn.execute("SELECT pg_export_snapshot(), transaction_timestamp()").fetchone()
    if version is None or exported is None:
        raise ExportError("the database did not answer the snapshot's queries")
    lsn = _snapshot_lsn(conn)
    tables = []
    for schema, table in conn.execute(_TABLES).fetchall():
        counted = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table))).fetchone()
        tables.append(TableRows(schema, table, int(counted[0]) if counted else 0))
    return Snapshot(
        snapshot_id=str(exported[0]),
        taken_at=exported[1].astimezone(UTC),
        lsn=lsn,
        server_version=str(version[0]).split()[0],
        server_version_num=int(version[1]),
        tables=tuple(tables),
    )


def _snapshot_lsn(conn: psycopg.Connection[Any]) -> str | None:
    """The WAL position of the snapshot: the insert position on a primary, the replay
    position on a replica; None when the role may not ask (in a savepoint, so the
    snapshot's transaction survives the refusal)."""
    conn.execute("SAVEPOINT lsn")
    try:
        row = conn.execute("SELECT CASE WHEN pg_is_in_recovery() THEN "
                           "pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text"
                           ).fetchone()
    except psycopg.Error:
        conn.execute("ROLLBACK TO SAVEPOINT lsn")
        return None
    conn.execute("RELEASE SAVEPOINT lsn")
    return str(row[0]) if row and row[0] else None


def _postgres_message(error: psycopg.Error, uri: str) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    try:
        password = conninfo_to_dict(uri).get("password")
    except psycopg.Error:
        password = None
    return first.replace(str(password), "***") if password else first


# Dump.


class _Digesting(PyrageWriter):
    """The encrypted stream on its way to the sink: SHA-256, size and progress."""

    def __init__(self, sink: Sink, progress: Progress | None) -> None:
        super().__init__()
        self.sink = sink
        self.progress = progress
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._reported = 0

    def deliver(self, data: bytes) -> None:
        self.sink.write(data)  # the sink sends parts as they fill
        self.sha256.update(data)
        self.size += len(data)
        if self.progress and self.size - self._reported >= PROGRESS_EVERY:
            self._reported = self.size
            self.progress(self.size)


@dataclass(frozen=True)
class DumpResult:
    size: int  # bytes written to the sink
    sha256: str  # of those bytes, lowercase hex


def dump(uri: str, database: str, *, snapshot_id: str, recipients: Sequence[str],
         sink: Sink, tools: PgTools, progress: Progress | None = None,
         compression_level: int = COMPRESSION_LEVEL) -> DumpResult:
    """`pg_dump -Fc -Z0 --snapshot=<id>` of `database` (on the server of `uri`), zstd
    compressed and age encrypted to every recipient, written to `sink` (e.g. an
    object_streams.Upload, which the caller then completes or aborts). `progress(bytes
    written)` is called every MiB and at the end. DumpFailed when pg_dump exits non-zero or is
    killed; the sink's own error when it fails (pg_dump is then stopped)."""
    keys = load_recipients(recipients)
    conninfo, password = client_connection(uri, database)
    argv = [str(tools.pg_dump), "-Fc", "-Z0", f"--snapshot={snapshot_id}",
            "--no-password", "-d", conninfo]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=child_environment(password))
    assert process.stdout is not None and process.stderr is not None
    widen(process.stdout)
    stderr = StderrReader(process.stderr, password)
    stderr.start()
    digesting = _Digesting(sink, progress)
    compressor = zstandard.ZstdCompressor(level=compression_level, write_checksum=True)
    try:
        with compressor.stream_reader(process.stdout, read_size=READ_SIZE,
                                      closefd=False) as compressed:
            pyrage.encrypt_io(compressed, digesting, keys)
    except BaseException as error:
        stop(process)
        if digesting.error is not None:
            raise digesting.error from None
        if not isinstance(error, Exception):
            raise
        failed = stderr.first_line()
        raise DumpFailed(f"the export of database {database!r} failed: "
                         f"{type(error).__name__}: {error}"
                         + (f" (pg_dump: {failed})" if failed else "")) from None
    finally:
        process.stdout.close()
    problem = ended(process, "pg_dump", stderr)
    if problem is not None:
        raise DumpFailed(f"the dump of database {database!r} failed: {problem}")
    if progress:
        progress(digesting.size)
    return DumpResult(digesting.size, digesting.sha256.hexdigest())

