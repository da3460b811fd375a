"""The export's data path (bot/exports/dumping.py and readback.py) with real parts: a real
PostgreSQL source (several tables, one over 100k rows, a table named `it's`, a second schema),
pg_dump and pg_restore 18 as child processes, age and zstd in the stream, a real
S3-compatible server on loopback. Every export here is restored into a new database and
compared with its source table by table, row by row; one is restored with the standard
command lines alone (`sha256sum -c`, `age -d`, `zstd -d`, `pg_restore`)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pyrage
import pytest
import zstandard

from bot.domain.export_errors import (
    DumpFailed,
    ExportError,
    ObjectStoreError,
    PgToolsError,
    RestoreFailed,
    VerificationFailed,
)
from bot.domain.export_manifest import render_checksums
from bot.domain.exports import CHECKSUMS_NAME, dump_file_name, folder_name
from bot.exports import (
    DumpResult,
    ObjectStore,
    PgTools,
    Snapshot,
    dump,
    find_tools,
    restore,
    snapshot,
    verify,
)
from tests.support.exports import table_digests
from tests.support.postgres import PostgresServer
from tests.support.s3 import FailingProxy, S3Server, shared_s3, use_credentials

MiB = 1024 * 1024
ORDERS = 150_000


# The source and the keys.


@dataclass(frozen=True)
class Keys:
    recipients: tuple[str, str]  # age public keys
    identity_files: tuple[Path, Path]  # one key each, as age-keygen writes them


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("age-keys")
    recipients, files = [], []
    for number in (1, 2):
        identity = pyrage.x25519.Identity.generate()
        recipients.append(str(identity.to_public()))
        path = folder / f"key{number}.txt"
        path.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
        files.append(path)
    return Keys((recipients[0], recipients[1]), (files[0], files[1]))


SOURCE_SCHEMA = f"""
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz);
INSERT INTO customers SELECT g, 'customer ' || g, '2026-01-01'::timestamptz + g * interval '1 min'
  FROM generate_series(1, 5000) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers,
  amount numeric(12, 2), note text, created_at timestamptz NOT NULL);
INSERT INTO orders SELECT g, 1 + g % 5000, (g % 10000) / 100.0, md5(g::text) || md5((-g)::text),
  '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, {ORDERS}) g;
CREATE SCHEMA sales;
CREATE TABLE sales."it's" (id serial PRIMARY KEY, "a ""quoted"" column" text, payload jsonb,
  blob bytea);
INSERT INTO sales."it's" ("a ""quoted"" column", payload, blob) VALUES
  ('it''s here', '{{"k": [1, 2, "three"]}}', '\\x00ff10'), (NULL, NULL, NULL),
  (E'line\\nbreak\\ttab', '{{}}', '');
CREATE SCHEMA archive;
CREATE TABLE archive.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text,
  at timestamptz DEFAULT '2026-01-13T14:25:00Z');
INSERT INTO archive.events (kind) SELECT 'kind-' || (g % 7) FROM generate_series(1, 2000) g;
CREATE TABLE public.empty (id int);
CREATE VIEW public.big_orders AS SELECT * FROM orders WHERE amount > 90;
"""


@pytest.fixture(scope="module")
def source(postgres: PostgresServer) -> str:
    url = postgres.create_database("export_source")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SOURCE_SCHEMA)
        conn.execute("VACUUM ANALYZE")
    return url


@pytest.fixture(scope="module")
def tools() -> PgTools:
    return find_tools()


def with_password(url: str, password: str) -> str:
    """The same URL with a password (the test server trusts any, Neon's would check it)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


# One export, shared by the tests that read it back.


@dataclass(frozen=True)
class Exported:
    store: ObjectStore
    s3: S3Server
    bucket: str
    folder: str
    file: str
    result: DumpResult
    taken: Snapshot
    progress: list[int]


@pytest.fixture(scope="module")
def store_env() -> Iterator[S3Server]:
    """The S3 server, with boto3's standard chain finding the `writer` credentials."""
    with pytest.MonkeyPatch.context() as patch:
        server = shared_s3()
        use_credentials(patch, server)
        yield server


def export_database(store: ObjectStore, url: str, database: str, recipients: tuple[str, ...],
                    tools: PgTools, folder: str, progress: list[int] | None = None
                    ) -> tuple[DumpResult, Snapshot]:
    """The steps the export engine runs for one database."""
    with snapshot(url) as taken:
        tools.check_server(taken.server_version_num)
        with store.upload(folder + dump_file_name(database)) as sink:
            result = dump(url, database, snapshot_id=taken.snapshot_id,
                          recipients=recipients, sink=sink, tools=tools,
                          progress=None if progress is None else progress.append)
            assert sink.complete() == result.size
    return result, taken


@pytest.fixture(scope="module")
def exported(store_env: S3Server, source: str, keys: Keys, tools: PgTools) -> Exported:
    bucket = store_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}/lifeguard", endpoint_url=store_env.endpoint)
    folder = folder_name("wispy-sun-123", datetime.now(UTC), "x7k2")
    progress: list[int] = []
    result, taken = export_database(store, with_password(source, "s3cret-pw"),
                                    "export_source", keys.recipients, tools, folder, progress)
    file = dump_file_name("export_source")
    store.put_bytes(folder + CHECKSUMS_NAME, render_checksums({file: result.sha256}))
    return Exported(store, store_env, bucket, folder, file, result, taken, progress)


