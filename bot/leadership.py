"""The one bot replica that runs the scheduler's jobs (bot/scheduler.py defines them).

`Leadership` runs the scheduler only while it holds the leader lock:

- PostgreSQL: a session-level `pg_try_advisory_lock(LEADER_LOCK_KEY)` held on one
  dedicated connection. The leader checks that connection with a cheap query every
  interval and before each round of due jobs; if it is gone (the server restarted, the
  session was terminated, the network broke), its lock is gone too, and the process
  stops its scheduler at once. Session locks need a direct connection: through a
  transaction-mode pooler (PgBouncer, Neon's `-pooler` host) they are not reliable.
- SQLite: an exclusive `flock` on `<database file>.scheduler-lock` (it holds the
  leader's `host:pid`), so one process on the machine leads.

Every process that does not lead tries again every RECONCILE_INTERVAL, so when the
leader dies (its lock goes with its connection or its process) another takes over within
one interval. A process that lost its lock waits one interval more before trying again,
so a healthy replica goes first. Becoming leader installs the jobs (the triggers follow
the current settings), appends the audit entry `scheduler.leader` and runs `reconcile`
at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bot.domain.audit import AuditEvent
from bot.scheduler import JOBS_TABLE, PlannedJob, install_jobs

# The leader's messages are the scheduler's, to whoever reads the logs.
log = logging.getLogger("lifeguard.scheduler")

LEADER_LOCK_KEY = 0x4C49464553434844  # "LIFESCHD": pg_try_advisory_lock key of the leader
LOCK_FILE_SUFFIX = ".scheduler-lock"
# The leader's lock connection notices a dead peer within about this long, and so does
# the server (a leader whose machine vanished without closing its connection).
LOCK_CONNECTION_TIMEOUT = timedelta(seconds=30)


class LeaderLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free; True if this object holds it now."""

    def alive(self) -> bool:
        """Whether this object still holds the lock (False once it is lost)."""

    def release(self) -> None:
        """Give the lock up (nothing if not held)."""


