"""The scheduler: every schedule's fire times (frozen clocks, quarter boundaries, daylight
saving changes), what a stored job calls, and one leader among processes on SQLite and
PostgreSQL."""

from __future__ import annotations

import itertools
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import freezegun.api
import psycopg
import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from freezegun import freeze_time
from sqlalchemy import Engine

from bot import scheduler
from bot.config import Settings
from bot.domain.audit import AuditEvent
from bot.leadership import LEADER_LOCK_KEY, FileLock, Leadership, leader_lock
from bot.scheduler import (
    JOBS,
    build_jobs,
    cron_trigger,
    describe_schedule,
    install_jobs,
    register_job_handlers,
    run_job,
)
from storage.db import create_engine_for

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SCHEDULE_VARIABLES = ("SCHEDULE_TIMEZONE", "BACKUP_SCHEDULE", "PRUNE_SCHEDULE",
                      "HEALTH_SCHEDULE", "DRILL_REMINDER_SCHEDULE", "RECONCILE_INTERVAL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer's .env
    for name in SCHEDULE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def handlers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], object]]:
    """A fresh handler registry for each test."""
    registry: dict[str, Callable[[], object]] = {}
    monkeypatch.setattr(scheduler, "_handlers", registry)
    monkeypatch.setattr(scheduler, "_reported_missing", set())
    return registry


@pytest.fixture
def freezegun_keeps_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """freezegun 1.5 drops `fold` when it converts a datetime to its FakeDatetime
    (spulec/freezegun#422), so under a frozen clock the second 02:30 of a fall-back night
    turns into the first one. Keep it, for tests frozen inside a repeated hour."""

    def with_fold(value: datetime) -> freezegun.api.FakeDatetime:
        return freezegun.api.FakeDatetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, value.tzinfo, fold=value.fold)

    monkeypatch.setattr(freezegun.api, "datetime_to_fakedatetime", with_fold)


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, slack_bot_token="xoxb-1-2", slack_signing_secret="s",
                    neon_api_key="k", neon_project_id="young-sun-123456",
                    approvals_channel="C0APPROVALS", alerts_channel="C0ALERTS",
                    **overrides)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def next_runs(config: Settings) -> dict[str, datetime | None]:
    return {job.name: job.next_run for job in describe_schedule(config)}


def fire_times(trigger: BaseTrigger, start: datetime, end: datetime) -> list[datetime]:
    """The instants a scheduler fires `trigger` at between `start` and `end`, in UTC, found
    the way APScheduler does: after each run the trigger (read back from the job store, as
    a pickle, with the run time in UTC) is asked for the next time, a moment later."""
    times: list[datetime] = []
    previous, now = None, start
    while True:
        trigger = pickle.loads(pickle.dumps(trigger))
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None or fire > end:
            return times
        previous = fire.astimezone(UTC)
        times.append(previous)
        now = previous + timedelta(milliseconds=50)


# --- the jobs and their schedules --------------------------------------------------------


def test_every_job_has_a_trigger_built_from_the_defaults():
    jobs = build_jobs(settings())
    assert [j.name for j in jobs] == [d.name for d in JOBS] == [
        "reconcile", "housekeeping", "scheduled_backup", "prune", "health_report",
        "drill_reminder", "approval_reminders", "scheduled_export"]
    assert {j.name: j.trigger_text for j in jobs} == {
        "reconcile": "every 10s",
        "housekeeping": "every 10m",
        "scheduled_backup": "0 3 * * * (UTC)",
        "prune": "30 3 * * * (UTC)",
        "health_report": "0 8 * * * (UTC)",
        "drill_reminder": "0 9 1-7 1,4,7,10 mon (UTC)",
        "approval_reminders": "every 1m",
        "scheduled_export": "0 2 * * 0 (UTC)",
    }
    assert {j.name: j.setting for j in jobs}["scheduled_backup"] == "BACKUP_SCHEDULE"
    assert [j.name for j in jobs if j.run_at_start] == ["reconcile"]


@freeze_time("2026-05-13 12:00:00")  # a Wednesday
def test_default_schedule_next_runs():
    now = utc(2026, 5, 13, 12)
    assert next_runs(settings()) == {
        "reconcile": now + timedelta(seconds=10),
        "housekeeping": now + timedelta(minutes=10),
        "scheduled_backup": utc(2026, 5, 14, 3),
        "prune": utc(2026, 5, 14, 3, 30),
        "health_report": utc(2026, 5, 14, 8),
        "drill_reminder": utc(2026, 7, 6, 9),  # 1 July 2026 is a Wednesday
        "approval_reminders": now + timedelta(minutes=1),
        "scheduled_export": utc(2026, 5, 17, 2),  # Sunday
    }


