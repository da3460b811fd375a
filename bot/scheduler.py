"""Jobs that run on a clock, and the one bot replica that runs them.

The jobs
--------
`JOBS` names every job and where its schedule comes from: an interval
(`reconcile` every RECONCILE_INTERVAL, `housekeeping` every 10 min, `approval_reminders`
every minute) or a 5-field cron expression from the settings, read in SCHEDULE_TIMEZONE
(`scheduled_backup` BACKUP_SCHEDULE, `prune` PRUNE_SCHEDULE, `health_report`
HEALTH_SCHEDULE, `drill_reminder` DRILL_REMINDER_SCHEDULE). `build_jobs(settings)` turns
them into APScheduler triggers; `describe_schedule(settings, now)` says what runs when,
for `/backup schedule`, without a scheduler.

Cron expressions are read as cron reads them, with two differences from plain APScheduler:

- Weekday numbers are cron's (0 or 7 = Sunday, 1 = Monday); APScheduler 3's own numbers
  start at Monday = 0, so `1-5` would otherwise mean Tuesday to Saturday. Names (`mon`)
  mean the same in both.
- A wall-clock time fires at most once (`WallClockCronTrigger`). When the clock is set
  back (Europe/Berlin, last Sunday of October: 02:00-03:00 happens twice) APScheduler
  would fire a 02:30 job twice; it fires at the first 02:30 only. When the clock is set
  forward (last Sunday of March: 02:00-03:00 does not exist) a 02:30 job fires once, at
  03:30 summer time, the instant 02:30 winter time would have been.

As in APScheduler (and unlike Vixie cron), a restricted day of month and a restricted
weekday must *both* match: `0 9 1-7 1,4,7,10 mon` is the first Monday of each quarter.

Jobs are stored in Lifeguard's own database (APScheduler's SQLAlchemyJobStore, table
`apscheduler_jobs`), so a run that falls due while no replica leads still happens when
one takes over (coalesced to one run, within the job's misfire grace time). A stored job
holds only text: the function `bot.scheduler:run_job` and the job's name; `run_job(name)`
calls the handler the process registered with `register_job_handlers` at start.

One leader among replicas
-------------------------
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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bot.domain.audit import AuditEvent
from bot.domain.durations import format_duration

log = logging.getLogger("lifeguard.scheduler")

JOB_FUNCTION = "bot.scheduler:run_job"
JOBS_TABLE = "apscheduler_jobs"
LEADER_LOCK_KEY = 0x4C49464553434844  # "LIFESCHD": pg_try_advisory_lock key of the leader
LOCK_FILE_SUFFIX = ".scheduler-lock"
HOUSEKEEPING_INTERVAL = timedelta(minutes=10)
APPROVAL_REMINDERS_INTERVAL = timedelta(minutes=1)
# A cron job that fell due while no replica was leading (a deploy, every replica down)
# still runs, once, if a leader appears within this long; later it waits for its next time.
CRON_MISFIRE_GRACE = timedelta(hours=6)
# The longest a clock change moves the wall clock (one hour nearly everywhere).
MAX_CLOCK_CHANGE = timedelta(hours=2)
# The leader's lock connection notices a dead peer within about this long, and so does
# the server (a leader whose machine vanished without closing its connection).
LOCK_CONNECTION_TIMEOUT = timedelta(seconds=30)


class ScheduleSettings(Protocol):
    """The settings the schedules are built from (bot.config.Settings has them)."""

    schedule_timezone: str
    backup_schedule: str
    prune_schedule: str
    health_schedule: str
    drill_reminder_schedule: str
    reconcile_interval: timedelta


# --- the jobs ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobDefinition:
    """A named job. Its schedule is the setting `setting` (a cron expression in
    SCHEDULE_TIMEZONE, or an interval), or the fixed interval `every`."""

    name: str
    description: str
    setting: str | None = None
    every: timedelta | None = None
    run_at_start: bool = False


JOBS: tuple[JobDefinition, ...] = (
    JobDefinition("reconcile", "move unfinished backups and requests forward, expire "
                  "overdue requests", setting="reconcile_interval", run_at_start=True),
    JobDefinition("housekeeping", "record backups Neon has expired",
                  every=HOUSEKEEPING_INTERVAL),
    JobDefinition("scheduled_backup", "take a backup of the default branch",
                  setting="backup_schedule"),
    JobDefinition("prune", "delete backups the retention policy no longer keeps",
                  setting="prune_schedule"),
    JobDefinition("health_report", "post the health report", setting="health_schedule"),
    JobDefinition("drill_reminder", "remind the team to run a restore drill",
                  setting="drill_reminder_schedule"),
    JobDefinition("approval_reminders", "remind approvers of requests still waiting",
                  every=APPROVAL_REMINDERS_INTERVAL),
)


@dataclass(frozen=True)
class PlannedJob:
    """A job with its trigger built from the settings."""

    name: str
    description: str
    trigger: BaseTrigger
    trigger_text: str
    misfire_grace_time: int | None
    setting: str | None = None
    run_at_start: bool = False


@dataclass(frozen=True)
class ScheduledJob:
    """One line of `/backup schedule`: what runs, on what schedule, and next when."""

    name: str
    description: str
    trigger_text: str
    next_run: datetime | None
    setting: str | None = None  # the environment variable that sets the schedule


class WallClockCronTrigger(CronTrigger):
    """A CronTrigger that fires once for each wall-clock time of its schedule, also on the
    days the clock changes.

    - Set back (the hour before the change happens twice): APScheduler fires at both
      occurrences of a time in that hour; this trigger only at the first.
    - Set forward (an hour of wall-clock times does not exist): a time in the gap, such as
      02:30 when 02:00 becomes 03:00, fires at the instant it would have been before the
      change, 03:30 summer time. APScheduler does so too when it counts from the run
      before, but counting from a moment between 03:00 and 03:30 (a restart, a new
      leader) it compares wall-clock times, finds 02:30 past and skips the day; this
      trigger does not.

    Fire times come back in the trigger's zone, normalised (03:30+02:00, not the
    nonexistent 02:30+01:00). After a previous fire time, the next one is strictly later,
    and may be before `now` (the scheduler counts missed runs that way); without one, it
    is at or after `now`.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        # Arithmetic on instants, in UTC: aware arithmetic in the zone is wall-clock
        # arithmetic, which is wrong across a clock change.
        tick = timedelta(microseconds=1)
        start = (now.astimezone(UTC) if previous_fire_time is None
                 else previous_fire_time.astimezone(UTC) + tick)
        # Count from far enough back that a time the clock skipped, which fires after
        # the jump, is still found when `start` is between the jump and that instant.
        fire = super().get_next_fire_time(None, start - MAX_CLOCK_CHANGE)
        while fire is not None:
            instant = fire.astimezone(UTC)
            local = instant.astimezone(self.timezone)  # normalised
            if instant >= start and not _repeated_wall_time(local):
                return local
            fire = super().get_next_fire_time(local, instant + tick)
        return None


