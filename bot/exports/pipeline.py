"""The export's data path, streamed end to end with no temporary file:

    pg_dump -Fc -Z0 ──> zstd ──> age (every recipient) ──> SHA-256 and size ──> sink
    source ──> SHA-256 and size ──> age -d ──> zstd -d ──> pg_restore (verify, restore)

pg_dump and pg_restore are child processes; compression (zstandard) and encryption
(pyrage, the Rust age implementation, whose output the `age` command line reads) run in
this process on bounded buffers, so memory stays flat whatever the database's size.

A connection URI's password never reaches an argv (which `ps` shows) or a message: the
child gets the URI without it, and the password in its PGPASSWORD environment variable.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg
import pyrage
import zstandard
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bot.domain.exports import (
    DumpFailed,
    ExportError,
    RestoreFailed,
    TableRows,
    VerificationFailed,
    check_recipients,
)
from bot.exports.tools import PgTools

# zstd level 1: on pg_dump's output it compresses about as well as the default 3 (better,
# on the bench's data) at a good part of the CPU, which the database server and pg_dump
# share with this process (tests/bench/test_export_pipeline.py).
COMPRESSION_LEVEL = 1
PROGRESS_EVERY = 1024 * 1024
_READ_SIZE = 256 * 1024  # bytes asked of a source (pg_dump's pipe, an object) at a time
# A pipe of 1 MiB (Linux's default ceiling for it) lets pg_dump write on while this
# process compresses what it read, rather than each waiting for the other.
_PIPE_SIZE = 1024 * 1024
_STDERR_KEPT = 64 * 1024

Progress = Callable[[int], None]


class Sink(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# Keys.


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


def load_identities(path: str | Path) -> list[pyrage.x25519.Identity]:
    """The age identities (`AGE-SECRET-KEY-1…` lines; `#` comments) of an identity file,
    as `age-keygen` writes it. ExportError without the file's content in its message."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"the age identity file {path} cannot be read: "
                          f"{getattr(error, 'strerror', None) or type(error).__name__}"
                          ) from None
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise ExportError(f"line {number} of the age identity file {path} is not an "
                              "age secret key (AGE-SECRET-KEY-1…)") from None
    if not identities:
        raise ExportError(f"the age identity file {path} holds no key")
    return identities


# Child processes.


def client_connection(uri: str, database: str | None = None) -> tuple[str, str | None]:
    """(conninfo without its password, the password) for a child process; `database`
    replaces the URI's. The conninfo keeps every other parameter (sslmode, options…)."""
    try:
        params = conninfo_to_dict(uri)
    except psycopg.ProgrammingError:
        raise ExportError("the database connection URI cannot be parsed") from None
    password = params.pop("password", None)
    if database is not None:
        params["dbname"] = database
    return make_conninfo(**{k: str(v) for k, v in params.items()}), (
        None if password is None else str(password))