@freeze_time("2026-07-01 23:30:00")  # already 2 July, 01:30, in Berlin
def test_every_schedule_is_read_in_the_configured_zone():
    runs = next_runs(settings(schedule_timezone="Europe/Berlin", reconcile_interval="30s",
                              health_schedule="15 7 * * mon-fri"))
    assert runs["scheduled_backup"] == datetime(2026, 7, 2, 3, tzinfo=BERLIN)
    assert runs["scheduled_backup"] == utc(2026, 7, 2, 1)
    assert runs["prune"] == datetime(2026, 7, 2, 3, 30, tzinfo=BERLIN)
    assert runs["health_report"] == datetime(2026, 7, 2, 7, 15, tzinfo=BERLIN)  # Thursday
    assert runs["drill_reminder"] == datetime(2026, 7, 6, 9, tzinfo=BERLIN)
    assert runs["reconcile"] == utc(2026, 7, 1, 23, 30, 30)
    assert all(run is not None and run.tzinfo == BERLIN for run in runs.values())


def test_the_schedule_view_is_plain_data():
    [backup] = [j for j in describe_schedule(settings(), now=utc(2026, 1, 1))
                if j.name == "scheduled_backup"]
    assert backup.description == "take a backup of the default branch"
    assert backup.trigger_text == "0 3 * * * (UTC)"
    assert backup.next_run == utc(2026, 1, 1, 3)
    assert backup.setting == "BACKUP_SCHEDULE"


# --- the drill reminder: the first Monday of each quarter ------------------------------


@pytest.mark.parametrize(("frozen", "expected"), [
    ("2026-12-20 00:00:00", utc(2027, 1, 4, 9)),  # across the year's end
    ("2027-01-04 08:59:59", utc(2027, 1, 4, 9)),  # that very morning
    ("2027-01-04 09:01:00", utc(2027, 4, 5, 9)),  # just missed: next quarter
    ("2028-09-30 12:00:00", utc(2028, 10, 2, 9)),  # 1 October 2028 is a Sunday
    ("2028-12-31 23:00:00", utc(2029, 1, 1, 9)),  # 1 January 2029 is a Monday
    ("2029-01-01 09:00:01", utc(2029, 4, 2, 9)),
])
def test_the_drill_reminder_comes_on_the_first_monday_of_each_quarter(frozen, expected):
    with freeze_time(frozen):
        assert next_runs(settings())["drill_reminder"] == expected


def test_the_drill_reminder_fires_four_times_a_year_in_the_configured_zone():
    [job] = [j for j in build_jobs(settings(schedule_timezone="Europe/Berlin"))
             if j.name == "drill_reminder"]
    fires = fire_times(job.trigger, utc(2027, 1, 1), utc(2028, 1, 1))
    local = [f.astimezone(BERLIN) for f in fires]
    assert [(d.month, d.day, d.hour, d.minute) for d in local] == [
        (1, 4, 9, 0), (4, 5, 9, 0), (7, 5, 9, 0), (10, 4, 9, 0)]
    assert all(d.strftime("%a") == "Mon" for d in local)
    assert fire_times(job.trigger, utc(2028, 1, 1), utc(2028, 1, 10)) == [utc(2028, 1, 3, 8)]


def test_weekday_numbers_are_crons_sunday_is_zero():
    monday_to_sunday = (utc(2026, 1, 5), utc(2026, 1, 12))  # 5 January 2026 is a Monday

    def days(expression: str) -> list[str]:
        return [f.strftime("%a") for f in fire_times(cron_trigger(expression, "UTC"),
                                                     *monday_to_sunday)]

    assert days("0 9 * * 1") == ["Mon"]
    assert days("0 9 * * 0") == days("0 9 * * sun") == ["Sun"]
    assert days("0 9 * * 1-5") == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert days("0 9 * * mon-fri") == days("0 9 * * 1-5")
    # plain APScheduler 3 counts from Monday = 0: its "1" is a Tuesday
    plain = CronTrigger.from_crontab("0 9 * * 1", timezone=UTC)
    assert [f.strftime("%a") for f in fire_times(plain, *monday_to_sunday)] == ["Tue"]


# --- daylight saving time ----------------------------------------------------------------


