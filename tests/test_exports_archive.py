"""The export archive facade (bot/exports/archive.py) with real parts: a real PostgreSQL
source, pg_dump and pg_restore 18, the moto S3 server on loopback. What the services rely
on: a dump per database, the manifest written last, only finished exports listed, a check
that says per file what failed, a restore that gives back the rows, nothing overwritten,
and a delete that leaves nothing behind."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyrage
import pytest

from bot.domain.export_archive import DatabaseDump
from bot.domain.export_errors import ExportError, ObjectStoreError
from bot.domain.export_manifest import Manifest
from bot.domain.exports import CHECKSUMS_NAME, MANIFEST_NAME, folder_name
from bot.exports import Archive, ObjectStore
from bot.services.ports import ExportArchive
from tests.support.postgres import PostgresServer
from tests.support.s3 import S3Server, shared_s3, use_credentials

PROJECT = "wispy-sun-123"
SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 3000) g;
CREATE SCHEMA sales;
CREATE TABLE sales."it's" (id serial PRIMARY KEY, note text);
INSERT INTO sales."it's" (note) VALUES ('it''s here'), (NULL);
"""


@pytest.fixture(scope="module")
def store_env() -> Iterator[S3Server]:
    with pytest.MonkeyPatch.context() as patch:
        server = shared_s3()
        use_credentials(patch, server)
        yield server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    identity = pyrage.x25519.Identity.generate()
    path = tmp_path_factory.mktemp("age") / "key.txt"
    path.write_text(f"{identity}\n")
    return str(identity.to_public()), path


@pytest.fixture(scope="module")
def source(postgres: PostgresServer) -> str:
    url = postgres.create_database("archive_source")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return url


def archive(server: S3Server, bucket: str, keys: tuple[str, Path], *,
            identity: bool = True) -> Archive:
    store = ObjectStore(f"s3://{bucket}/lifeguard", endpoint_url=server.endpoint)
    return Archive(store, project_id=PROJECT, recipients=[keys[0]],
                   identity=keys[1] if identity else None)


def manifest_of(export_id: str, started: datetime, dumps: list[DatabaseDump],
                recipient: str) -> Manifest:
    return Manifest(export_id=export_id, project_id=PROJECT, branch_id="br-main",
                    branch_name="main", started_at=started,
                    finished_at=datetime.now(UTC), server_version=dumps[0].server_version,
                    pg_dump_version=dumps[0].pg_dump_version, recipients=(recipient,),
                    databases=tuple(d.dumped for d in dumps))


@pytest.fixture(scope="module")
def finished(store_env: S3Server, source: str, keys: tuple[str, Path]):
    """One export of the source, finished: (archive, bucket, folder, manifest)."""
    bucket = store_env.create_bucket()
    exports = archive(store_env, bucket, keys)
    started = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    folder = folder_name(PROJECT, started, "exp1")
    progress: list[int] = []
    dumped = exports.dump_database(folder, source, "archive_source", progress=progress.append)
    manifest = manifest_of("exp1", started, [dumped], keys[0])
    exports.finish(folder, manifest)
    return exports, bucket, folder, manifest, progress


def test_the_archive_has_every_member_of_the_port_services_are_given(finished):
    members = [name for name in vars(ExportArchive) if not name.startswith("_")]
    assert "dump_database" in members and "restore_file" in members
    for name in members:
        wanted, given = getattr(ExportArchive, name), getattr(Archive, name)
        if isinstance(wanted, property):
            assert isinstance(given, property), name
        else:
            assert inspect.signature(given) == inspect.signature(wanted), name
    exports = finished[0]
    assert exports.can_decrypt and len(exports.recipients) == 1


def test_a_dumped_database_says_what_it_holds(finished):
    _, _, _, manifest, progress = finished
    dumped = manifest.databases[0]
    assert dumped.file == "archive_source.dump.zst.age"
    rows = {(t.schema, t.table): t.rows for t in dumped.tables}
    assert rows == {("public", "customers"): 3000, ("sales", "it's"): 2}
    assert progress and progress[-1] == dumped.size
    assert manifest.pg_dump_version.startswith("18.")


def test_the_folder_holds_the_dump_the_checksums_and_the_manifest(finished, store_env):
    _, bucket, folder, manifest, _ = finished
    keys = store_env.keys(bucket, f"lifeguard/{folder}")
    assert [k.rsplit("/", 1)[1] for k in keys] == sorted(
        [CHECKSUMS_NAME, MANIFEST_NAME, manifest.databases[0].file])


def test_finished_exports_are_listed_and_found_by_id(finished, store_env, keys, source):
    exports, bucket, folder, manifest, _ = finished
    # An unfinished export (no manifest) and a folder Lifeguard does not write are not listed.
    unfinished = folder_name(PROJECT, datetime(2026, 11, 30, 3, 0, tzinfo=UTC), "half")
    exports.dump_database(unfinished, source, "archive_source")
    store_env.client().put_object(Bucket=bucket, Key=f"lifeguard/{PROJECT}/notes/x", Body=b"x")
    listed = exports.list_exports()
    assert [found.export_id for found in listed] == ["exp1"]
    found = exports.find("exp1")
    assert found is not None and found.folder == folder and found.manifest == manifest
    assert found.size == manifest.databases[0].size
    assert exports.find("half") is None and exports.find("nope") is None


