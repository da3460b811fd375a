"""A real PostgreSQL server for the tests, started from PostgreSQL's own binaries.

The server lives in a temporary directory, listens on 127.0.0.1 on a free port and trusts
local connections, so tests can create and drop databases freely. initdb refuses to run as
root, so when the tests run as root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql


def postgres_bindir() -> Path:
    """Where initdb, pg_ctl and postgres are: pg_config's answer, else the Debian folder."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql "
        "package (Debian: apt-get install postgresql-15)"
    )


# Ports for servers the tests start, below Linux's ephemeral range (32768-60999), so an
# outgoing connection can never take a port between our choosing it and a server binding
# it. Each pytest-xdist worker draws from its own slice; a random start and the set of
# ports already handed out keep suites running side by side apart.
_LISTEN_PORTS_START, _SLICE = 12000, 2000
_SLICES = 10
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before in this process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _LISTEN_PORTS_START + (int(worker) if worker.isdigit() else 0) % _SLICES * _SLICE
    start = random.randrange(_SLICE)
    for offset in range(_SLICE):
        port = first + (start + offset) % _SLICE
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {first}-{first + _SLICE - 1}")


class PostgresServer:
    """One throwaway PostgreSQL cluster. `url(db)` gives a psycopg connection URL."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.user = "postgres"
        self._root = Path(tempfile.mkdtemp(prefix="lifeguard-pg-"))
        self.datadir = self._root / "data"
        self.sockdir = self._root / "sock"
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self._root, account.pw_uid, account.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self._as_owner(["mkdir", "-p", str(self.sockdir)])

    def _as_owner(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._run_as + argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr or result.stdout}")
        return result

    def start(self) -> PostgresServer:
        self._as_owner(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-U", self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.sockdir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._as_owner(
            [
                str(self.bindir / "pg_ctl"),
                "-D", str(self.datadir),
                "-l", str(self._root / "server.log"),
                "-o", options,
                "-w", "-t", "60",
                "start",
            ]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.datadir.exists():
            subprocess.run(
                [*self._run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                 "-m", "immediate", "-w", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self._root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database (dropping one of that name) and return its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