def test_berlin_spring_forward_a_time_that_does_not_exist_runs_once_an_hour_later():
    # 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day
    trigger = cron_trigger("30 2 * * *", "Europe/Berlin")
    fires = fire_times(trigger, utc(2026, 3, 28), utc(2026, 3, 31))
    assert fires == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert [f.astimezone(BERLIN).strftime("%d %H:%M %Z") for f in fires] == [
        "28 02:30 CET", "29 03:30 CEST", "30 02:30 CEST"]
    # counted afresh at 03:15 CEST (a restart, a new leader), that day's run still comes;
    # plain APScheduler 3.11 compares wall-clock times, finds 02:30 past and skips the day
    at_0315 = utc(2026, 3, 29, 1, 15)
    assert trigger.get_next_fire_time(None, at_0315) == utc(2026, 3, 29, 1, 30)
    plain = CronTrigger.from_crontab("30 2 * * *", timezone=BERLIN)
    assert plain.get_next_fire_time(None, at_0315) == utc(2026, 3, 30, 0, 30)


def test_berlin_fall_back_a_time_that_happens_twice_runs_once():
    # 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    trigger = cron_trigger("30 2 * * *", "Europe/Berlin")
    fires = fire_times(trigger, utc(2026, 10, 24), utc(2026, 10, 27))
    assert fires == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30),
                     utc(2026, 10, 26, 1, 30)]
    assert [f.astimezone(BERLIN).strftime("%d %H:%M %Z") for f in fires] == [
        "24 02:30 CEST", "25 02:30 CEST", "26 02:30 CET"]
    # what plain APScheduler 3.11 does: both 02:30s, an hour apart
    plain = CronTrigger.from_crontab("30 2 * * *", timezone=BERLIN)
    assert fire_times(plain, utc(2026, 10, 25), utc(2026, 10, 25, 23)) == [
        utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]


@pytest.mark.usefixtures("freezegun_keeps_fold")
def test_berlin_fall_back_between_the_two_times_the_next_run_is_the_next_day():
    config = settings(schedule_timezone="Europe/Berlin", backup_schedule="30 2 * * *")
    with freeze_time("2026-10-25 00:45:00"):  # 02:45 CEST, before the second 02:30
        assert next_runs(config)["scheduled_backup"] == utc(2026, 10, 26, 1, 30)
    with freeze_time("2026-03-29 01:00:00"):  # the very instant 02:00 CET is 03:00 CEST
        assert next_runs(config)["scheduled_backup"] == utc(2026, 3, 29, 1, 30)


def test_an_hourly_job_on_the_fall_back_day_runs_at_each_wall_clock_time_once():
    fires = fire_times(cron_trigger("30 * * * *", "Europe/Berlin"),
                       utc(2026, 10, 24, 23), utc(2026, 10, 25, 3, 59))
    assert [f.astimezone(BERLIN).strftime("%H:%M %Z") for f in fires] == [
        "01:30 CEST", "02:30 CEST", "03:30 CET", "04:30 CET"]


def test_new_york_both_changes():
    # 8 March 2026: 02:00 EST becomes 03:00 EDT; 1 November 2026: 02:00 EDT becomes 01:00 EST
    spring = fire_times(cron_trigger("30 2 * * *", "America/New_York"),
                        utc(2026, 3, 7), utc(2026, 3, 10))
    assert [f.astimezone(NEW_YORK).strftime("%d %H:%M %Z") for f in spring] == [
        "07 02:30 EST", "08 03:30 EDT", "09 02:30 EDT"]
    fall = fire_times(cron_trigger("30 1 * * *", "America/New_York"),
                      utc(2026, 10, 31), utc(2026, 11, 3))
    assert [f.astimezone(NEW_YORK).strftime("%d %H:%M %Z") for f in fall] == [
        "31 01:30 EDT", "01 01:30 EDT", "02 01:30 EST"]
    # the default backup time, 03:00, is outside both changes: one a day, 23 h apart
    # across the spring change
    daily = fire_times(cron_trigger("0 3 * * *", "America/New_York"),
                       utc(2026, 3, 7), utc(2026, 3, 9, 12))
    assert [b - a for a, b in itertools.pairwise(daily)] == [timedelta(hours=23),
                                                             timedelta(hours=24)]


@pytest.mark.usefixtures("freezegun_keeps_fold")
@freeze_time("2026-11-01 05:45:00")  # 01:45 EDT, between New York's two 01:30s
def test_new_york_schedule_view_on_the_fall_back_day():
    runs = next_runs(settings(schedule_timezone="America/New_York",
                              prune_schedule="30 1 * * *"))
    assert runs["prune"] == datetime(2026, 11, 2, 1, 30, tzinfo=NEW_YORK)
    assert runs["scheduled_backup"] == datetime(2026, 11, 1, 3, tzinfo=NEW_YORK)