def test_a_finished_export_verifies_reading_the_archive_whole(finished, store_env, keys):
    exports, bucket, folder, _, _ = finished
    check = exports.verify(folder)
    assert check.passed and check.archives_read and check.failures() == []
    without_key = archive(store_env, bucket, keys, identity=False)
    check = without_key.verify(folder)
    assert check.passed and not check.archives_read


def test_a_tampered_file_fails_its_check_naming_it(store_env, source, keys):
    bucket = store_env.create_bucket()
    exports = archive(store_env, bucket, keys)
    started = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    folder = folder_name(PROJECT, started, "bad1")
    dumped = exports.dump_database(folder, source, "archive_source")
    exports.finish(folder, manifest_of("bad1", started, [dumped], keys[0]))
    key = f"lifeguard/{folder}{dumped.dumped.file}"
    body = store_env.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    store_env.client().put_object(Bucket=bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))
    check = exports.verify(folder)
    assert not check.passed
    assert [c.file for c in check.files if not c.passed] == [dumped.dumped.file]
    assert "SHA-256" in check.failures()[0] and dumped.dumped.file in check.failures()[0]


def test_an_unfinished_export_does_not_verify(finished, source):
    exports = finished[0]
    folder = folder_name(PROJECT, datetime(2026, 11, 30, 4, 0, tzinfo=UTC), "nomanifest")
    check = exports.verify(folder)
    assert not check.passed and "unfinished" in check.failures()[0]


def test_an_export_restores_the_same_rows(finished, postgres, source):
    exports, _, folder, manifest, _ = finished
    target = postgres.create_database("archive_restored")
    exports.restore_file(folder, manifest.databases[0].file, target)
    query = ("SELECT (SELECT count(*) FROM customers), (SELECT max(name) FROM customers), "
             "(SELECT string_agg(coalesce(note, '-'), ',' ORDER BY id) FROM sales.\"it's\")")
    with psycopg.connect(source) as a, psycopg.connect(target) as b:
        assert a.execute(query).fetchone() == b.execute(query).fetchone()


def test_restoring_without_an_identity_says_which_setting_is_missing(finished, store_env,
                                                                     keys, postgres):
    _, bucket, folder, manifest, _ = finished
    with pytest.raises(ExportError, match="EXPORT_IDENTITY"):
        archive(store_env, bucket, keys, identity=False).restore_file(
            folder, manifest.databases[0].file, "postgresql://nowhere/db")


def test_nothing_is_overwritten_and_the_same_finish_again_succeeds(finished, source):
    exports, _, folder, manifest, _ = finished
    with pytest.raises(ObjectStoreError) as error:
        exports.dump_database(folder, source, "archive_source")
    assert error.value.reason == "exists"
    exports.finish(folder, manifest)  # a retried step writing the same bytes
    with pytest.raises(ObjectStoreError) as error:
        exports.finish(folder, replace(manifest, branch_name="other"))
    assert error.value.reason == "exists"


def test_a_discarded_file_and_a_deleted_folder_leave_nothing(store_env, source, keys):
    bucket = store_env.create_bucket()
    exports = archive(store_env, bucket, keys)
    folder = folder_name(PROJECT, datetime(2026, 11, 28, 2, 0, tzinfo=UTC), "gone")
    dumped = exports.dump_database(folder, source, "archive_source")
    # A killed try's parts: an upload started and never completed.
    store_env.client().create_multipart_upload(
        Bucket=bucket, Key=f"lifeguard/{folder}{dumped.dumped.file}")
    exports.discard_file(folder, dumped.dumped.file)
    assert exports.objects(folder) == {}
    assert store_env.uploads_in_progress(bucket) == []
    exports.dump_database(folder, source, "archive_source")  # redone after the discard
    store_env.client().create_multipart_upload(Bucket=bucket, Key=f"lifeguard/{folder}x")
    assert exports.delete(folder) == 1
    assert store_env.keys(bucket) == [] and store_env.uploads_in_progress(bucket) == []


def test_a_folder_of_another_project_or_shape_is_refused(finished):
    exports = finished[0]
    for bad in ("other-project/20261130-020000-exp1/", f"{PROJECT}/20261130-020000-exp1",
                f"{PROJECT}/../x/", f"{PROJECT}/notes/"):
        with pytest.raises(ValueError):
            exports.delete(bad)


def test_a_bucket_that_does_not_exist_is_named(store_env, keys):
    with pytest.raises(ObjectStoreError) as error:
        archive(store_env, "no-such-bucket", keys).check()
    assert error.value.reason == "no_bucket" and "no-such-bucket" in str(error.value)


def test_a_restore_whose_bytes_are_not_the_manifests_fails(finished, postgres):
    from bot.domain.export_errors import RestoreFailed

    exports, _, folder, manifest, _ = finished
    target = postgres.create_database("archive_restored_wrong_sum")
    with pytest.raises(RestoreFailed, match="is not the manifest's"):
        exports.restore_file(folder, manifest.databases[0].file, target,
                             expected_sha256="0" * 64)
    exports.restore_file(folder, manifest.databases[0].file,
                         postgres.create_database("archive_restored_right_sum"),
                         expected_sha256=manifest.databases[0].sha256)
