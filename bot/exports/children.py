"""The child processes of an export (pg_dump, pg_restore) and the pipes to them, for both
directions of the data path (bot/exports/dumping.py, bot/exports/readback.py).

A connection URI's password never reaches an argv (which `ps` shows) or a message: the
child gets the URI without it, and the password in its PGPASSWORD environment variable.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
from abc import ABC, abstractmethod
from contextlib import suppress
from typing import IO

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bot.domain.export_errors import ExportError

READ_SIZE = 256 * 1024  # bytes asked of a source (pg_dump's pipe, an object) at a time
# A pipe of 1 MiB (Linux's default ceiling for it) lets pg_dump write on while this
# process compresses what it read, rather than each waiting for the other.
_PIPE_SIZE = 1024 * 1024
_STDERR_KEPT = 64 * 1024


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


def child_environment(password: str | None) -> dict[str, str]:
    """What pg_dump and pg_restore need and no more: the bot's own secrets stay out."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "PGCONNECT_TIMEOUT": "30"}
    if "HOME" in os.environ:  # ~/.postgresql/root.crt for sslmode=verify-full
        env["HOME"] = os.environ["HOME"]
    if password is not None:
        env["PGPASSWORD"] = password
    return env


class StderrReader(threading.Thread):
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


def ended(process: subprocess.Popen[bytes], program: str, stderr: StderrReader) -> str | None:
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


def widen(pipe: IO[bytes]) -> None:
    """Gives a pipe to or from a child 1 MiB where the system allows it."""
    with suppress(OSError, AttributeError):  # not Linux, or a lower ceiling: as it is
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kills a child still running, and reaps it."""
    if process.poll() is None:
        process.kill()
    process.wait()


class PyrageWriter(ABC):
    """A writable pyrage encrypts or decrypts into. A failure of what it writes to is kept
    and raised again on pyrage's later flush, so the first error is the one reported
    (pyrage would reword it). Subclasses say where the bytes go (`deliver`)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        try:
            self.deliver(data)
        except BaseException as error:
            self.error = error
            raise
        return len(data)

    @abstractmethod
    def deliver(self, data: bytes) -> None:
        """Pass `data` on; raise if it cannot be."""

    def flush(self) -> None:  # noqa: B027 - nothing is buffered here, on purpose
        """Written through as it arrives."""
