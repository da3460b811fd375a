"""Export speed, size and memory, side by side in one run, on the test PostgreSQL.

Run: `python -m pytest -q -s tests/bench/test_export_pipeline.py`. On one database
(the 4× one) it times, median of ROUNDS:

- `pg_dump -Fc -Z0 > /dev/null`: the floor, what any export must at least do;
- the export: the snapshot (exact row counts of every table in it), pg_dump 18 through
  zstd and age, SHA-256, multipart upload to the S3 server on loopback (moto, in this
  process), completed; and the same with the upload replaced by a null sink, which
  separates the pipeline from moto's own cost (a Python server on the same 2 cores);
- the runbooks' `pg_dump | gzip | openssl enc -aes-256-cbc -pbkdf2 > /dev/null`;
- moto alone: an upload of as many random bytes as the export wrote, through the same
  multipart Upload, which shows what the store costs by itself.

Each export runs in a child process (`python -c`, imports excluded from its time), which
reports its own peak RSS (VmHWM; getrusage would count the forked test process's memory,
moto's objects included, from before the exec); it is run on a database 1× and 4× the
size. pg_dump's own peak RSS is a few MB whatever the size. Goals (issue 8):
export ≤ 1.15× pg_dump, ≥ 3× faster than the gzip pipeline, peak RSS flat and < 150 MB.
`BENCH_EXPORT_ROWS` sets the 1× database's order rows (default 400,000: ~70 MB of
pg_dump output; 4× is ~280 MB).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pyrage
import pytest

from bot.exports import find_tools
from tests.support.postgres import PostgresServer
from tests.support.s3 import shared_s3

ROUNDS = 5
ROWS = int(os.environ.get("BENCH_EXPORT_ROWS", "400000"))
ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000

# Realistic rows: numbers, times, short repeated words and hex that compresses about 2:1.
FILL = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email text, created_at timestamptz);
INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com',
  '2025-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, %(customers)s) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers,
  status text, amount numeric(12, 2), note text, created_at timestamptz);
INSERT INTO orders SELECT g, 1 + g %% %(customers)s,
  (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g %% 4], (g %% 100000) / 100.0,
  md5(g::text), '2025-01-01'::timestamptz + g * interval '1 second'
  FROM generate_series(1, %(orders)s) g;
CREATE SCHEMA audit;
CREATE TABLE audit.events (id bigint PRIMARY KEY, order_id bigint, kind text, payload jsonb);
INSERT INTO audit.events SELECT g, g, 'status-change',
  jsonb_build_object('from', 'new', 'to', 'paid', 'by', 'user-' || (g %% 50))
  FROM generate_series(1, %(orders)s / 2) g;
"""

EXPORT_CHILD = textwrap.dedent("""
    import json, sys, time
    from bot.exports import ObjectStore, dump, find_tools, snapshot

    class Null:
        def write(self, data):
            return len(data)

    url, database, recipient, bucket, endpoint, key = sys.argv[1:7]
    tools = find_tools()
    began = time.perf_counter()
    with snapshot(url) as taken:
        counted = time.perf_counter() - began
        if bucket == "-":
            result = dump(url, database, snapshot_id=taken.snapshot_id,
                          recipients=[recipient], sink=Null(), tools=tools)
        else:
            store = ObjectStore(f"s3://{bucket}", endpoint_url=endpoint)
            with store.upload(key) as sink:
                result = dump(url, database, snapshot_id=taken.snapshot_id,
                              recipients=[recipient], sink=sink, tools=tools)
                sink.complete()
    seconds = time.perf_counter() - began
    peak = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "snapshot_seconds": counted,
                      "size": result.size, "peak_kb": peak}))
""")


UPLOAD_CHILD = textwrap.dedent("""
    import json, os, sys, time
    from bot.exports import ObjectStore

    bucket, endpoint, key, size = sys.argv[1:5]
    data = os.urandom(int(size))
    store = ObjectStore(f"s3://{bucket}", endpoint_url=endpoint)
    began = time.perf_counter()
    with store.upload(key) as sink:
        for start in range(0, len(data), 65536):
            sink.write(data[start:start + 65536])
        completing = time.perf_counter()
        sink.complete()
    ended = time.perf_counter()
    print(json.dumps({"seconds": ended - began, "complete_seconds": ended - completing}))
""")