def _child_environment(password: str | None) -> dict[str, str]:
    """What pg_dump and pg_restore need and no more: the bot's own secrets stay out."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "PGCONNECT_TIMEOUT": "30"}
    if "HOME" in os.environ:  # ~/.postgresql/root.crt for sslmode=verify-full
        env["HOME"] = os.environ["HOME"]
    if password is not None:
        env["PGPASSWORD"] = password
    return env


class _Stderr(threading.Thread):
    """Drains a child's stderr (so it never blocks on a full pipe), keeping its start and
    its last lines."""

    def __init__(self, stream: IO[bytes], secret: str | None) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._secret = secret
        self._head = bytearray()
        self._tail = bytearray()

    def run(self) -> None:
        with suppress(OSError, ValueError):
            while chunk := self._stream.read(8192):
                if len(self._head) < _STDERR_KEPT:
                    self._head += chunk[: _STDERR_KEPT - len(self._head)]
                self._tail = (self._tail + chunk)[-4096:]

    def lines(self) -> list[str]:
        """The non-empty lines kept (the start, and the end when there was more), with any
        secret masked."""
        self.join(timeout=10)
        text = self._head.decode(errors="replace")
        if len(self._head) >= _STDERR_KEPT:
            text += "\n" + self._tail.decode(errors="replace")
        if self._secret:
            text = text.replace(self._secret, "***")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def first_line(self) -> str:
        """The first line that reports an error, else the first line."""
        lines = self.lines()
        chosen = next((line for line in lines if "error" in line.lower()),
                      lines[0] if lines else "")
        return chosen[:500]


def _ended(process: subprocess.Popen[bytes], program: str, stderr: _Stderr) -> str | None:
    """None when the child exited 0, else what went wrong in one sentence."""
    code = process.wait()
    if code == 0:
        return None
    line = stderr.first_line()
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{program} was killed ({name})" + (f": {line}" if line else "")
    return f"{program} exited with code {code}" + (f": {line}" if line else "")


def _widen(pipe: IO[bytes]) -> None:
    with suppress(OSError, AttributeError):  # not Linux, or a lower ceiling: as it is
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


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


class _Digesting:
    """The encrypted stream on its way to the sink: SHA-256, size and progress."""

    def __init__(self, sink: Sink, progress: Progress | None) -> None:
        self.sink = sink
        self.progress = progress
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None  # the sink's, which pyrage would reword
        self._reported = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if self.error is not None:  # pyrage flushes again after a failure: say it once
            raise self.error
        try:
            self.sink.write(data)
        except BaseException as error:
            self.error = error
            raise
        self.sha256.update(data)
        self.size += len(data)
        if self.progress and self.size - self._reported >= PROGRESS_EVERY:
            self._reported = self.size
            self.progress(self.size)
        return len(data)

    def flush(self) -> None:
        """pyrage flushes its writer; the sink sends parts as they fill."""


@dataclass(frozen=True)
class DumpResult:
    size: int  # bytes written to the sink
    sha256: str  # of those bytes, lowercase hex


def dump(uri: str, database: str, *, snapshot_id: str, recipients: Sequence[str],
         sink: Sink, tools: PgTools, progress: Progress | None = None,
         compression_level: int = COMPRESSION_LEVEL) -> DumpResult:
    """`pg_dump -Fc -Z0 --snapshot=<id>` of `database` (on the server of `uri`), zstd
    compressed and age encrypted to every recipient, written to `sink` (e.g. an
    objects.Upload, which the caller then completes or aborts). `progress(bytes written)`
    is called every MiB and at the end. DumpFailed when pg_dump exits non-zero or is
    killed; the sink's own error when it fails (pg_dump is then stopped)."""
    keys = load_recipients(recipients)
    conninfo, password = client_connection(uri, database)
    argv = [str(tools.pg_dump), "-Fc", "-Z0", f"--snapshot={snapshot_id}",
            "--no-password", "-d", conninfo]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=_child_environment(password))
    assert process.stdout is not None and process.stderr is not None
    _widen(process.stdout)
    stderr = _Stderr(process.stderr, password)
    stderr.start()
    digesting = _Digesting(sink, progress)
    compressor = zstandard.ZstdCompressor(level=compression_level, write_checksum=True)
    try:
        with compressor.stream_reader(process.stdout, read_size=_READ_SIZE,
                                      closefd=False) as compressed:
            pyrage.encrypt_io(compressed, digesting, keys)
    except BaseException as error:
        _stop(process)
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
    problem = _ended(process, "pg_dump", stderr)
    if problem is not None:
        raise DumpFailed(f"the dump of database {database!r} failed: {problem}")
    if progress:
        progress(digesting.size)
    return DumpResult(digesting.size, digesting.sha256.hexdigest())


# Reading an export back.


