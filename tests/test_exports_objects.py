"""The export's object store (bot/exports/objects.py) against a real S3-compatible server
on loopback (moto's server mode, checking signatures and IAM policies), spoken to over
HTTP with boto3: multipart uploads, never overwriting, cleaning up, and plain messages
for the faults a person can fix."""

from __future__ import annotations

import os

import pytest

from bot.domain.export_errors import ObjectStoreError
from bot.exports.object_streams import MiB, part_size_for
from bot.exports.objects import ObjectStore, parse_store_url
from tests.support.s3 import FailingProxy, S3Server, shared_s3, use_credentials

PART = 5 * MiB  # S3's smallest part, so a few MiB make several parts


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, with boto3's standard chain finding the `writer` credentials."""
    server = shared_s3()
    use_credentials(monkeypatch, server)
    return server


def store_for(s3: S3Server, bucket: str, prefix: str = "lifeguard", **options) -> ObjectStore:
    return ObjectStore(f"s3://{bucket}/{prefix}", endpoint_url=s3.endpoint, part_size=PART,
                       **options)


def test_urls_name_a_bucket_and_a_prefix():
    assert parse_store_url("s3://backups") == ("backups", "")
    assert parse_store_url("s3://backups/") == ("backups", "")
    assert parse_store_url("s3://backups/neon/exports/") == ("backups", "neon/exports/")
    for bad in ("https://backups/x", "s3:///x", "s3://b/a//c", "s3://b/../c", "s3://b?x=1"):
        with pytest.raises(ValueError):
            parse_store_url(bad)


def test_parts_grow_only_for_very_large_exports():
    assert part_size_for(1) == part_size_for(5000) == 8 * MiB
    assert part_size_for(5001) == 16 * MiB and part_size_for(10_000) == 32 * MiB
    total = sum(part_size_for(n) for n in range(1, 10_001))
    assert total == 152_000 * MiB  # 148 GiB in the 10,000 parts S3 allows


def test_a_multipart_upload_stores_the_bytes_written(s3):
    bucket = s3.create_bucket()
    store = store_for(s3, bucket)
    data = os.urandom(3 * PART + 12345)
    with store.upload("p1/20260113-142500-x1/neondb.dump.zst.age") as sink:
        for start in range(0, len(data), 64 * 1024):  # as pyrage writes: small pieces
            sink.write(data[start:start + 64 * 1024])
        assert sink.complete() == len(data)
    head = s3.client().head_object(
        Bucket=bucket, Key="lifeguard/p1/20260113-142500-x1/neondb.dump.zst.age")
    assert head["ETag"].strip('"').endswith("-4")  # four parts, the last one small
    with store.open_read("p1/20260113-142500-x1/neondb.dump.zst.age") as reader:
        assert reader.size == len(data)
        assert b"".join(reader) == data
    assert s3.uploads_in_progress(bucket) == []


def test_listing_folders_and_files(s3):
    bucket = s3.create_bucket()
    store = store_for(s3, bucket)
    store.put_bytes("p1/20260113-142500-x1/SHA256SUMS", b"sums")
    store.put_bytes("p1/20260114-142500-x2/manifest.json", b"{}")
    store.put_bytes("p2/20260114-142500-x3/manifest.json", b"{}")
    assert store.list_folders() == ["p1", "p2"]
    assert store.list_folders("p1/") == ["20260113-142500-x1", "20260114-142500-x2"]
    assert store.list_keys("p1/20260113-142500-x1/") == {"SHA256SUMS": 4}
    assert store.exists("p1/20260114-142500-x2/manifest.json")
    assert not store.exists("p1/20260113-142500-x1/manifest.json")
    assert store.get_bytes("p1/20260113-142500-x1/SHA256SUMS") == b"sums"
    with pytest.raises(ObjectStoreError) as missing:
        store.open_read("p1/nothing")
    assert missing.value.reason == "not_found"


def test_an_existing_object_is_never_overwritten(s3):
    bucket = s3.create_bucket()
    store = store_for(s3, bucket)
    store.put_bytes("p1/f/manifest.json", b"first")
    with pytest.raises(ObjectStoreError, match="already exists") as refused:
        store.put_bytes("p1/f/manifest.json", b"second")
    assert refused.value.reason == "exists"
    with pytest.raises(ObjectStoreError, match="already exists"):
        store.upload("p1/f/manifest.json")
    assert store.get_bytes("p1/f/manifest.json") == b"first"
    assert s3.uploads_in_progress(bucket) == []


