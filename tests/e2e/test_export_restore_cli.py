"""Disaster recovery: `python -m bot export restore <id> --into <url>` as an operator runs
it, a child process with only the bucket, the project id and the age identity in its
environment (no Slack, no Neon, no store). Exports are taken with the archive directly, from
real databases, into the moto S3 server; restores go into real databases and are compared
with their sources table by table, row by row."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bot.domain.exports import dump_file_name
from tests.support.bot_process import run_bot_command
from tests.support.exports import (
    SECOND_SCHEMA,
    SOURCE_SCHEMA,
    AgeKey,
    archive_of,
    table_digests,
    take_export,
)
from tests.support.postgres import PostgresServer
from tests.support.s3 import S3Server

PROJECT = "quiet-lake-424242"


@pytest.fixture(scope="module")
def sources(postgres: PostgresServer) -> dict[str, str]:
    shop = postgres.create_database("dr_shop")
    analytics = postgres.create_database("dr_analytics")
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(SOURCE_SCHEMA)
    with psycopg.connect(analytics, autocommit=True) as conn:
        conn.execute(SECOND_SCHEMA)
    return {"dr_shop": shop, "dr_analytics": analytics}


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return s3.create_bucket()


@pytest.fixture(scope="module")
def exports(s3: S3Server, bucket: str, key: AgeKey, sources: dict[str, str]
            ) -> Iterator[dict[str, str]]:
    """Export id -> folder: one of one database, one of two."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", s3.writer.access_key_id)
        patch.setenv("AWS_SECRET_ACCESS_KEY", s3.writer.secret_access_key)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        archive = archive_of(s3, bucket, PROJECT, key)
        one, _ = take_export(archive, "exp-one", {"dr_shop": sources["dr_shop"]})
        two, _ = take_export(archive, "exp-two", sources)
        off, _ = take_export(archive, "exp-off", {"dr_analytics": sources["dr_analytics"]},
                             row_counts_off_by=1)
        yield {"exp-one": one, "exp-two": two, "exp-off": off}


