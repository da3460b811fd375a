"""Jobs that run on a clock: the reconciler, which moves unfinished work forward.

APScheduler 3's BackgroundScheduler runs them in a thread of the bot process; each job runs
at most once at a time and missed runs are coalesced, so a slow pass never piles up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("lifeguard.scheduler")


def build_scheduler(*, reconcile: Callable[[], None], reconcile_interval: timedelta,
                    housekeeping: Callable[[], None],
                    housekeeping_interval: timedelta = timedelta(minutes=10),
                    ) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 60})
    scheduler.add_job(reconcile, "interval", seconds=reconcile_interval.total_seconds(),
                      id="reconcile", name="move unfinished work forward",
                      # first pass at once: work interrupted by a restart resumes now
                      next_run_time=datetime.now(UTC))
    scheduler.add_job(housekeeping, "interval", seconds=housekeeping_interval.total_seconds(),
                      id="housekeeping", name="record backups Neon has expired")
    return scheduler

