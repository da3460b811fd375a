"""Table restore copy speed and memory, side by side, on the test PostgreSQL.

Run: `python -m pytest -q -s tests/bench/test_table_copy.py`. Between two databases of the
same server it times, median of ROUNDS, on a table of ROWS rows (default 1,000,000):

- the bare pipe, `psql -c "COPY (SELECT …) TO STDOUT" | psql -c "COPY … FROM STDIN"`:
  the floor, what any copy must at least do;
- Lifeguard's copy (bot.services.table_copy.copy_table, the step an approved table
  restore runs): a new table made, the rows streamed from the source's read-only
  snapshot into it, counted on both sides and in the table, committed.

Each Lifeguard copy runs in a child process (`python -c`, imports excluded from its time)
that reports its peak RSS (VmHWM); it is run on a table of ROWS / 4 rows and of ROWS rows,
so the memory of 1× and 4× rows is shown side by side. Goals (issue 9): ≥ 0.8× the bare
pipe's rows per second, peak RSS flat. `BENCH_TABLE_ROWS` sets ROWS.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import PostgresServer

ROUNDS = 3
ROWS = int(os.environ.get("BENCH_TABLE_ROWS", "1000000"))
ROOT = Path(__file__).resolve().parents[2]
COLUMNS = "id, customer_id, status, amount, note, created_at"
TABLE = """
CREATE TABLE {name} (id bigint PRIMARY KEY, customer_id bigint, status text,
  amount numeric(12, 2), note text, created_at timestamptz);
"""
FILL = """
INSERT INTO {name} SELECT g, 1 + g % 50000, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
  (g % 100000) / 100.0, md5(g::text), '2025-01-01'::timestamptz + g * interval '1 second'
  FROM generate_series(1, {rows}) g;
"""

COPY_CHILD = textwrap.dedent("""
    import json, sys, time
    from bot.domain.table_restores import TableCopy, TableMode
    from bot.services.table_copy import copy_table

    source, target, table, into = sys.argv[1:5]
    columns = ("id", "customer_id", "status", "amount", "note", "created_at")
    plan = TableCopy(schema="public", table=table, mode=TableMode.NEW, condition=None,
                     target_table=into)
    began = time.perf_counter()
    result = copy_table(source, target, plan, columns, started=lambda xid: None,
                        checked=lambda result: None)
    seconds = time.perf_counter() - began
    peak = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "rows": result.copied, "peak_kb": peak}))
""")


def database(postgres: PostgresServer, name: str) -> str:
    return postgres.create_database(name)


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def run_copy(source: str, target: str, table: str, into: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", COPY_CHILD, source, target, table, into],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures: dict[str, float] = json.loads(done.stdout)
    execute(target, f"DROP TABLE {into}")
    return figures


def bare_pipe(psql: str, source: str, target: str, table: str) -> float:
    execute(target, TABLE.format(name="bare"))
    command = (f"{psql} -X -q -d '{source}' -c 'COPY (SELECT {COLUMNS} FROM {table}) TO STDOUT'"
               f" | {psql} -X -q -d '{target}' -c 'COPY bare ({COLUMNS}) FROM STDIN'")
    began = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, capture_output=True)
    seconds = time.perf_counter() - began
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM bare").fetchone() == (ROWS,)
    execute(target, "DROP TABLE bare")
    return seconds


@pytest.mark.bench
def test_table_copy_against_a_bare_copy_pipe(postgres: PostgresServer) -> None:
    psql = shutil.which("psql") or str(postgres.bindir / "psql")
    source = database(postgres, "bench_table_source")
    target = database(postgres, "bench_table_live")
    for name, rows in (("orders", ROWS), ("orders_quarter", ROWS // 4)):
        execute(source, TABLE.format(name=name) + FILL.format(name=name, rows=rows))
    execute(source, "VACUUM ANALYZE")

    bare, ours = [], []
    for round_number in range(ROUNDS):
        bare.append(bare_pipe(psql, source, target, "orders"))
        ours.append(run_copy(source, target, "orders", f"copied_{round_number}"))
    quarter = run_copy(source, target, "orders_quarter", "copied_quarter")
    assert all(copy["rows"] == ROWS for copy in ours) and quarter["rows"] == ROWS // 4

    bare_rate = ROWS / statistics.median(bare)
    our_rate = ROWS / statistics.median(c["seconds"] for c in ours)
    peak_1x = quarter["peak_kb"] / 1000
    peak_4x = max(c["peak_kb"] for c in ours) / 1000

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print()
    print(f"table copy bench: {ROWS} rows ({COLUMNS}), two databases of one server, median "
          f"of {ROUNDS} rounds, 2 shared cores")
    print(f"  psql COPY TO STDOUT | psql COPY FROM STDIN  {bare_rate:10,.0f} rows/s "
          f"({statistics.median(bare):.2f} s)")
    print(f"  Lifeguard's copy (new table, counted)       {our_rate:10,.0f} rows/s "
          f"({statistics.median(c['seconds'] for c in ours):.2f} s)  "
          f"{our_rate / bare_rate:4.2f}× the bare pipe (goal ≥ 0.8×: "
          f"{verdict(our_rate / bare_rate >= 0.8)})")
    print(f"  peak RSS of the copying process: {ROWS // 4} rows {peak_1x:.0f} MB, "
          f"{ROWS} rows {peak_4x:.0f} MB (goal flat: {verdict(peak_4x - peak_1x < 10)})")
