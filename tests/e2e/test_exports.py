"""`/backup export` and `/backup exports` end to end: signed Slack requests to the real
bot, the fake Neon whose branches are real PostgreSQL databases, the moto S3 server on
loopback, and the export read back with the standard tools alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from bot.exports import find_tools
from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.e2e.export_support import (
    PREFIX,
    audit_of,
    export_settings,
    fill_main,
    folder_keys,
    make_keys,
    restore_with_standard_tools,
    temporary_branches,
)
from tests.support.bot_process import ALERTS_CHANNEL, audit_entries, run_bot_command
from tests.support.exports import table_digests
from tests.support.fake_neon import FakeNeon
from tests.support.postgres import PostgresServer
from tests.support.s3 import S3Server
from tests.support.waits import wait_for_card

DONE = "is done and verified"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, Path]:
    return make_keys(tmp_path)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.create_bucket()


@pytest.fixture
def bot_env(bot_env: dict[str, str], s3: S3Server, bucket: str,
            keys: tuple[str, Path]) -> dict[str, str]:
    """The conftest's bot, with exports on to this test's own bucket."""
    return bot_env | export_settings(s3, bucket, keys[0], keys[1])


def export_id_of(card: dict) -> str:
    found = re.search(r"Export `([0-9a-f]{12})`", card["text"])
    assert found, card["text"]
    return found.group(1)


def folder_of(s3: S3Server, bucket: str, export_id: str) -> str:
    """`<project>/<YYYYMMDD-HHMMSS>-<id>/`, relative to the export URL."""
    folders = {"/".join(key.split("/")[1:3]) for key in folder_keys(s3, bucket)
               if key.split("/")[2].endswith(export_id)}
    assert len(folders) == 1, folders
    return f"{folders.pop()}/"


def assert_main_untouched(neon: FakeNeon, before: dict) -> None:
    """The default branch is only ever read: every Neon mutation is the export's own
    branch being made or deleted, and main's data is what it was."""
    main = neon.default_branch()["id"]
    for request in neon.mutations():
        assert main not in request.path, request
        assert request.method in ("POST", "DELETE"), request
    assert table_digests(neon.connect_url("main")) == before


def test_an_export_restored_with_standard_tools_holds_every_row(
        driver, bot, neon, slack, s3, bucket, keys, bot_env, postgres: PostgresServer,
        tmp_path):
    fill_main(neon, orders=120_000)
    source = table_digests(neon.connect_url("main"))
    assert source[("public", "orders")][0] == 120_000 and ("sales", "it's") in source

    accepted = driver.command("/backup", "export before the migration", user_id=ALICE,
                              channel_id=OPS_CHANNEL).json()
    assert accepted["response_type"] == "ephemeral"
    assert "is under way" in accepted["text"]
    card = wait_for_card(slack, OPS_CHANNEL, DONE, timeout=120)
    export_id = export_id_of(card)
    text = json.dumps(card["blocks"])
    assert f"Export id `{export_id}`" in text and "took" in text and "/s" in text
    assert "archives read whole" in text and f"<@{ALICE}>" in text
    assert len(slack.messages(OPS_CHANNEL)) == 1  # one card, updated in place

    folder = folder_of(s3, bucket, export_id)
    names = sorted(key.rsplit("/", 1)[1] for key in folder_keys(s3, bucket))
    assert names == ["SHA256SUMS", "manifest.json", "neondb.dump.zst.age"]
    assert s3.uploads_in_progress(bucket) == []
    manifest = json.loads(s3.client().get_object(
        Bucket=bucket, Key=f"{PREFIX}/{folder}manifest.json")["Body"].read())
    assert manifest["export_id"] == export_id
    assert manifest["source"]["branch_name"] == "main"
    assert manifest["recipients"] == [keys[0]]
    rows = {(t["schema"], t["table"]): t["rows"] for t in manifest["databases"][0]["tables"]}
    assert rows == {key: count for key, (count, _) in source.items()}

    target = postgres.create_database("export_restored_e2e")
    restore_with_standard_tools(s3, bucket, folder, "neondb.dump.zst.age", keys[1],
                                str(find_tools().pg_restore), target, tmp_path)
    assert table_digests(target) == source

    assert temporary_branches(neon) == []
    actions = audit_of(audit_entries(bot_env), export_id)
    assert actions == ["export.requested", "export.branch_creating", "export.branch_ready",
                       "export.database_dumped", "export.manifest_written",
                       "export.verified", "export.succeeded"]

    listed = driver.command("/backup", "exports", user_id=BOB)
    assert listed.status_code == 200
    shown = slack.wait_for(lambda: [r for r in slack.responses(driver.last_response_url)
                                    if export_id in json.dumps(r)], timeout=20)
    assert "last check passed" in json.dumps(shown[-1]) and "main" in json.dumps(shown[-1])

    cli = run_bot_command(["export", "list"], bot_env)
    assert cli.returncode == 0 and export_id in cli.stdout, cli.stderr
    verified = run_bot_command(["export", "verify", export_id], bot_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout and "read whole by pg_restore" in verified.stdout
    assert slack.messages(ALERTS_CHANNEL) == []
    assert_main_untouched(neon, source)
    metrics = httpx.get(f"{bot.url}/metrics", timeout=10).text
    assert 'lifeguard_last_success_timestamp_seconds{work="export"}' in metrics


def test_the_scheduled_export_is_a_job_that_posts_no_card_when_it_succeeds(
        bot_env, neon, slack, s3, bucket):
    fill_main(neon)
    result = run_bot_command(["run-job", "scheduled_export"], bot_env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "export: ok: export" in result.stdout and "succeeded" in result.stdout
    listed = run_bot_command(["export", "list"], bot_env)
    assert "1 finished export(s)" in listed.stdout and "from main" in listed.stdout
    [requested] = [e for e in audit_entries(bot_env) if e["action"] == "export.requested"]
    assert requested["actor"] == "scheduler"
    assert slack.calls_to("chat.postMessage") == []  # quiet: no card, no alert
    assert temporary_branches(neon) == []