# The round trip.


def test_the_snapshot_counts_every_user_table_in_every_schema(exported):
    counts = {(t.schema, t.table): t.rows for t in exported.taken.tables}
    assert counts == {("archive", "events"): 2000, ("public", "customers"): 5000,
                      ("public", "empty"): 0, ("public", "orders"): ORDERS,
                      ("sales", "it's"): 3}
    assert exported.taken.server_version.startswith("15.")
    assert exported.taken.lsn is not None and "/" in exported.taken.lsn


def test_an_export_is_one_encrypted_object_whose_checksum_is_recorded(exported):
    key = f"lifeguard/{exported.folder}{exported.file}"
    data = exported.s3.client().get_object(Bucket=exported.bucket, Key=key)["Body"].read()
    assert len(data) == exported.result.size
    assert hashlib.sha256(data).hexdigest() == exported.result.sha256
    assert data.startswith(b"age-encryption.org/v1\n")  # the standard age format
    assert b"customer 4999" not in data  # nothing readable without a key
    assert exported.s3.uploads_in_progress(exported.bucket) == []
    # progress was reported as the bytes went, ending with the total
    assert len(exported.progress) > 2 and exported.progress[-1] == exported.result.size
    assert exported.progress == sorted(exported.progress)


def test_verify_reads_the_whole_archive(exported, keys, tools):
    with exported.store.open_read(exported.folder + exported.file) as stream:
        checked = verify(stream, name=exported.file, expected_sha256=exported.result.sha256,
                         expected_size=exported.result.size,
                         identity=keys.identity_files[0], tools=tools)
    assert checked.archive_read and checked.sha256 == exported.result.sha256


def test_an_export_restores_to_the_same_rows(exported, source, keys, tools, postgres):
    target = postgres.create_database("export_restored")
    with exported.store.open_read(exported.folder + exported.file) as stream:
        restore(stream, identity=keys.identity_files[1], target_uri=with_password(
            target, "target-pw"), tools=tools, name=exported.file)
    restored = table_digests(target)
    assert restored == table_digests(source)
    assert {key: rows for key, (rows, _) in restored.items()} == {
        (t.schema, t.table): t.rows for t in exported.taken.tables}
    # The rest of the schema came too: the view, and the identity column goes on counting.
    with psycopg.connect(target) as conn, psycopg.connect(source) as original:
        query = "SELECT count(*) FROM big_orders"
        assert conn.execute(query).fetchone() == original.execute(query).fetchone()
        added = conn.execute("INSERT INTO archive.events (kind) VALUES ('after restore') "
                             "RETURNING id").fetchone()
        assert added == (2001,)


def test_the_standard_tools_alone_restore_an_export(exported, source, keys, tools, postgres,
                                                    tmp_path):
    client = exported.s3.client()
    for name in (exported.file, CHECKSUMS_NAME):  # as `aws s3 cp` would
        client.download_file(exported.bucket, f"lifeguard/{exported.folder}{name}",
                             str(tmp_path / name))
    checked = subprocess.run(["sha256sum", "-c", CHECKSUMS_NAME], cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode == 0 and f"{exported.file}: OK" in checked.stdout

    target = postgres.create_database("export_by_hand")
    command = (f"age -d -i {keys.identity_files[1]} {exported.file} | zstd -d | "
               f"{tools.pg_restore} --no-owner -d '{target}'")
    restored = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path,
                              capture_output=True, text=True)
    # pg_restore 18 sets transaction_timeout, which this PostgreSQL 15 does not know: it
    # says so, goes on and exits 1 (the README says this). Nothing else may go wrong.
    errors = [line for line in restored.stderr.splitlines() if "error:" in line]
    assert restored.returncode in (0, 1), restored.stderr
    assert all('"transaction_timeout"' in line for line in errors), restored.stderr
    assert table_digests(target) == table_digests(source)


