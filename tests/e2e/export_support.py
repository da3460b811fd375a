"""What the export e2e tests share: the bot's export settings against the moto server,
source data on the fake Neon's default branch, and reading what a user would check (the
bucket, Neon's branches, the audit trail)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg

from tests.support.exports import make_key
from tests.support.fake_neon import FakeNeon
from tests.support.s3 import Credentials, S3Server

PREFIX = "lifeguard"

SOURCE = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 500) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers,
  amount numeric(12, 2), note text);
INSERT INTO orders SELECT g, 1 + g % 500, (g % 10000) / 100.0, md5(g::text)
  FROM generate_series(1, {orders}) g;
CREATE SCHEMA sales;
CREATE TABLE sales."it's" (id serial PRIMARY KEY, "a ""quoted"" column" text, payload jsonb);
INSERT INTO sales."it's" ("a ""quoted"" column", payload) VALUES
  ('it''s here', '{{"k": [1, "two"]}}'), (NULL, NULL), (E'tab\\there', '{{}}');
"""


def make_keys(folder: Path) -> tuple[str, Path]:
    """(age public key, identity file) as age-keygen would make them."""
    key = make_key(folder)
    return key.recipient, key.identity_file


def export_settings(s3: S3Server, bucket: str, recipient: str, identity: Path, *,
                    endpoint: str | None = None,
                    credentials: Credentials | None = None) -> dict[str, str]:
    return {"EXPORT_URL": f"s3://{bucket}/{PREFIX}",
            "EXPORT_S3_ENDPOINT": endpoint or s3.endpoint,
            "EXPORT_RECIPIENTS": recipient, "EXPORT_IDENTITY": str(identity),
            **s3.environment(credentials)}


def fill_main(neon: FakeNeon, orders: int = 2000) -> None:
    with psycopg.connect(neon.connect_url("main"), autocommit=True) as conn:
        conn.execute(SOURCE.format(orders=orders))


def add_random_bytes(neon: FakeNeon, megabytes: int) -> None:
    """Incompressible rows, so the encrypted dump is more than one 8 MiB upload part."""
    with psycopg.connect(neon.connect_url("main"), autocommit=True) as conn:
        conn.execute("CREATE TABLE noise (id int PRIMARY KEY, data bytea)")
        conn.execute("INSERT INTO noise SELECT g, decode(string_agg(md5(g::text || ':' || i "
                     "|| random()::text), ''), 'hex') FROM generate_series(1, %s) g, "
                     "generate_series(1, 4096) i GROUP BY g", (megabytes * 16,))


def folder_keys(s3: S3Server, bucket: str) -> list[str]:
    return s3.keys(bucket, f"{PREFIX}/")


def temporary_branches(neon: FakeNeon) -> list[str]:
    return [b["name"] for b in neon.branches() if b["name"].startswith("export-")]


def audit_of(entries: list[dict[str, Any]], subject: str) -> list[str]:
    return [e["action"] for e in entries if e["subject"] == subject]


def dumps_running(pid: int) -> list[psutil.Process]:
    """The pg_dump processes of `pid` that are dumping (not a `pg_dump --version`)."""
    try:
        return [c for c in psutil.Process(pid).children(recursive=True)
                if c.name() == "pg_dump" and "-Fc" in c.cmdline()]
    except psutil.NoSuchProcess:  # the bot, or a child being listed, ended meanwhile
        return []


def wait_until(found: Callable[[], Any], timeout: float, what: str, poll: float = 0.01
               ) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def restore_with_standard_tools(s3: S3Server, bucket: str, folder: str, file: str,
                                identity: Path, pg_restore: str, target: str,
                                workdir: Path) -> None:
    """As an operator would: download (`aws s3 cp`), `sha256sum -c`, `age -d | zstd -d |
    pg_restore`."""
    client = s3.client()
    for name in (file, "SHA256SUMS", "manifest.json"):
        client.download_file(bucket, f"{PREFIX}/{folder}{name}", str(workdir / name))
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=workdir,
                             capture_output=True, text=True)
    assert checked.returncode == 0 and f"{file}: OK" in checked.stdout, checked.stdout
    json.loads((workdir / "manifest.json").read_text())
    command = (f"age -d -i {identity} {file} | zstd -d | {pg_restore} --no-owner "
               f"--no-privileges -d '{target}'")
    restored = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=workdir,
                              capture_output=True, text=True)
    # pg_restore 18 sets transaction_timeout, which PostgreSQL 15 does not know: it says so
    # and exits 1. Nothing else may go wrong.
    errors = [line for line in restored.stderr.splitlines() if "error:" in line]
    assert restored.returncode in (0, 1), restored.stderr
    assert all('"transaction_timeout"' in line for line in errors), restored.stderr