class _Hashing:
    """The stored object as it is read: SHA-256 and size of every byte."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.source.read(size if size and size > 0 else _READ_SIZE)
        except BaseException as error:
            self.error = error  # the store's, which pyrage would reword
            raise
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_READ_SIZE):
            pass


class _ToChild:
    """Decrypted bytes, decompressed into a child's stdin. A child that stops reading
    (it failed) is remembered rather than reworded by pyrage."""

    def __init__(self, stdin: IO[bytes]) -> None:
        self._stdin = stdin
        self._decompressor = zstandard.ZstdDecompressor().stream_writer(
            stdin, closefd=False)
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if self.error is not None:  # pyrage flushes again after a failure: say it once
            raise self.error
        try:
            self._decompressor.write(data)
        except BaseException as error:
            self.error = error
            raise
        return len(data)

    def flush(self) -> None:
        """Written through as it arrives."""


def _into_child(source: Source, identities: list[pyrage.x25519.Identity],
                argv: list[str], password: str | None
                ) -> tuple[_Hashing, str | None, str | None, _Stderr]:
    """Streams `source` through age -d and zstd -d into the child `argv`. (the hashing
    reader, what failed in decryption or decompression, what the child said when it
    failed, its stderr); the source is read to its end either way, so its checksum is
    whole."""
    hashing = _Hashing(source)
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=_child_environment(password))
    assert process.stdin is not None and process.stderr is not None
    _widen(process.stdin)
    stderr = _Stderr(process.stderr, password)
    stderr.start()
    to_child = _ToChild(process.stdin)
    stream_problem: str | None = None
    try:
        pyrage.decrypt_io(hashing, to_child, identities)
    except Exception as error:
        if to_child.error is None or not isinstance(to_child.error, BrokenPipeError):
            cause = to_child.error or error
            stream_problem = (f"decompression failed: {cause}" if to_child.error
                              else f"decryption failed: {cause}")
    finally:
        with suppress(OSError):
            process.stdin.close()
    if hashing.error is not None:  # the object could not be read: that is the news
        _stop(process)
        raise hashing.error
    child_problem = _ended(process, Path(argv[0]).name, stderr)
    hashing.drain()
    return hashing, stream_problem, child_problem, stderr


@dataclass(frozen=True)
class VerifyResult:
    size: int
    sha256: str
    archive_read: bool  # pg_restore read the whole archive (an identity was given)


def verify(stream: Source, *, name: str, expected_sha256: str, expected_size: int,
           identity: str | Path | None, tools: PgTools | None = None) -> VerifyResult:
    """Reads the export file `name` from `stream` once: its size and SHA-256 must be the
    manifest's; with an age identity file it is also decrypted, decompressed and read
    whole by `pg_restore -f /dev/null` (which, unlike `--list`, reads every data block, so
    a truncated or corrupt archive fails). No database is needed. VerificationFailed
    naming the file when anything does not hold. Without an identity (the bot holds no
    private key to export), the bytes are checked and the archive is not opened."""
    if identity is None:
        hashing = _Hashing(stream)
        hashing.drain()
        _check_bytes(name, hashing, expected_sha256, expected_size)
        return VerifyResult(hashing.size, hashing.sha256.hexdigest(), archive_read=False)
    if tools is None:
        raise ValueError("reading the archive needs the pg_restore of `tools`")
    identities = load_identities(identity)
    hashing, stream_problem, child_problem, _ = _into_child(
        stream, identities, [str(tools.pg_restore), "-f", os.devnull], None)
    _check_bytes(name, hashing, expected_sha256, expected_size)
    if stream_problem:
        raise VerificationFailed(f"{name}: {stream_problem}", name)
    if child_problem:
        raise VerificationFailed(f"{name}: the archive is not readable: {child_problem}",
                                 name)
    return VerifyResult(hashing.size, hashing.sha256.hexdigest(), archive_read=True)


def _check_bytes(name: str, hashing: _Hashing, expected_sha256: str,
                 expected_size: int) -> None:
    if hashing.size != expected_size:
        raise VerificationFailed(f"{name} is {hashing.size} bytes; the manifest says "
                                 f"{expected_size}", name)
    if hashing.sha256.hexdigest() != expected_sha256.lower():
        raise VerificationFailed(f"{name}: SHA-256 {hashing.sha256.hexdigest()} does not "
                                 f"match the manifest's {expected_sha256.lower()}", name)


# pg_restore 18 sets transaction_timeout, which servers before 17 do not know; the
# statement fails alone and changes nothing else, so pg_restore reports it, goes on and
# exits 1. That error, and only that one, does not fail a restore.
_TOLERATED_RESTORE_ERROR = 'unrecognized configuration parameter "transaction_timeout"'
_ERRORS_IGNORED = re.compile(r"errors ignored on restore: (\d+)")


def restore(stream: Source, *, identity: str | Path, target_uri: str, tools: PgTools,
            name: str = "the export file") -> None:
    """Decrypts and decompresses the export file `name` from `stream` into
    `pg_restore --no-owner --no-privileges -d <target>`. RestoreFailed with pg_restore's
    first error, or saying the stream could not be decrypted."""
    identities = load_identities(identity)
    conninfo, password = client_connection(target_uri)
    argv = [str(tools.pg_restore), "--no-owner", "--no-privileges", "--no-password",
            "-d", conninfo]
    _, stream_problem, child_problem, stderr = _into_child(stream, identities, argv,
                                                           password)
    if stream_problem:
        raise RestoreFailed(f"the restore of {name} failed: {stream_problem}")
    if child_problem and not _only_tolerated_errors(stderr.lines()):
        first = next((line for line in stderr.lines() if "error" in line.lower()
                      and _TOLERATED_RESTORE_ERROR not in line), child_problem)
        raise RestoreFailed(f"the restore of {name} failed: {first[:500]}")


def _only_tolerated_errors(lines: list[str]) -> bool:
    errors = [line for line in lines if line.startswith("pg_restore: error:")]
    ignored = [int(found.group(1)) for line in lines
               if (found := _ERRORS_IGNORED.search(line))]
    return (bool(errors) and all(_TOLERATED_RESTORE_ERROR in line for line in errors)
            and ignored == [len(errors)])