def test_the_dump_holds_its_snapshot_not_later_writes(store_env, postgres, keys, tools):
    url = postgres.create_database("export_moving")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); "
                     "INSERT INTO t SELECT generate_series(1, 1000)")
    bucket = store_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}", endpoint_url=store_env.endpoint)
    with snapshot(url) as taken:
        with psycopg.connect(url, autocommit=True) as conn:  # the world moves on
            conn.execute("INSERT INTO t SELECT generate_series(1001, 1500); DELETE FROM t "
                         "WHERE id <= 10; CREATE TABLE later (x int)")
        with store.upload("f/export_moving.dump.zst.age") as sink:
            dump(url, "export_moving", snapshot_id=taken.snapshot_id,
                 recipients=keys.recipients, sink=sink, tools=tools)
            sink.complete()
    assert [(t.table, t.rows) for t in taken.tables] == [("t", 1000)]
    target = postgres.create_database("export_moving_restored")
    with store.open_read("f/export_moving.dump.zst.age") as stream:
        restore(stream, identity=keys.identity_files[0], target_uri=target, tools=tools)
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT min(id), max(id), count(*) FROM t").fetchone() == (
            1, 1000, 1000)
        assert conn.execute("SELECT to_regclass('later')").fetchone() == (None,)


def test_a_database_name_with_a_quote_and_a_space(store_env, postgres, keys, tools):
    postgres.create_database("it's a db")
    url = postgres.url(quote("it's a db"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 10) AS n")
    bucket = store_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}", endpoint_url=store_env.endpoint)
    result, _ = export_database(store, url, "it's a db", keys.recipients[:1], tools, "f/")
    assert store.list_keys("f/") == {"it%27s%20a%20db.dump.zst.age": result.size}


def test_the_password_reaches_pg_dump_only_through_its_environment(
        store_env, source, keys, tools, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-never-in-a-child")
    seen: list[tuple[bytes, bytes]] = []

    def look_at_pg_dump(_: int) -> None:
        for pid in os.listdir("/proc"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"pg_dump" in argv.split(b"\0")[0] and b"export_source" in argv:
                    seen.append((argv, Path(f"/proc/{pid}/environ").read_bytes()))
            except (OSError, ValueError):
                continue

    with snapshot(source) as taken:
        dump(with_password(source, "pw-in-the-uri"), "export_source",
             snapshot_id=taken.snapshot_id, recipients=keys.recipients, sink=io.BytesIO(),
             tools=tools, progress=look_at_pg_dump)
    assert seen, "pg_dump was not seen running"
    for argv, environment in seen:
        assert b"pw-in-the-uri" not in argv
        assert b"PGPASSWORD=pw-in-the-uri" in environment.split(b"\0")
        assert b"xoxb-never-in-a-child" not in environment


# Faults.


def test_a_pg_dump_that_fails_says_why_and_leaves_nothing(store_env, source, keys, tools):
    bucket = store_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}", endpoint_url=store_env.endpoint)
    with pytest.raises(DumpFailed) as failed, store.upload("f/a.dump.zst.age") as sink:
        dump(with_password(source, "pw-not-shown"), "export_source",
             snapshot_id="00000003-000000FF-1", recipients=keys.recipients, sink=sink,
             tools=tools)
        sink.complete()
    message = str(failed.value)
    assert "pg_dump exited with code 1" in message
    assert 'invalid snapshot identifier: "00000003-000000FF-1"' in message
    assert "pw-not-shown" not in message
    assert store_env.keys(bucket) == [] and store_env.uploads_in_progress(bucket) == []


def test_a_pg_dump_of_a_missing_database_says_so(source, keys, tools):
    with pytest.raises(DumpFailed, match='database "no_such_db" does not exist'):
        dump(source, "no_such_db", snapshot_id="00000003-00000001-1",
             recipients=keys.recipients, sink=io.BytesIO(), tools=tools)


def test_a_killed_pg_dump_fails_the_export(store_env, source, keys, tools):
    bucket = store_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}", endpoint_url=store_env.endpoint)
    killed: list[int] = []

    def kill_pg_dump(_: int) -> None:
        if killed:
            return
        for pid in os.listdir("/proc"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"pg_dump") and any(b"export_source" in a for a in argv):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))

    with snapshot(source) as taken, pytest.raises(DumpFailed) as failed, \
            store.upload("f/a.dump.zst.age") as sink:
        dump(source, "export_source", snapshot_id=taken.snapshot_id,
             recipients=keys.recipients, sink=sink, tools=tools, progress=kill_pg_dump)
        sink.complete()
    assert killed
    assert "pg_dump was killed (SIGKILL)" in str(failed.value)
    assert store_env.keys(bucket) == [] and store_env.uploads_in_progress(bucket) == []