def fill(postgres: PostgresServer, name: str, orders: int) -> str:
    url = postgres.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL % {"customers": max(orders // 20, 1), "orders": orders})
        conn.execute("VACUUM ANALYZE")
    return url


def timed_shell(command: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                          text=True, check=True)
    return time.perf_counter() - began, done.stdout.strip()


def run_export(url: str, database: str, recipient: str, bucket: str, endpoint: str,
               key: str) -> dict[str, float]:
    return run_child(EXPORT_CHILD, url, database, recipient, bucket, endpoint, key)


def run_child(script: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    assert child.wait() == 0, err.decode()
    figures: dict[str, float] = json.loads(out)
    return figures


@pytest.mark.bench
def test_export_against_pg_dump_and_the_gzip_pipeline(postgres: PostgresServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tools = find_tools()
    s3 = shared_s3()
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)
    bucket = s3.create_bucket()
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    small = fill(postgres, "bench_export_1x", ROWS)
    large = fill(postgres, "bench_export_4x", ROWS * 4)
    pg_dump = str(tools.pg_dump)

    floor, runbook, exports, null_exports, uploads = [], [], [], [], []
    raw_size = gzip_size = 0
    for round_number in range(ROUNDS):
        seconds, out = timed_shell(f"{pg_dump} -Fc -Z0 -d '{large}' | wc -c")
        floor.append(seconds)
        raw_size = int(out)
        seconds, out = timed_shell(
            f"{pg_dump} -d '{large}' | gzip | openssl enc -aes-256-cbc -pbkdf2 -pass pass:x "
            "| wc -c")
        runbook.append(seconds)
        gzip_size = int(out)
        exports.append(run_export(large, "bench_export_4x", recipient, bucket, s3.endpoint,
                                  f"4x/{round_number}.dump.zst.age"))
        null_exports.append(run_export(large, "bench_export_4x", recipient, "-", "-", "-"))
        uploads.append(run_child(UPLOAD_CHILD, bucket, s3.endpoint, f"alone/{round_number}",
                                 str(int(exports[-1]["size"]))))
    small_export = run_export(small, "bench_export_1x", recipient, bucket, s3.endpoint,
                              "1x/0.dump.zst.age")

    base = statistics.median(floor)
    export = statistics.median(e["seconds"] for e in exports)
    null_export = statistics.median(e["seconds"] for e in null_exports)
    counting = statistics.median(e["snapshot_seconds"] for e in exports)
    gzip_pipeline = statistics.median(runbook)
    upload = statistics.median(u["seconds"] for u in uploads)
    completing = statistics.median(u["complete_seconds"] for u in uploads)
    export_size = int(exports[0]["size"])
    peak_small = small_export["peak_kb"] / 1000
    peak_large = max(e["peak_kb"] for e in exports) / 1000

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print()
    print(f"export bench: 4× database ({ROWS * 4} orders, {ROWS * 2} events; pg_dump -Fc -Z0 "
          f"output {raw_size / MB:.0f} MB), median of {ROUNDS} rounds, 2 shared cores")
    print(f"  pg_dump -Fc -Z0 > /dev/null        {base:7.2f} s")
    print(f"  export to S3 (moto)                {export:7.2f} s  {export / base:5.2f}× pg_dump "
          f"(goal ≤ 1.15×: {verdict(export / base <= 1.15)}); of it the snapshot's exact "
          f"counts {counting:.2f} s")
    print(f"  export to a null sink              {null_export:7.2f} s  "
          f"{null_export / base:5.2f}× pg_dump (the pipeline without moto's own cost)")
    print(f"  moto alone, an upload of that size {upload:7.2f} s  of it completing the upload "
          f"{completing:.2f} s: the store's own cost, a Python server on the same cores")
    print(f"  pg_dump | gzip | openssl > null    {gzip_pipeline:7.2f} s  export is "
          f"{gzip_pipeline / export:4.1f}× faster (goal ≥ 3×: "
          f"{verdict(gzip_pipeline / export >= 3)})")
    print(f"  size: export {export_size / MB:.1f} MB, gzip pipeline {gzip_size / MB:.1f} MB "
          f"({export_size / gzip_size:.2f}×), pg_dump uncompressed {raw_size / MB:.1f} MB")
    print(f"  peak RSS of the exporting process: 1× {peak_small:.0f} MB, 4× {peak_large:.0f} MB "
          f"(goal flat and < 150 MB: "
          f"{verdict(peak_large < 150 and peak_large - peak_small < 10)})")