def _repeated_wall_time(local: datetime) -> bool:
    """The second occurrence of a wall-clock time repeated when the clock was set back."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's 0-6 (7 = sun too)


def _cron_day(token: str) -> int:
    if token.isdigit():
        day = int(token)
        if not 0 <= day <= 7:
            raise ValueError(token)
        return day
    return _CRON_DAYS.index(token[:3])


def cron_weekdays(field: str) -> str:
    """A cron weekday field as day names, which APScheduler 3 reads as cron does.

    `1-5` → `mon,tue,wed,thu,fri`; `0`, `7` → `sun`; `*` and anything not understood is
    returned as it is (APScheduler then accepts or rejects it).
    """
    if field == "*":
        return field
    try:
        days: set[int] = set()
        for part in field.lower().split(","):
            span, _, step_text = part.partition("/")
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = 0, 6
            else:
                start, dash, end = span.partition("-")
                first = _cron_day(start)
                last = _cron_day(end) if dash else (6 if step_text else first)
            if step < 1 or first > last:
                raise ValueError(part)
            days.update(day % 7 for day in range(first, last + 1, step))
    except ValueError:
        return field
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def cron_trigger(expression: str, zone: str | tzinfo) -> WallClockCronTrigger:
    """The trigger of a 5-field cron expression in `zone` (an IANA name or a tzinfo)."""
    fields = expression.split()
    if len(fields) == 5:
        fields[4] = cron_weekdays(fields[4])
    timezone = ZoneInfo(zone) if isinstance(zone, str) else zone
    trigger = WallClockCronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    assert isinstance(trigger, WallClockCronTrigger)
    return trigger


def build_jobs(settings: ScheduleSettings,
               definitions: Sequence[JobDefinition] = JOBS) -> list[PlannedJob]:
    """Every job of `definitions` with its trigger built from `settings`."""
    zone = ZoneInfo(settings.schedule_timezone)
    planned = []
    for job in definitions:
        schedule: str | timedelta | None = (
            getattr(settings, job.setting) if job.setting else job.every)
        if isinstance(schedule, timedelta):
            seconds = max(1, int(schedule.total_seconds()))
            trigger: BaseTrigger = IntervalTrigger(seconds=seconds, timezone=UTC)
            trigger_text = f"every {format_duration(timedelta(seconds=seconds))}"
            grace = None  # an interval job that was missed runs once, however late
        elif isinstance(schedule, str):
            trigger = cron_trigger(schedule, zone)
            trigger_text = f"{' '.join(schedule.split())} ({settings.schedule_timezone})"
            grace = int(CRON_MISFIRE_GRACE.total_seconds())
        else:
            raise ValueError(f"job {job.name} has no schedule")
        planned.append(PlannedJob(
            name=job.name, description=job.description, trigger=trigger,
            trigger_text=trigger_text, misfire_grace_time=grace,
            setting=job.setting.upper() if job.setting else None,
            run_at_start=job.run_at_start))
    return planned


def describe_schedule(settings: ScheduleSettings, now: datetime | None = None,
                      jobs: Sequence[PlannedJob] | None = None) -> list[ScheduledJob]:
    """What runs when, from `now` (default: the current time): each job's next run in
    SCHEDULE_TIMEZONE. Interval jobs are shown one interval from `now`."""
    now = now if now is not None else datetime.now(UTC)
    zone = ZoneInfo(settings.schedule_timezone)
    described = []
    for job in jobs if jobs is not None else build_jobs(settings):
        if isinstance(job.trigger, IntervalTrigger):
            next_run: datetime | None = now + job.trigger.interval
        else:
            next_run = job.trigger.get_next_fire_time(None, now)
        described.append(ScheduledJob(
            name=job.name, description=job.description, trigger_text=job.trigger_text,
            next_run=next_run.astimezone(zone) if next_run is not None else None,
            setting=job.setting))
    return described


# --- what a job does: handlers registered by the process --------------------------------

JobHandler = Callable[[], object]

_handlers: dict[str, JobHandler] = {}
_handlers_lock = threading.Lock()
_reported_missing: set[str] = set()


def register_job_handlers(handlers: Mapping[str, JobHandler | None]) -> None:
    """Set what each named job does in this process; None removes a job's handler."""
    with _handlers_lock:
        for name, handler in handlers.items():
            if handler is None:
                _handlers.pop(name, None)
            else:
                _handlers[name] = handler