def recovery_env(s3: S3Server, bucket: str, key: AgeKey) -> dict[str, str]:
    """Only what disaster recovery has: no SLACK_*, no NEON_API_KEY, no DATABASE_URL."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return env | s3.environment() | {
        "EXPORT_URL": f"s3://{bucket}/lifeguard", "EXPORT_S3_ENDPOINT": s3.endpoint,
        "EXPORT_IDENTITY": str(key.identity_file), "NEON_PROJECT_ID": PROJECT}


def restore(env: dict[str, str], *args: str):
    return run_bot_command(["export", "restore", *args], env, timeout=300)


def fresh(postgres: PostgresServer, *names: str) -> None:
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def exists(postgres: PostgresServer, name: str) -> bool:
    with psycopg.connect(postgres.url()) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (name,)).fetchone() is not None


def test_one_database_restores_into_a_new_database_with_the_same_rows(
        exports, s3, bucket, key, sources, postgres, tmp_path):
    fresh(postgres, "dr_one")
    env = recovery_env(s3, bucket, key)
    done = restore(env, "exp-one", "--into", postgres.url("dr_one"))
    assert done.returncode == 0, done.stderr + done.stdout
    assert table_digests(postgres.url("dr_one")) == table_digests(sources["dr_shop"])
    assert "OK: 4 tables, every row count matches" in done.stdout
    assert "ok  sales.it's: 3 rows" in done.stdout
    assert "ok  public.orders: 110000 rows" in done.stdout
    assert "'dr_shop' -> 'dr_one'" in done.stdout
    assert "Checking the 1 file(s)" in done.stderr and "Creating database 'dr_one'" in done.stderr


def test_several_databases_restore_each_into_its_own_database_on_a_server(
        exports, s3, bucket, key, sources, postgres):
    fresh(postgres, "dr_shop_copy")  # the sources keep their names: restore elsewhere
    env = recovery_env(s3, bucket, key)
    server = postgres.url("")  # postgresql://user@host:port/ names no database

    ambiguous = restore(env, "exp-two", "--into", postgres.url("postgres"))
    assert ambiguous.returncode == 1
    assert "holds 2 databases" in ambiguous.stderr and "--database NAME" in ambiguous.stderr

    picked = restore(env, "exp-two", "--into", postgres.url("dr_shop_copy"),
                     "--database", "dr_shop")
    assert picked.returncode == 0, picked.stderr
    assert table_digests(postgres.url("dr_shop_copy")) == table_digests(sources["dr_shop"])

    # Both, into databases of their own names on another server URL: here the same
    # server, so the sources are first moved aside and compared with after.
    before = {name: table_digests(url) for name, url in sources.items()}
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for name in sources:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}_was" WITH (FORCE)')
            conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_was"')
    try:
        both = restore(env, "exp-two", "--into", server)
        assert both.returncode == 0, both.stderr + both.stdout
        assert {name: table_digests(url) for name, url in sources.items()} == before
        assert "dr_analytics.public.events: 500 rows" in both.stdout
    finally:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            for name in sources:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'ALTER DATABASE "{name}_was" RENAME TO "{name}"')

    unknown = restore(env, "exp-two", "--into", server, "--database", "nope")
    assert unknown.returncode == 1 and "holds no database 'nope'" in unknown.stderr


def test_a_database_holding_tables_is_never_restored_into(exports, s3, bucket, key,
                                                          sources, postgres):
    url = postgres.create_database("dr_busy")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (id int); INSERT INTO precious VALUES (1)")
    refused = restore(recovery_env(s3, bucket, key), "exp-one", "--into", url)
    assert refused.returncode == 1
    assert "holds tables already (public.precious)" in refused.stderr
    assert set(table_digests(url)) == {("public", "precious")}


def test_an_unknown_export_names_the_latest(exports, s3, bucket, key, postgres):
    missing = restore(recovery_env(s3, bucket, key), "exp-nope", "--into", postgres.url("x"))
    assert missing.returncode == 1
    assert "no finished export `exp-nope`" in missing.stderr
    assert "exp-one" in missing.stderr and "exp-two" in missing.stderr
    assert not exists(postgres, "x")


def test_a_manifest_that_disagrees_with_the_rows_fails_the_check(exports, s3, bucket, key,
                                                                 postgres):
    fresh(postgres, "dr_off")
    off = restore(recovery_env(s3, bucket, key), "exp-off", "--into", postgres.url("dr_off"))
    assert off.returncode == 1
    assert "MISMATCH  public.events: rows 500 here, 501 in the export" in off.stdout
    assert "FAILED: the restored rows do not match" in off.stdout


def test_a_tampered_object_is_refused_before_anything_is_restored(
        s3, key, sources, postgres):
    bucket = s3.create_bucket()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3.environment().items():
            patch.setenv(name, value)
        archive = archive_of(s3, bucket, PROJECT, key)
        folder, _ = take_export(archive, "exp-bad", {"dr_analytics": sources["dr_analytics"]})
    object_key = f"lifeguard/{folder}{dump_file_name('dr_analytics')}"
    client = s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=object_key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=object_key, Body=bytes(data))
    fresh(postgres, "dr_bad")
    bad = restore(recovery_env(s3, bucket, key), "exp-bad", "--into", postgres.url("dr_bad"))
    assert bad.returncode == 1
    assert "Nothing was restored" in bad.stderr and "SHA-256" in bad.stderr
    assert not exists(postgres, "dr_bad")


def test_it_needs_only_the_bucket_the_project_and_the_identity(s3, bucket, key, postgres,
                                                               tmp_path: Path):
    nothing = restore({"PATH": os.environ["PATH"]}, "exp-one", "--into", postgres.url("x"))
    assert nothing.returncode == 2
    for name in ("EXPORT_URL", "EXPORT_IDENTITY", "NEON_PROJECT_ID"):
        assert f"{name} is missing" in nothing.stderr
    assert "SLACK" not in nothing.stderr.replace("Slack, Neon's API", "")
    no_key = {**recovery_env(s3, bucket, key), "EXPORT_IDENTITY": str(tmp_path / "gone.txt")}
    assert "EXPORT_IDENTITY is malformed" in restore(no_key, "exp-one", "--into",
                                                     postgres.url("x")).stderr
    bad_url = restore(recovery_env(s3, bucket, key), "exp-one", "--into", "mysql://x")
    assert bad_url.returncode == 1 and "not a PostgreSQL URL" in bad_url.stderr


def test_the_readmes_standard_tools_restore_every_database_of_an_export(
        exports, s3, bucket, key, sources, postgres, tmp_path):
    """As the README says, with no Lifeguard code: download the folder (what `aws s3 cp
    --recursive` does), `sha256sum -c SHA256SUMS`, then per database of manifest.json
    `createdb` and `age -d -i key | zstd -d | pg_restore` 18, each a process of its own."""
    import json
    import subprocess

    from bot.exports import find_tools

    client = s3.client()
    prefix = f"lifeguard/{exports['exp-two']}"
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    for item in listed:
        client.download_file(bucket, item["Key"], str(tmp_path / item["Key"][len(prefix):]))
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert checked.stdout.count(": OK") == len(manifest["databases"]) == 2

    pg_restore = find_tools().pg_restore
    for database in manifest["databases"]:
        target = f"{database['database']}_by_hand"
        fresh(postgres, target)
        made = subprocess.run(["createdb", "-h", "127.0.0.1", "-p", str(postgres.port),
                               "-U", postgres.user, target], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        command = (f"age -d -i {key.identity_file} '{database['file']}' | zstd -d | "
                   f"{pg_restore} --no-owner --no-privileges -d '{postgres.url(target)}'")
        restored = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path,
                                  capture_output=True, text=True)
        # pg_restore 18 into this PostgreSQL 15: only transaction_timeout (README).
        errors = [line for line in restored.stderr.splitlines() if "error:" in line]
        assert restored.returncode in (0, 1), restored.stderr
        assert all('"transaction_timeout"' in line for line in errors), restored.stderr
        digests = table_digests(postgres.url(target))
        assert digests == table_digests(sources[database["database"]])
        assert {f"{s}.{t}": rows for (s, t), (rows, _) in digests.items()} == {
            f"{t['schema']}.{t['table']}": t["rows"] for t in database["tables"]}