class AdvisoryLock:
    """PostgreSQL: a session-level advisory lock held on one dedicated connection."""

    def __init__(self, engine: Engine, key: int = LEADER_LOCK_KEY) -> None:
        if engine.url.host and "-pooler" in engine.url.host:
            log.warning("DATABASE_URL goes through a connection pooler (%s): the scheduler's "
                        "leader lock needs a direct connection to be reliable",
                        engine.url.host)
        timeout_ms = int(LOCK_CONNECTION_TIMEOUT.total_seconds() * 1000)
        self._engine = create_engine(
            engine.url, poolclass=NullPool,
            connect_args={"connect_timeout": 10, "application_name": "lifeguard-scheduler",
                          "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                          "keepalives_count": 3, "tcp_user_timeout": timeout_ms})
        self._key = key
        self._connection: Connection | None = None
        self._mutex = threading.Lock()

    def acquire(self) -> bool:
        with self._mutex:
            if self._connection is not None:
                return True
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                # Let the server notice a leader whose machine vanished, not only one
                # whose process died (whose connection the kernel closes at once).
                for setting, value in (("tcp_keepalives_idle", 10),
                                       ("tcp_keepalives_interval", 5),
                                       ("tcp_keepalives_count", 3)):
                    connection.execute(text(f"SET {setting} = {value}"))
                taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                           {"key": self._key}).scalar_one()
            except BaseException:
                connection.close()
                raise
            if not taken:
                connection.close()
                return False
            self._connection = connection
            return True

    def alive(self) -> bool:
        with self._mutex:
            if self._connection is None:
                return False
            try:
                self._connection.execute(text("SELECT 1")).scalar_one()
                return True
            except Exception as error:
                log.warning("the scheduler's lock connection is gone: %s",
                            type(error).__name__)
                self._discard()
                return False

    def release(self) -> None:
        with self._mutex:
            if self._connection is None:
                return
            with contextlib.suppress(Exception):  # if the session is gone, so is its lock
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": self._key})
            self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                log.debug("closing the lock connection failed", exc_info=True)


class FileLock:
    """An exclusive `flock` on a file; the kernel drops it when the process ends."""

    def __init__(self, path: Path, owner: str = "") -> None:
        self.path = path
        self._owner = owner
        self._file: IO[str] | None = None
        self._mutex = threading.Lock()

    def acquire(self) -> bool:
        with self._mutex:
            if self._file is not None:
                return True
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held while leading
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            except BaseException:
                handle.close()
                raise
            handle.seek(0)
            handle.truncate()
            handle.write(f"{self._owner}\n")
            handle.flush()
            self._file = handle
            return True

    def alive(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        with self._mutex:
            handle, self._file = self._file, None
            if handle is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                finally:
                    handle.close()


class ProcessLock:
    """For an in-memory SQLite store, which only this process can see."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._held = False

    def acquire(self) -> bool:
        if not self._held:
            self._held = ProcessLock._lock.acquire(blocking=False)
        return self._held

    def alive(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            ProcessLock._lock.release()


def leader_lock(engine: Engine, owner: str = "") -> LeaderLock:
    """The leader lock for the store behind `engine`."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return ProcessLock()
        path = Path(database)
        return FileLock(path.with_name(path.name + LOCK_FILE_SUFFIX), owner)
    raise ValueError(f"no leader lock for a {engine.dialect.name} store")


class _SharedEngineJobStore(SQLAlchemyJobStore):
    """The job store on Lifeguard's own engine, which it must not dispose of when the
    scheduler stops (APScheduler's does)."""

    def shutdown(self) -> None:
        pass


class _LeaderScheduler(BackgroundScheduler):
    """A BackgroundScheduler that runs due jobs only after confirming its leader lock."""

    def __init__(self, confirm: Callable[[], bool], retry_seconds: float,
                 **options: Any) -> None:
        self._leader_confirm = confirm
        self._leader_retry_seconds = retry_seconds
        super().__init__(**options)

    def _process_jobs(self) -> float | None:
        if self.state == STATE_RUNNING and not self._leader_confirm():
            return self._leader_retry_seconds
        wait: float | None = super()._process_jobs()
        return wait


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Runs the scheduler in this process while it is the leader among the replicas.

    `start()` tries to lead at once, then keeps trying (or, when leading, checks the lock)
    every `interval` on a background thread; `stop()` stops the scheduler and releases
    the lock. `tick()` is one such round, for tests and for the thread.
    """

    def __init__(self, engine: Engine, jobs: Sequence[PlannedJob], *, interval: timedelta,
                 record: Callable[[AuditEvent], object] | None = None,
                 process: str | None = None, lock: LeaderLock | None = None) -> None:
        self.process = process or process_name()
        self._engine = engine
        self._jobs = list(jobs)
        self._interval = max(interval.total_seconds(), 0.01)
        self._record = record
        self._lock = lock if lock is not None else leader_lock(engine, self.process)
        self._state = threading.RLock()
        self._scheduler: BackgroundScheduler | None = None
        self._lost = False
        self._cooldown = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._scheduler is not None

    @property
    def scheduler(self) -> BackgroundScheduler | None:
        """The running scheduler while this process leads."""
        return self._scheduler

    def start(self) -> None:
        self._stopping.clear()
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="lifeguard-leadership",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._thread = None
        with self._state:
            if self.is_leader:
                log.info("stopping the scheduler and releasing the leader lock")
            self._step_down()

    def tick(self) -> bool:
        """One round: the leader checks it still holds its lock and steps down if not;
        any other process tries to take the lock. Whether this process leads after it."""
        with self._state:
            if self._stopping.is_set():
                return False
            if self._scheduler is not None:
                if self._lost or not self._lock.alive():
                    log.warning("lost the scheduler leader lock: stopping the scheduler")
                    self._step_down()
                    self._cooldown = 1  # let a healthy replica take over first
                return self.is_leader
            if self._cooldown:
                self._cooldown -= 1
                return False
            try:
                if not self._lock.acquire():
                    return False
            except Exception as error:
                log.warning("cannot try the scheduler leader lock: %s: %s",
                            type(error).__name__, error)
                return False
            try:
                self._become_leader()
            except Exception:
                log.exception("becoming the scheduler leader failed; trying again later")
                self._step_down()
            return self.is_leader

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.tick()
            except Exception:  # never let the thread die: the next round tries again
                log.exception("scheduler leadership round failed")

    def _confirm(self) -> bool:
        """From the scheduler's thread, before it runs due jobs: is the lock still ours?"""
        if not self._lost and self._lock.alive():
            return True
        if not self._lost:
            self._lost = True
            log.warning("the scheduler leader lock is lost: not running due jobs")
        self._wake.set()
        return False

    def _become_leader(self) -> None:
        self._lost = False
        scheduler = _LeaderScheduler(
            self._confirm, self._interval, timezone=UTC,
            jobstores={"default": _SharedEngineJobStore(engine=self._engine,
                                                        tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(max_workers=max(1, len(self._jobs)))},
            job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.start(paused=True)
        try:
            install_jobs(scheduler, self._jobs)
            if self._record is not None:
                self._record(AuditEvent(actor="system", action="scheduler.leader",
                                        subject="scheduler",
                                        details={"process": self.process}))
        except BaseException:
            scheduler.shutdown(wait=False)
            raise
        self._scheduler = scheduler
        log.info("this process (%s) is the scheduler leader", self.process)
        scheduler.resume()

    def _step_down(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            try:
                scheduler.shutdown(wait=False)
            except Exception:
                log.exception("stopping the scheduler failed")
        try:
            self._lock.release()
        except Exception:
            log.exception("releasing the scheduler leader lock failed")
