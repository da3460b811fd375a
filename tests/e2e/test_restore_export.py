"""`/restore export <export-id>` end to end: signed Slack requests to the real bot, the
fake Neon (branches are real databases), exports taken with the archive directly into the
moto S3 server. Asked by ALICE, approved by BOB, the restore branch must hold exactly what
the export holds (row by row, no table and no database the export lacks) while the live
branch is untouched; then `/restore promote` applies as for any restore."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.conftest import ALICE, BOB
from tests.e2e.export_support import export_settings as bot_export_settings
from tests.support.bot_process import SIGNING_SECRET, BotProcess, audit_entries
from tests.support.exports import (
    SECOND_SCHEMA,
    SOURCE_SCHEMA,
    AgeKey,
    archive_of,
    table_digests,
    take_export,
)
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.postgres import PostgresServer
from tests.support.restore_steps import ask, card, click
from tests.support.s3 import S3Server
from tests.support.slack_driver import SlackDriver
from tests.support.waits import wait_for_response

APPROVE = "request.approve"


@pytest.fixture
def bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in s3.environment().items():  # the test's own archive uses them too
        monkeypatch.setenv(name, value)
    return s3.create_bucket()


def export_settings(s3: S3Server, bucket: str, key: AgeKey, *,
                    identity: bool = True) -> dict[str, str]:
    settings = bot_export_settings(s3, bucket, key.recipient, key.identity_file)
    if not identity:
        del settings["EXPORT_IDENTITY"]
    return settings


@pytest.fixture
def exporting_bot(bot_env: dict[str, str], s3: S3Server, bucket: str,
                  key: AgeKey) -> Iterator[tuple[BotProcess, dict[str, str]]]:
    env = bot_env | export_settings(s3, bucket, key)
    with BotProcess(env) as process:
        yield process, env


def driver_for(bot: BotProcess, slack: FakeSlack) -> SlackDriver:
    return SlackDriver(bot.url, SIGNING_SECRET, slack)


def restore_branches(neon: FakeNeon) -> list[str]:
    return [b["name"] for b in neon.branches() if b["name"].startswith("restore-")]


def fill_main(neon: FakeNeon) -> None:
    with psycopg.connect(neon.connect_url("main"), autocommit=True) as conn:
        conn.execute(SOURCE_SCHEMA)


def change_main_after_the_export(neon: FakeNeon) -> None:
    with psycopg.connect(neon.connect_url("main"), autocommit=True) as conn:
        conn.execute("CREATE TABLE after_export (id int); INSERT INTO after_export VALUES (1);"
                     "DELETE FROM orders WHERE id <= 10")


def test_an_approved_export_restore_holds_exactly_the_export_then_promotes(
        exporting_bot, neon, slack, s3, bucket, key):
    bot, env = exporting_bot
    driver = driver_for(bot, slack)
    fill_main(neon)
    exported = table_digests(neon.connect_url("main"))
    archive = archive_of(s3, bucket, neon.project_id, key)
    take_export(archive, "exp-1", {"neondb": neon.connect_url("main")})
    change_main_after_the_export(neon)
    live = table_digests(neon.connect_url("main"))

    request_id = ask(driver, slack, "export exp-1 <!channel> lost the project", ALICE)
    pending = card(slack, request_id, "waiting for approval")
    text = pending["text"]
    assert "Restore from an export" in text and "export `exp-1`" in text
    assert "from branch `main`" in text and "`neondb` (" in text and "4 tables" in text
    assert "&lt;!channel&gt; lost the project" in text and "<!channel>" not in text
    assert restore_branches(neon) == []

    click(driver, slack, APPROVE, request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=120)
    assert "against the export&#x27;s manifest" in done["text"] or \
        "against the export's manifest" in done["text"]
    assert "Verified 4 tables" in done["text"]
    [branch] = restore_branches(neon)
    # exactly the export: the rows it held, not the table or the deletes that came after
    assert table_digests(neon.connect_url(branch)) == exported
    assert neon.database_names(branch) == ["neondb"]
    assert table_digests(neon.connect_url("main")) == live  # production untouched
    assert "postgresql://" not in str(slack.calls)
    actions = [e["action"] for e in audit_entries(env) if e["subject"] == request_id]
    assert actions[:2] == ["request.created", "request.approved"]
    assert "request.export_checked" in actions and "request.database_restored" in actions
    assert actions[-1] == "request.succeeded"

    promotion = ask(driver, slack, f"promote {branch} back to the export", ALICE)
    click(driver, slack, APPROVE, promotion, BOB)
    card(slack, promotion, "done (approved by", timeout=120)
    assert table_digests(neon.connect_url("main")) == exported


def test_an_export_of_two_databases_restores_both_and_nothing_else(
        exporting_bot, neon, slack, s3, bucket, key, postgres: PostgresServer):
    bot, _ = exporting_bot
    fill_main(neon)
    analytics = postgres.create_database("export_e2e_analytics")
    with psycopg.connect(analytics, autocommit=True) as conn:
        conn.execute(SECOND_SCHEMA)
    archive = archive_of(s3, bucket, neon.project_id, key)
    take_export(archive, "exp-2", {"neondb": neon.connect_url("main"), "analytics": analytics})
    expected = {"neondb": table_digests(neon.connect_url("main")),
                "analytics": table_digests(analytics)}

    driver = driver_for(bot, slack)
    request_id = ask(driver, slack, "export exp-2", ALICE)
    assert "`analytics` (" in card(slack, request_id, "waiting for approval")["text"]
    click(driver, slack, APPROVE, request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=120)
    assert "Verified 5 tables" in done["text"]
    [branch] = restore_branches(neon)
    assert sorted(neon.database_names(branch)) == ["analytics", "neondb"]
    assert {name: table_digests(neon.connect_url(branch, name)) for name in expected} \
        == expected


def test_a_corrupt_object_fails_the_request_and_leaves_no_branch(
        exporting_bot, neon, slack, s3, bucket, key):
    bot, env = exporting_bot
    fill_main(neon)
    archive = archive_of(s3, bucket, neon.project_id, key)
    folder, manifest = take_export(archive, "exp-bad", {"neondb": neon.connect_url("main")})
    object_key = f"lifeguard/{folder}{manifest.databases[0].file}"
    client = s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=object_key)["Body"].read())
    data[len(data) // 3] ^= 0x20
    client.put_object(Bucket=bucket, Key=object_key, Body=bytes(data))

    driver = driver_for(bot, slack)
    request_id = ask(driver, slack, "export exp-bad", ALICE)
    click(driver, slack, APPROVE, request_id, BOB)
    failed = card(slack, request_id, "failed", timeout=120)
    assert "does not match its manifest" in failed["text"] and "SHA-256" in failed["text"]
    assert "nothing was restored" in failed["text"]
    assert restore_branches(neon) == []
    actions = [e["action"] for e in audit_entries(env) if e["subject"] == request_id]
    assert "request.failed" in actions and "request.branch_created" not in actions


def refused_privately(driver: SlackDriver, slack: FakeSlack, text: str, words: str) -> str:
    url = slack.new_response_url()
    ack = driver.command("/restore", text, user_id=ALICE, response_url=url)
    assert ack.status_code == 200
    if words in ack.text:
        return ack.text
    answer = wait_for_response(slack, url, words)
    assert answer["response_type"] == "ephemeral"
    return answer["text"]


def test_refusals_are_private_and_ask_nothing(bot_env, neon, slack, s3, bucket, key):
    archive = archive_of(s3, bucket, neon.project_id, key)
    fill_main(neon)
    take_export(archive, "exp-old", {"neondb": neon.connect_url("main")})
    with BotProcess(bot_env) as plain:  # exports not configured
        said = refused_privately(driver_for(plain, slack), slack, "export exp-old",
                                 "not configured")
        assert "EXPORT_URL" in said and "EXPORT_IDENTITY" in said
    with BotProcess(bot_env | export_settings(s3, bucket, key, identity=False)) as keyless:
        said = refused_privately(driver_for(keyless, slack), slack, "export exp-old",
                                 "EXPORT_IDENTITY is not set")
        assert "cannot decrypt" in said
    with BotProcess(bot_env | export_settings(s3, bucket, key)) as bot:
        driver = driver_for(bot, slack)
        said = refused_privately(driver, slack, "export exp-nope", "no finished export")
        assert "exp-old" in said and "/backup exports" in said
        said = refused_privately(driver, slack, "export ../../etc <b>", "needs an export id")
        assert "<b>" not in said
        said = refused_privately(driver, slack, "export", "needs an export id")
    assert [m for m in slack.messages("C0APPROVALS")] == []  # no card: nothing was asked
    assert restore_branches(neon) == []