# --- what a stored job calls -------------------------------------------------------------


def test_run_job_calls_the_registered_handler(handlers, caplog):
    calls: list[str] = []
    register_job_handlers({"reconcile": lambda: calls.append("reconcile"),
                           "prune": None})
    with caplog.at_level(logging.INFO, logger="lifeguard.scheduler"):
        run_job("reconcile")
    assert calls == ["reconcile"]
    assert "job reconcile ran" in caplog.text
    assert "prune" not in handlers


def test_a_job_without_a_handler_is_logged_once_and_skipped(caplog):
    with caplog.at_level(logging.DEBUG, logger="lifeguard.scheduler"):
        run_job("health_report")
        run_job("health_report")
        run_job("no_such_job")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["job health_report has no handler in this process; skipped",
                        "job no_such_job has no handler in this process; skipped"]


def test_a_failing_handler_raises_to_apscheduler_which_logs_it():
    def broken() -> None:
        raise RuntimeError("boom")

    register_job_handlers({"prune": broken})
    with pytest.raises(RuntimeError, match="boom"):
        run_job("prune")


# --- the job store ----------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'lifeguard.db'}")
    yield engine
    engine.dispose()


def paused_scheduler(engine: Engine) -> BackgroundScheduler:
    sched = BackgroundScheduler(timezone=UTC, jobstores={
        "default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")})
    sched.start(paused=True)
    return sched


def test_jobs_are_stored_as_text_references_and_follow_the_settings(sqlite_engine):
    first = paused_scheduler(sqlite_engine)
    try:
        install_jobs(first, build_jobs(settings()))
        first.add_job("bot.scheduler:run_job", "interval", minutes=5, args=["retired"],
                      id="retired")
        stored = {job.id: job for job in first.get_jobs()}
        assert set(stored) == {d.name for d in JOBS} | {"retired"}
        assert all(job.func_ref == "bot.scheduler:run_job" and job.args == (job.id,)
                   for job in stored.values())
        assert stored["prune"].misfire_grace_time == 6 * 3600
        assert stored["reconcile"].misfire_grace_time is None
        assert stored["scheduled_backup"].coalesce and stored["prune"].max_instances == 1
        backup_before = stored["scheduled_backup"].next_run_time
    finally:
        first.shutdown(wait=False)

    # another start (a new leader) with one schedule changed
    second = paused_scheduler(sqlite_engine)
    try:
        later = datetime.now(UTC) + timedelta(hours=1)
        install_jobs(second, build_jobs(settings(prune_schedule="0 4 * * *")), now=later)
        stored = {job.id: job for job in second.get_jobs()}
        assert "retired" not in stored
        assert stored["scheduled_backup"].next_run_time == backup_before  # kept
        assert str(stored["prune"].trigger) == str(cron_trigger("0 4 * * *", "UTC"))
        assert stored["prune"].next_run_time.hour == 4
        assert stored["reconcile"].next_run_time == later  # runs at once
    finally:
        second.shutdown(wait=False)


# --- one leader ------------------------------------------------------------------------


class Leaders:
    """Leadership objects on one store, stopped at the end of the test."""

    def __init__(self, engine: Engine, interval: timedelta) -> None:
        self.engine = engine
        self.interval = interval
        self.audit: list[AuditEvent] = []
        self.made: list[Leadership] = []

    def new(self, process: str) -> Leadership:
        leadership = Leadership(self.engine, build_jobs(settings()), interval=self.interval,
                                record=self.audit.append, process=process)
        self.made.append(leadership)
        return leadership

    def stop_all(self) -> None:
        for leadership in self.made:
            leadership.stop()


