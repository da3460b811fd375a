"""The export's names and files (bot/domain/exports.py, bot/domain/export_manifest.py): the
folder and file names a person finds in the bucket, manifest.json read back as written, and
SHA256SUMS in the format the real `sha256sum -c` checks."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.export_errors import InvalidManifest
from bot.domain.export_manifest import (
    DumpedDatabase,
    Manifest,
    TableRows,
    checksum_disagreements,
    parse_checksums,
    parse_manifest,
    render_checksums,
    render_manifest,
)
from bot.domain.exports import (
    CHECKSUMS_NAME,
    check_recipients,
    database_of_file,
    dump_file_name,
    folder_name,
    parse_folder,
)

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
OTHER_RECIPIENT = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"


def test_the_folder_is_project_then_utc_time_then_export_id():
    at = datetime(2026, 1, 13, 15, 25, 0, tzinfo=timezone(timedelta(hours=1)))
    assert folder_name("wispy-sun-123", at, "x7k2") == "wispy-sun-123/20260113-142500-x7k2/"


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a b", "-lead"])
def test_ids_that_would_break_the_layout_are_refused(bad):
    at = datetime(2026, 1, 13, tzinfo=UTC)
    with pytest.raises(ValueError):
        folder_name(bad, at, "x1")
    with pytest.raises(ValueError):
        folder_name("p1", at, bad)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        folder_name("p1", datetime(2026, 1, 13), "x1")


def test_folders_are_read_back_and_foreign_names_ignored():
    found = parse_folder("wispy-sun-123/20260113-142500-x7k2/")
    assert found is not None
    assert found.started_at == datetime(2026, 1, 13, 14, 25, tzinfo=UTC)
    assert found.export_id == "x7k2" and found.name == "20260113-142500-x7k2"
    for foreign in ("notes", "20261313-000000-x1", "20260113-142500-", "2026-01-13-x1"):
        assert parse_folder(foreign) is None, foreign


@pytest.mark.parametrize(("database", "file"), [
    ("neondb", "neondb.dump.zst.age"),
    ("it's db", "it%27s%20db.dump.zst.age"),
    ("a/b", "a%2Fb.dump.zst.age"),
    ("..", "%2E..dump.zst.age"),
    ("-rf", "%2Drf.dump.zst.age"),
    ("100%", "100%25.dump.zst.age"),
])
def test_database_names_become_one_plain_key_segment(database, file):
    assert dump_file_name(database) == file
    assert database_of_file(file) == database


@given(st.text(min_size=1, max_size=63))
def test_every_database_name_maps_to_a_distinct_safe_file_name(database):
    file = dump_file_name(database)
    assert database_of_file(file) == database  # so two names never share a file
    assert "/" not in file and file[0] not in "-." and file.isascii()
    assert not any(c.isspace() or c == "\\" for c in file)


def test_recipients_are_age_public_keys():
    assert check_recipients([f" {RECIPIENT} ", "", OTHER_RECIPIENT]) == (
        RECIPIENT, OTHER_RECIPIENT)
    with pytest.raises(ValueError, match="at least one"):
        check_recipients(["  "])
    with pytest.raises(ValueError, match="'AGE-SECRET-KEY-1X' is not an age public key"):
        check_recipients([RECIPIENT, "AGE-SECRET-KEY-1X"])


def a_manifest() -> Manifest:
    at = datetime(2026, 1, 13, 14, 25, 0, 123456, tzinfo=UTC)
    return Manifest(
        export_id="x7k2", project_id="wispy-sun-123", branch_id="br-main-1",
        branch_name="main", read_branch_name="export-20260113-142500",
        started_at=at, finished_at=at + timedelta(minutes=3),
        server_version="17.5", pg_dump_version="18.6",
        recipients=(RECIPIENT, OTHER_RECIPIENT),
        databases=(
            DumpedDatabase("neondb", "neondb.dump.zst.age", 1234, "a" * 64, at, "0/16B3748",
                           (TableRows("public", "orders", 120_000),
                            TableRows("sales", "it's", 3))),
            DumpedDatabase("it's db", dump_file_name("it's db"), 99, "b" * 64, at, None, ()),
        ),
    )


def test_the_manifest_reads_back_as_written():
    manifest = a_manifest()
    data = render_manifest(manifest)
    assert parse_manifest(data) == manifest
    document = json.loads(data)
    # What a person reading the file by hand looks for.
    assert document["source"] == {"project_id": "wispy-sun-123", "branch_id": "br-main-1",
                                  "branch_name": "main",
                                  "read_branch_name": "export-20260113-142500"}
    assert document["databases"][0]["snapshot"] == {"at": "2026-01-13T14:25:00.123456Z",
                                                    "lsn": "0/16B3748"}
    assert document["databases"][0]["tables"][1] == {"schema": "sales", "table": "it's",
                                                     "rows": 3}
    assert document["server_version"] == "17.5" and document["pg_dump_version"] == "18.6"


def _broken(change) -> bytes:
    document = json.loads(render_manifest(a_manifest()))
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("export_id"), "export_id is missing"),
    (lambda d: d["databases"][0].update(sha256="xyz"), r"databases\[0\].sha256 must be 64"),
    (lambda d: d["databases"][1].update(size=-1), r"databases\[1\].size must not be negative"),
    (lambda d: d["databases"][0]["tables"][0].update(rows="many"),
     r"databases\[0\].tables\[0\].rows must be a whole number"),
    (lambda d: d["databases"][0]["tables"][0].update(rows=True),
     r"databases\[0\].tables\[0\].rows must be a whole number"),
    (lambda d: d["databases"][0]["snapshot"].update(lsn="yesterday"),
     r"databases\[0\].snapshot.lsn must be a WAL position"),
    (lambda d: d["databases"][0].update(file="../x.dump.zst.age"), r"databases\[0\].file"),
    (lambda d: d["databases"][1].update(file="neondb.dump.zst.age"), "repeats"),
    (lambda d: d.update(started_at="2026-01-13 14:25"), "started_at must be an RFC 3339"),
    (lambda d: d.update(format=2), "format is 2; this Lifeguard reads format 1"),
    (lambda d: d["recipients"].append("ssh-rsa AAAA"), r"recipients\[2\]"),
    (lambda d: d["source"].pop("branch_name"), "source.branch_name is missing"),
])
def test_a_damaged_manifest_names_the_bad_field(change, message):
    with pytest.raises(InvalidManifest, match=message):
        parse_manifest(_broken(change))


def test_a_manifest_that_is_not_json_says_so():
    with pytest.raises(InvalidManifest, match="not JSON"):
        parse_manifest(b'{"format": 1,')
    with pytest.raises(InvalidManifest, match="JSON object"):
        parse_manifest(b"[]")


def test_sha256sums_is_what_sha256sum_checks(tmp_path):
    files = {"neondb.dump.zst.age": b"first", dump_file_name("it's db"): b"second"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (tmp_path / CHECKSUMS_NAME).write_bytes(render_checksums(checksums))
    checked = subprocess.run(["sha256sum", "-c", CHECKSUMS_NAME], cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert parse_checksums((tmp_path / CHECKSUMS_NAME).read_bytes()) == checksums

    (tmp_path / "neondb.dump.zst.age").write_bytes(b"tampered")
    checked = subprocess.run(["sha256sum", "-c", CHECKSUMS_NAME], cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode == 1 and "neondb.dump.zst.age: FAILED" in checked.stdout


def test_sha256sum_output_is_read_back(tmp_path):
    (tmp_path / "a.dump.zst.age").write_bytes(b"x")
    made = subprocess.run(["sha256sum", "a.dump.zst.age"], cwd=tmp_path, capture_output=True,
                          check=True).stdout
    assert parse_checksums(made) == {"a.dump.zst.age": hashlib.sha256(b"x").hexdigest()}
    binary = subprocess.run(["sha256sum", "-b", "a.dump.zst.age"], cwd=tmp_path,
                            capture_output=True, check=True).stdout
    assert parse_checksums(binary) == parse_checksums(made)


@pytest.mark.parametrize(("text", "message"), [
    (b"abc  a.dump.zst.age\n", "line 1 is not"),
    (("a" * 64 + "  x\n" + "b" * 64 + "  x\n").encode(), "line 2 lists 'x' again"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_damaged_sha256sums_names_the_line(text, message):
    with pytest.raises(InvalidManifest, match=message):
        parse_checksums(text)


def test_names_sha256sum_would_escape_are_refused():
    with pytest.raises(ValueError):
        render_checksums({"a\nb": "a" * 64})
    with pytest.raises(ValueError):
        render_checksums({"a": "A" * 64})


def test_manifest_and_sha256sums_disagreements_are_named():
    manifest = a_manifest()
    assert checksum_disagreements(manifest, manifest.checksums()) == []
    sums = {**manifest.checksums(), "neondb.dump.zst.age": "c" * 64, "extra.dump.zst.age":
            "d" * 64}
    sums.pop(dump_file_name("it's db"))
    assert checksum_disagreements(manifest, sums) == [
        "extra.dump.zst.age is in SHA256SUMS but not in manifest.json",
        "it%27s%20db.dump.zst.age is in manifest.json but not in SHA256SUMS",
        "neondb.dump.zst.age has a different SHA-256 in manifest.json and SHA256SUMS",
    ]
    # and the manifest's own list is what a fresh one renders
    assert replace(manifest, databases=()).checksums() == {}
