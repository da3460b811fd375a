"""Jobs that run on a clock (`Leadership` in bot/leadership.py runs them on one replica).

The jobs
--------
`JOBS` names every job and where its schedule comes from: an interval
(`reconcile` every RECONCILE_INTERVAL, `housekeeping` every 10 min, `approval_reminders`
every minute) or a 5-field cron expression from the settings, read in SCHEDULE_TIMEZONE
(`scheduled_backup` BACKUP_SCHEDULE, `prune` PRUNE_SCHEDULE, `health_report`
HEALTH_SCHEDULE, `drill_reminder` DRILL_REMINDER_SCHEDULE, `scheduled_export`
EXPORT_SCHEDULE). `build_jobs(settings)` turns
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
holds the function by its text reference `bot.scheduler:run_job`, the job's name and its
trigger, pickled by class path (`bot.scheduler.WallClockCronTrigger`): both stay in this
module so stored jobs keep loading. `run_job(name)` calls the handler the process
registered with `register_job_handlers` at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.domain.cron import cron_weekdays, repeated_wall_time
from bot.domain.durations import format_duration
from bot.logs import log_context, new_job_id

log = logging.getLogger("lifeguard.scheduler")

JOB_FUNCTION = "bot.scheduler:run_job"
JOBS_TABLE = "apscheduler_jobs"
HOUSEKEEPING_INTERVAL = timedelta(minutes=10)
APPROVAL_REMINDERS_INTERVAL = timedelta(minutes=1)
# A cron job that fell due while no replica was leading (a deploy, every replica down)
# still runs, once, if a leader appears within this long; later it waits for its next time.
CRON_MISFIRE_GRACE = timedelta(hours=6)
# The longest a clock change moves the wall clock (one hour nearly everywhere).
MAX_CLOCK_CHANGE = timedelta(hours=2)


class ScheduleSettings(Protocol):
    """The settings the schedules are built from (bot.config.Settings has them)."""

    schedule_timezone: str
    backup_schedule: str
    prune_schedule: str
    health_schedule: str
    drill_reminder_schedule: str
    reconcile_interval: timedelta
    export_schedule: str


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
    JobDefinition("scheduled_export", "export the default branch to EXPORT_URL, then "
                  "delete the exports retention no longer keeps (off while EXPORT_URL is "
                  "unset)", setting="export_schedule"),
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


# Stored jobs pickle this class as bot.scheduler.WallClockCronTrigger: moving it would
# orphan them, so it stays here and its pure rules live in bot.domain.cron.
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
            if instant >= start and not repeated_wall_time(local):
                return local
            fire = super().get_next_fire_time(local, instant + tick)
        return None


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
    with log_context(job_id=new_job_id(), job=name):  # every line of the run carries it
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