@pytest.fixture
def leaders_on(request: pytest.FixtureRequest) -> Iterator[Callable[..., Leaders]]:
    made: list[tuple[Leaders, Engine]] = []

    def on(database_url: str, interval: float = 0.3) -> Leaders:
        engine = create_engine_for(database_url)
        leaders = Leaders(engine, timedelta(seconds=interval))
        made.append((leaders, engine))
        return leaders

    yield on
    for leaders, engine in made:
        leaders.stop_all()
        engine.dispose()


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds it took for `condition` to hold; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def test_sqlite_one_of_two_leads_and_the_other_takes_over(leaders_on, tmp_path, handlers):
    ran = threading.Event()
    register_job_handlers({"reconcile": ran.set})
    leaders = leaders_on(f"sqlite:///{tmp_path / 'lifeguard.db'}")
    first, second = leaders.new("host:1"), leaders.new("host:2")

    assert first.tick() is True
    assert second.tick() is False
    assert first.is_leader and not second.is_leader
    assert ran.wait(5), "the leader runs reconcile at once"
    assert (tmp_path / "lifeguard.db.scheduler-lock").read_text() == "host:1\n"
    assert [(e.actor, e.action, e.subject, e.details) for e in leaders.audit] == [
        ("system", "scheduler.leader", "scheduler", {"process": "host:1"})]
    assert first.tick() is True and second.tick() is False  # still the same

    first.stop()
    assert not first.is_leader
    assert second.tick() is True
    assert first.tick() is False  # a stopped Leadership does not come back
    assert [e.details["process"] for e in leaders.audit] == ["host:1", "host:2"]


def test_sqlite_the_other_takes_over_within_an_interval(leaders_on, tmp_path):
    leaders = leaders_on(f"sqlite:///{tmp_path / 'lifeguard.db'}")
    first, second = leaders.new("host:1"), leaders.new("host:2")
    first.start()
    second.start()
    assert first.is_leader and not second.is_leader
    time.sleep(3 * leaders.interval.total_seconds())
    assert first.is_leader and not second.is_leader

    first.stop()
    took = wait_until(lambda: second.is_leader, timeout=5)
    assert took <= leaders.interval.total_seconds() + 0.2
    assert len(leaders.audit) == 2


def advisory_lock_holder(postgres_url: str) -> int | None:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s", (LEADER_LOCK_KEY,)).fetchone()
        return row[0] if row else None


def terminate(postgres_url: str, pid: int) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    wait_until(lambda: advisory_lock_holder(postgres_url) != pid, timeout=5)


def test_postgres_one_of_two_leads_and_the_other_takes_over(leaders_on, postgres_url):
    leaders = leaders_on(postgres_url)
    first, second = leaders.new("host:1"), leaders.new("host:2")
    assert first.tick() is True
    assert second.tick() is False
    holder = advisory_lock_holder(postgres_url)
    assert holder is not None

    first.stop()
    assert advisory_lock_holder(postgres_url) is None  # released, not just abandoned
    assert second.tick() is True
    assert advisory_lock_holder(postgres_url) not in (None, holder)
    assert [e.details["process"] for e in leaders.audit] == ["host:1", "host:2"]


def test_postgres_a_leader_whose_connection_dies_steps_down(leaders_on, postgres_url):
    leaders = leaders_on(postgres_url)
    first, second = leaders.new("host:1"), leaders.new("host:2")
    assert first.tick() is True and second.tick() is False
    scheduler_of_first = first.scheduler
    assert scheduler_of_first is not None and scheduler_of_first.running

    terminate(postgres_url, advisory_lock_holder(postgres_url))  # type: ignore[arg-type]
    assert second.tick() is True  # the lock went with the session
    assert first.tick() is False  # its check fails: it steps down
    assert not first.is_leader and not scheduler_of_first.running
    assert first.tick() is False and second.tick() is True
    assert [e.details["process"] for e in leaders.audit] == ["host:1", "host:2"]


def test_postgres_the_other_takes_over_within_an_interval(leaders_on, postgres_url):
    # An interval of a second, so that "within an interval" is not lost in the noise of a
    # loaded machine (the suite runs in parallel workers).
    leaders = leaders_on(postgres_url, interval=1.0)
    first, second = leaders.new("host:1"), leaders.new("host:2")
    first.start()
    second.start()
    assert first.is_leader and not second.is_leader
    interval = leaders.interval.total_seconds()

    terminate(postgres_url, advisory_lock_holder(postgres_url))  # type: ignore[arg-type]
    took = wait_until(lambda: second.is_leader, timeout=5)
    # The lock is taken at the second's next round, at most an interval away; then its
    # scheduler starts on the store, which on a loaded machine takes up to another.
    assert took <= 2 * interval
    wait_until(lambda: not first.is_leader, timeout=interval + 1)
    time.sleep(3 * interval)
    assert second.is_leader and not first.is_leader
    assert [e.details["process"] for e in leaders.audit] == ["host:1", "host:2"]


def test_the_lock_file_sits_next_to_the_sqlite_database(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        lock = leader_lock(engine, "me:1")
        assert isinstance(lock, FileLock)
        assert lock.path == tmp_path / "store.db.scheduler-lock"
    finally:
        engine.dispose()
