"""Reading an export back, streamed with no temporary file:

    source ──> SHA-256 and size ──> age -d ──> zstd -d ──> pg_restore (verify, restore)

pg_restore is a child process (bot/exports/children.py); decryption and decompression run
in this process on bounded buffers. bot/exports/dumping.py writes the export.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import pyrage
import zstandard

from bot.domain.export_errors import ExportError, RestoreFailed, VerificationFailed
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


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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
            data = self.source.read(size if size and size > 0 else READ_SIZE)
        except BaseException as error:
            self.error = error  # the store's, which pyrage would reword
            raise
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(READ_SIZE):
            pass


class _ToChild(PyrageWriter):
    """Decrypted bytes, decompressed into a child's stdin. A child that stops reading
    (it failed) is remembered rather than reworded by pyrage."""

    def __init__(self, stdin: IO[bytes]) -> None:
        super().__init__()
        self._stdin = stdin
        self._decompressor = zstandard.ZstdDecompressor().stream_writer(
            stdin, closefd=False)

    def deliver(self, data: bytes) -> None:
        self._decompressor.write(data)


def _into_child(source: Source, identities: list[pyrage.x25519.Identity],
                argv: list[str], password: str | None
                ) -> tuple[_Hashing, str | None, str | None, StderrReader]:
    """Streams `source` through age -d and zstd -d into the child `argv`. (the hashing
    reader, what failed in decryption or decompression, what the child said when it
    failed, its stderr); the source is read to its end either way, so its checksum is
    whole."""
    hashing = _Hashing(source)
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=child_environment(password))
    assert process.stdin is not None and process.stderr is not None
    widen(process.stdin)
    stderr = StderrReader(process.stderr, password)
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
        stop(process)
        raise hashing.error
    child_problem = ended(process, Path(argv[0]).name, stderr)
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
            name: str = "the export file", expected_sha256: str | None = None) -> None:
    """Decrypts and decompresses the export file `name` from `stream` into
    `pg_restore --no-owner --no-privileges -d <target>`. RestoreFailed with pg_restore's
    first error, or saying the stream could not be decrypted, or (`expected_sha256`)
    that the bytes restored were not the file the manifest names."""
    identities = load_identities(identity)
    conninfo, password = client_connection(target_uri)
    argv = [str(tools.pg_restore), "--no-owner", "--no-privileges", "--no-password",
            "-d", conninfo]
    hashing, stream_problem, child_problem, stderr = _into_child(stream, identities, argv,
                                                                 password)
    digest = hashing.sha256.hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise RestoreFailed(f"the restore of {name} read an object whose SHA-256 {digest} "
                            f"is not the manifest's {expected_sha256.lower()}: it changed "
                            "after it was checked, and what was restored cannot be trusted")
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
