"""Two real bots on one PostgreSQL store: one runs the scheduled jobs; when it is killed,
the other takes over within an interval."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.bot_process import BotProcess, audit_entries
from tests.support.postgres import PostgresServer

INTERVAL = 1.0  # RECONCILE_INTERVAL, seconds
RAN = "job reconcile ran"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def leader_processes(env: dict[str, str]) -> list[str]:
    return [str(e["details"]["process"]) for e in audit_entries(env)  # type: ignore[index]
            if e["action"] == "scheduler.leader"]


def pid_of(process: str) -> int:
    return int(process.rsplit(":", 1)[1])


def test_one_bot_runs_the_jobs_and_another_takes_over_when_it_is_killed(
        bot_env: dict[str, str], postgres: PostgresServer) -> None:
    env = {**bot_env, "DATABASE_URL": postgres.create_database("leader_test"),
           "RECONCILE_INTERVAL": f"{INTERVAL:.0f}s"}
    first, second = BotProcess(env), BotProcess(env)
    try:
        first.start()
        second.start()
        assert first.process and second.process
        wait_for(lambda: first.log().count(RAN) >= 3, 10 * INTERVAL, "the leader's jobs run")

        # one leader, the first to start; only its process runs jobs
        [leader] = leader_processes(env)
        assert pid_of(leader) == first.process.pid
        assert RAN not in second.log()
        assert "is the scheduler leader" not in second.log()

        first.kill()
        killed_at = time.monotonic()
        wait_for(lambda: "is the scheduler leader" in second.log(), 10 * INTERVAL,
                 "the other bot becomes leader")
        took_over = time.monotonic() - killed_at
        wait_for(lambda: RAN in second.log(), 5 * INTERVAL, "the new leader's jobs run")
        assert took_over <= 2 * INTERVAL, f"took over after {took_over:.2f} s"

        assert [pid_of(p) for p in leader_processes(env)] == [first.process.pid,
                                                             second.process.pid]
        runs_before = second.log().count(RAN)
        wait_for(lambda: second.log().count(RAN) >= runs_before + 2, 5 * INTERVAL,
                 "the new leader keeps running jobs")
    finally:
        first.stop()
        second.stop()
