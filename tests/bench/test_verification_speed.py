"""Speed of verify_branch on 50 tables, side by side with the bare counting it must do.

Run: `python -m pytest -q -s tests/bench/test_verification_speed.py`. The product goal is
"≤ 1 s plus the counting itself": the bare counting is a plain loop of `SELECT count(*)`
over the 50 tables on one already-open connection per side, the source then the target.
Prints medians over a few rounds; figures, not assertions on absolute times.
`BENCH_VERIFY_SCALE=10` makes every table ten times bigger.
"""

from __future__ import annotations

import os
import statistics
import time

import psycopg
import pytest
from psycopg import sql

from bot.services.verification import verify_branch
from tests.support.postgres import PostgresServer

TABLES = 50
ROUNDS = 7
SCALE = int(os.environ.get("BENCH_VERIFY_SCALE", "1"))
GOAL_SECONDS = 1.0


def rows_of(number: int) -> int:
    """A few hundred to a few thousand rows, different for every table."""
    return (300 + (number * 173) % 2700) * SCALE


def names() -> list[str]:
    return [f"table_{n:02d}" for n in range(1, TABLES + 1)]


def bare_count(url: str) -> float:
    """Seconds for the counting alone on one open connection, table after table."""
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        for name in names():
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
                         ).fetchone()
        return time.perf_counter() - began


@pytest.mark.bench
def test_verification_overhead_over_bare_counting(postgres: PostgresServer) -> None:
    source = postgres.create_database("bench_verify_source")
    with psycopg.connect(source, autocommit=True) as conn:
        for number, name in enumerate(names(), start=1):
            table = sql.Identifier(name)
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text, "
                                 "created_at timestamptz NOT NULL)").format(table))
            conn.execute(sql.SQL(
                "INSERT INTO {} SELECT g, md5(g::text), '2026-11-21 14:00:00+00'::timestamptz"
                " - g * interval '1 second' FROM generate_series(1, %s) g").format(table),
                (rows_of(number),))
        conn.execute("VACUUM ANALYZE")  # as a long-lived database would be
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_verify_target WITH (FORCE)")
        conn.execute("CREATE DATABASE bench_verify_target TEMPLATE bench_verify_source")
    target = postgres.url("bench_verify_target")

    verify_times: list[float] = []
    wall_times: list[float] = []
    count_times: list[float] = []
    for round_number in range(ROUNDS + 1):  # the first round warms caches and is dropped
        began = time.perf_counter()
        report = verify_branch(target, source, compared_with="backup-bench")
        wall = time.perf_counter() - began
        counting = bare_count(source) + bare_count(target)
        assert report.ok, report.summary()
        assert report.compared_tables == TABLES and all(t.exact for t in report.tables)
        if round_number:
            verify_times.append(report.seconds)
            wall_times.append(wall)
            count_times.append(counting)

    verification = statistics.median(verify_times)
    counting = statistics.median(count_times)
    overhead = verification - counting
    total_rows = sum(rows_of(n) for n in range(1, TABLES + 1))
    print()
    print(f"verification bench: {TABLES} tables, {total_rows} rows per side, "
          f"median of {ROUNDS} rounds")
    print(f"  verify_branch        {verification * 1000:8.1f} ms  (report.seconds; "
          f"wall {statistics.median(wall_times) * 1000:.1f} ms, "
          f"min {min(verify_times) * 1000:.1f} ms)")
    print(f"  bare counting        {counting * 1000:8.1f} ms  (50 × count(*) on the source, "
          f"then on the target, connections already open)")
    verdict = "met" if overhead <= GOAL_SECONDS else "NOT met"
    print(f"  overhead             {overhead * 1000:8.1f} ms  (verification − counting; "
          f"goal ≤ {GOAL_SECONDS * 1000:.0f} ms: {verdict})")
    print(f"  summary: {report.summary()}")