def test_an_object_that_appears_during_an_upload_wins_over_it(s3):
    # The check before the upload cannot see a writer that comes later; the conditional
    # completion (If-None-Match: *) does.
    bucket = s3.create_bucket()
    store = store_for(s3, bucket)
    with pytest.raises(ObjectStoreError) as refused, store.upload("p1/f/a.dump.zst.age") as sink:
        sink.write(b"ours")
        store.put_bytes("p1/f/a.dump.zst.age", b"theirs")
        sink.complete()
    assert refused.value.reason == "exists"
    assert store.get_bytes("p1/f/a.dump.zst.age") == b"theirs"
    assert s3.uploads_in_progress(bucket) == []


def test_an_upload_left_by_an_exception_is_aborted(s3):
    bucket = s3.create_bucket()
    store = store_for(s3, bucket)
    with pytest.raises(RuntimeError, match="pg_dump died"), store.upload("p1/f/a") as sink:
        sink.write(os.urandom(2 * PART + 1))  # two parts sent
        raise RuntimeError("pg_dump died")
    assert s3.keys(bucket) == [] and s3.uploads_in_progress(bucket) == []


def test_an_upload_failing_half_way_leaves_no_parts_and_no_object(s3):
    bucket = s3.create_bucket()

    def third_part(method: str, path: str) -> bool:
        return method == "PUT" and "partNumber=3" in path

    with FailingProxy(s3.endpoint, third_part) as proxy:
        store = ObjectStore(f"s3://{bucket}/lifeguard", endpoint_url=proxy.endpoint,
                            part_size=PART, max_attempts=3)
        with pytest.raises(ObjectStoreError, match="InternalError") as failed, \
                store.upload("p1/f/neondb.dump.zst.age") as sink:
            for _ in range(5):
                sink.write(os.urandom(PART))
            sink.complete()
    assert failed.value.reason == "failed"
    assert len(proxy.failed) > 1  # botocore's standard mode tried the part again
    assert s3.keys(bucket) == [] and s3.uploads_in_progress(bucket) == []


def test_deleting_a_folder_removes_its_objects_and_unfinished_uploads(s3):
    bucket = s3.create_bucket()
    store = store_for(s3, bucket)
    store.put_bytes("p1/keep/manifest.json", b"{}")
    store.put_bytes("p1/gone/SHA256SUMS", b"x")
    store.put_bytes("p1/gone/a.dump.zst.age", b"x")
    # What a killed export leaves: an upload with parts and no object.
    killed = store.upload("p1/gone/b.dump.zst.age")
    killed.write(os.urandom(PART))
    killed._collect()  # its first part has arrived
    assert s3.uploads_in_progress(bucket) == ["lifeguard/p1/gone/b.dump.zst.age"]

    assert store.delete_folder("p1/gone/") == 2
    assert s3.keys(bucket) == ["lifeguard/p1/keep/manifest.json"]
    assert s3.uploads_in_progress(bucket) == []
    for not_a_folder in ("p1/gone", "", "/"):
        with pytest.raises(ValueError):
            store.delete_folder(not_a_folder)


def test_a_bucket_that_does_not_exist_is_named(s3):
    store = store_for(s3, "no-such-bucket")
    with pytest.raises(ObjectStoreError, match="bucket 'no-such-bucket' does not exist") as e:
        store.check()
    assert e.value.reason == "no_bucket"
    with pytest.raises(ObjectStoreError, match="does not exist") as e:
        store.upload("p1/f/a")
    assert e.value.reason == "no_bucket"


def test_unknown_credentials_are_refused(s3, monkeypatch):
    bucket = s3.create_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = store_for(s3, bucket)
    for attempt in (store.check, lambda: store.upload("p1/f/a"),
                    lambda: store.put_bytes("p1/f/m", b"x")):
        with pytest.raises(ObjectStoreError, match=r"refused to .* check the credentials"
                           ) as refused:
            attempt()
        assert refused.value.reason == "access_denied"
        assert "not-the-secret" not in str(refused.value)
    assert s3.keys(bucket) == []


def test_credentials_without_permission_are_refused(s3, monkeypatch):
    bucket = s3.create_bucket()
    use_credentials(monkeypatch, s3, s3.nobody)
    with pytest.raises(ObjectStoreError) as refused:
        store_for(s3, bucket).put_bytes("p1/f/m", b"x")
    assert refused.value.reason == "access_denied"


def test_no_credentials_at_all_say_where_they_are_looked_for(s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ObjectStoreError, match="AWS_ACCESS_KEY_ID") as refused:
        store_for(s3, "any-bucket").check()
    assert refused.value.reason == "access_denied"


def test_an_endpoint_that_does_not_answer_is_named(s3):
    store = ObjectStore("s3://bucket", endpoint_url="http://127.0.0.1:9", max_attempts=2,
                        connect_timeout=2)
    with pytest.raises(ObjectStoreError, match=r"cannot reach the object store at "
                       r"http://127.0.0.1:9") as unreachable:
        store.check()
    assert unreachable.value.reason == "unreachable"
