"""Work that runs after Slack has been acknowledged, on a bounded pool of threads.

Bolt's own listener threads only parse, record and acknowledge; anything that waits on
Neon runs here, so a slow Neon never delays the acknowledgement of the next command.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from bot.logs import log_context, new_job_id

log = logging.getLogger("lifeguard.background")


class Background:
    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lifeguard-work")

    def run(self, job: Callable[[], object], what: str) -> Future[object]:
        """Run `job` on the pool. Every line it logs carries a job id of its own and
        `what`, besides the ids of whoever submitted it (a request's, say)."""
        job_id = new_job_id()

        def logged() -> object:
            with log_context(job_id=job_id, job=what):
                try:
                    return job()
                except Exception:
                    log.exception("background job failed: %s", what)
                    raise

        return self._pool.submit(contextvars.copy_context().run, logged)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