def run_job(name: str) -> None:
    """What every stored job calls: the handler registered for `name`. A job without a
    handler in this process (a newer replica scheduled it, or its service is not built
    yet) is logged and skipped. A handler's exception goes to APScheduler, which logs it."""
    with _handlers_lock:
        handler = _handlers.get(name)
        first_miss = handler is None and name not in _reported_missing
        if first_miss:
            _reported_missing.add(name)
    if handler is None:
        log.log(logging.WARNING if first_miss else logging.DEBUG,
                "job %s has no handler in this process; skipped", name)
        return
    started = time.monotonic()
    handler()
    log.info("job %s ran in %.2f s", name, time.monotonic() - started)


def install_jobs(scheduler: BaseScheduler, jobs: Sequence[PlannedJob],
                 now: datetime | None = None) -> None:
    """Make the scheduler's stored jobs match `jobs`.

    Every job is (re)written with `replace_existing`, so its trigger follows the current
    settings. A job whose trigger did not change keeps its stored next run time, so a run
    that fell due while no process led still happens (once, within its grace time); a
    changed trigger gets a fresh next run time. Jobs run at start (`reconcile`) are due
    at `now`. Stored jobs that are no longer defined are removed.
    """
    now = now if now is not None else datetime.now(UTC)
    stored = {job.id: job for job in scheduler.get_jobs()}
    for job in jobs:
        options: dict[str, Any] = {}
        old = stored.pop(job.name, None)
        if (old is not None and old.next_run_time is not None
                and _trigger_key(old.trigger) == _trigger_key(job.trigger)):
            options["next_run_time"] = old.next_run_time
        if job.run_at_start:
            options["next_run_time"] = now
        scheduler.add_job(
            JOB_FUNCTION, trigger=job.trigger, args=[job.name], id=job.name,
            name=job.description, replace_existing=True, coalesce=True, max_instances=1,
            misfire_grace_time=job.misfire_grace_time, **options)
    for name in stored:
        log.info("removing stored job %s: it is no longer defined", name)
        scheduler.remove_job(name)


def _trigger_key(trigger: BaseTrigger) -> tuple[str, str, str]:
    return (type(trigger).__qualname__, str(trigger), str(getattr(trigger, "timezone", "")))


# --- one leader among replicas ----------------------------------------------------------


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