def test_an_upload_failing_half_way_stops_pg_dump_and_leaves_nothing(store_env, source, keys,
                                                                     tools):
    bucket = store_env.create_bucket()

    def second_part(method: str, path: str) -> bool:
        return method == "PUT" and "partNumber=2" in path

    with FailingProxy(store_env.endpoint, second_part) as proxy:
        store = ObjectStore(f"s3://{bucket}", endpoint_url=proxy.endpoint,
                            part_size=5 * MiB, max_attempts=2)
        with snapshot(source) as taken, pytest.raises(ObjectStoreError) as failed, \
                store.upload("f/a.dump.zst.age") as sink:
            dump(source, "export_source", snapshot_id=taken.snapshot_id,
                 recipients=keys.recipients, sink=sink, tools=tools)
            sink.complete()
    assert proxy.failed and "InternalError" in str(failed.value)
    assert store_env.keys(bucket) == [] and store_env.uploads_in_progress(bucket) == []
    assert not pg_dumps_running(taken.snapshot_id)


def pg_dumps_running(snapshot_id: str) -> list[int]:
    running = []
    for pid in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if snapshot_id.encode() in argv and b"pg_dump" in argv:
            running.append(int(pid))
    return running


def test_a_tampered_object_fails_verification_naming_it(exported, keys, tools):
    client = exported.s3.client()
    key = f"lifeguard/{exported.folder}{exported.file}"
    data = bytearray(client.get_object(Bucket=exported.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    tampered = bytes(data)

    for identity in (keys.identity_files[0], None):
        with pytest.raises(VerificationFailed, match=f"{exported.file}: SHA-256 .* does not "
                           "match the manifest") as failed:
            verify(io.BytesIO(tampered), name=exported.file,
                   expected_sha256=exported.result.sha256, expected_size=exported.result.size,
                   identity=identity, tools=tools)
        assert failed.value.file == exported.file

    with pytest.raises(VerificationFailed, match="is 100 bytes; the manifest says"):
        verify(io.BytesIO(tampered[:100]), name=exported.file,
               expected_sha256=exported.result.sha256, expected_size=exported.result.size,
               identity=keys.identity_files[0], tools=tools)

    # A manifest rewritten to match the tampered bytes: age's authentication still fails.
    with pytest.raises(VerificationFailed, match=f"{exported.file}: decryption failed"):
        verify(io.BytesIO(tampered), name=exported.file,
               expected_sha256=hashlib.sha256(tampered).hexdigest(),
               expected_size=len(tampered), identity=keys.identity_files[0], tools=tools)


def test_verification_with_a_key_that_is_not_a_recipient_fails(exported, tools, tmp_path):
    stranger = tmp_path / "stranger.txt"
    stranger.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    with exported.store.open_read(exported.folder + exported.file) as stream, \
            pytest.raises(VerificationFailed, match="decryption failed"):
        verify(stream, name=exported.file, expected_sha256=exported.result.sha256,
               expected_size=exported.result.size, identity=stranger, tools=tools)


def test_verification_without_a_key_checks_the_bytes(exported):
    with exported.store.open_read(exported.folder + exported.file) as stream:
        checked = verify(stream, name=exported.file, expected_sha256=exported.result.sha256,
                         expected_size=exported.result.size, identity=None)
    assert not checked.archive_read and checked.size == exported.result.size


def test_a_truncated_archive_fails_verification_though_its_checksum_holds(
        exported, keys, tools):
    """pg_restore reads the whole archive (`--list` would stop after its table of
    contents), so an archive cut short is found even when encrypted and summed whole."""
    with exported.store.open_read(exported.folder + exported.file) as stream:
        plain = io.BytesIO()
        pyrage.decrypt_io(stream, plain, [pyrage.x25519.Identity.from_str(
            keys.identity_files[0].read_text().splitlines()[1])])
    archive = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(plain.getvalue())).read()
    cut = zstandard.ZstdCompressor().compress(archive[: len(archive) - 10])
    encrypted = io.BytesIO()
    pyrage.encrypt_io(io.BytesIO(cut), encrypted, [pyrage.x25519.Recipient.from_str(
        keys.recipients[0])])
    data = encrypted.getvalue()
    with pytest.raises(VerificationFailed, match="archive is not readable: pg_restore exited "
                       "with code 1: pg_restore: error: could not read from input file"):
        verify(io.BytesIO(data), name="cut.dump.zst.age",
               expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data),
               identity=keys.identity_files[0], tools=tools)


def test_a_restore_that_fails_says_what_pg_restore_said(exported, keys, tools, postgres):
    target = postgres.create_database("export_restored_twice")
    for attempt in (1, 2):
        with exported.store.open_read(exported.folder + exported.file) as stream:
            if attempt == 1:
                restore(stream, identity=keys.identity_files[0], target_uri=target,
                        tools=tools)
                continue
            with pytest.raises(RestoreFailed, match='already exists'):
                restore(stream, identity=keys.identity_files[0], target_uri=target,
                        tools=tools, name=exported.file)
    missing = postgres.url("no_such_target")
    with exported.store.open_read(exported.folder + exported.file) as stream, \
            pytest.raises(RestoreFailed, match='database "no_such_target" does not exist'):
        restore(stream, identity=keys.identity_files[0], target_uri=missing, tools=tools)


def test_a_snapshot_without_the_right_to_read_the_lsn_still_counts(postgres):
    url = postgres.create_database("export_limited")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS export_reader")
        conn.execute("CREATE ROLE export_reader LOGIN")
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 42) AS n")
        conn.execute("GRANT SELECT ON t TO export_reader")
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_current_wal_lsn() FROM PUBLIC")
    limited = url.replace("postgres@", "export_reader@", 1)
    with snapshot(limited) as taken:
        assert taken.lsn is None
        assert [(t.table, t.rows) for t in taken.tables] == [("t", 42)]


def test_rows_that_cannot_be_counted_fail_the_export_with_postgresqls_reason(postgres):
    url = postgres.create_database("export_unreadable")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS export_blind")
        conn.execute("CREATE ROLE export_blind LOGIN")
        conn.execute("CREATE TABLE secret AS SELECT generate_series(1, 5) AS n")
    blind = url.replace("postgres@", "export_blind@", 1)
    with pytest.raises(ExportError, match=r"the export's snapshot failed.*permission"), \
            snapshot(blind):
        pass


def test_a_snapshot_of_an_unreachable_server_says_so():
    with pytest.raises(ExportError, match="cannot connect to the database") as failed, \
            snapshot("postgresql://u:hidden-pw@127.0.0.1:9/db", connect_timeout=2):
        pass
    assert "hidden-pw" not in str(failed.value)


def test_a_pg_dump_older_than_the_server_is_refused(tools):
    with pytest.raises(PgToolsError, match=f"pg_dump {tools.version} .* cannot dump a "
                       "PostgreSQL 19 server"):
        find_tools(190004)
    assert find_tools(180001) == tools and tools.major == 18


def test_bad_keys_are_refused_before_pg_dump_starts(source, tools, tmp_path):
    with pytest.raises(ExportError, match="EXPORT_RECIPIENTS"):
        dump(source, "export_source", snapshot_id="x", recipients=["age1notakey"],
             sink=io.BytesIO(), tools=tools)
    not_an_identity = tmp_path / "key.txt"
    not_an_identity.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(ExportError, match="line 1 of the age identity file") as refused:
        verify(io.BytesIO(b""), name="a", expected_sha256="0" * 64, expected_size=0,
               identity=not_an_identity, tools=tools)
    assert "NOTAKEY" not in str(refused.value)


class BreaksAfter:
    """A stored object whose connection drops after `limit` bytes."""

    def __init__(self, data: bytes, limit: int) -> None:
        self.stream = io.BytesIO(data)
        self.limit = limit

    def read(self, size: int = -1) -> bytes:
        if self.stream.tell() >= self.limit:
            raise ObjectStoreError("cannot reach the object store", "unreachable")
        return self.stream.read(min(size, self.limit - self.stream.tell()))


def test_a_read_that_breaks_is_the_stores_error_not_a_bad_file(exported, keys, tools):
    client = exported.s3.client()
    data = client.get_object(Bucket=exported.bucket,
                             Key=f"lifeguard/{exported.folder}{exported.file}")["Body"].read()
    with pytest.raises(ObjectStoreError, match="cannot reach") as failed:
        verify(BreaksAfter(data, len(data) // 2), name=exported.file,
               expected_sha256=exported.result.sha256, expected_size=exported.result.size,
               identity=keys.identity_files[0], tools=tools)
    assert failed.value.reason == "unreachable"
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit()
                and b"pg_restore" in _cmdline(pid) and b"/dev/null" in _cmdline(pid)]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
