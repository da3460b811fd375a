"""Exports that cannot be done, end to end: each fault tells the requester what was wrong,
alerts ALERTS_CHANNEL, leaves no manifest, no object, no unfinished upload and no
temporary branch behind, and the audit trail says what happened. Objects Lifeguard did not
write are never touched. A SIGKILL of the bot in the middle of a dump ends, after a
restart, in a complete verified export or a cleaned-up failed one, never a listed half."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import ALICE, OPS_CHANNEL
from tests.e2e.export_support import (
    PREFIX,
    add_random_bytes,
    audit_of,
    dumps_running,
    export_settings,
    fill_main,
    folder_keys,
    make_keys,
    temporary_branches,
    wait_until,
)
from tests.support.bot_process import (
    ALERTS_CHANNEL,
    SIGNING_SECRET,
    BotProcess,
    audit_entries,
    run_bot_command,
)
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.postgres import PostgresServer
from tests.support.s3 import FailingProxy, S3Server
from tests.support.slack_driver import SlackDriver
from tests.support.waits import wait_for_card

FAILED = "failed"
FOREIGN = {"lifeguard/notes.txt": b"kept by someone else",
           "lifeguard/other-project/20260101-000000-abc/manifest.json": b"{}"}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, Path]:
    return make_keys(tmp_path)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A bucket that already holds objects Lifeguard did not write."""
    name = s3.create_bucket()
    for key, body in FOREIGN.items():
        s3.client().put_object(Bucket=name, Key=key, Body=body)
    return name


def start(env: dict[str, str], slack: FakeSlack) -> tuple[BotProcess, SlackDriver]:
    bot = BotProcess(env).start()
    return bot, SlackDriver(bot.url, SIGNING_SECRET, slack)


def ask_export(driver: SlackDriver, text: str = "export nightly copy") -> dict:
    response = driver.command("/backup", text, user_id=ALICE, channel_id=OPS_CHANNEL)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response_type"] == "ephemeral"
    return body


def export_id_in(text: str) -> str:
    return text.split("`")[1]


def assert_nothing_left(s3: S3Server, bucket: str | None, neon: FakeNeon) -> None:
    if bucket is not None:
        keys = folder_keys(s3, bucket)
        assert sorted(keys) == sorted(FOREIGN), keys  # only what someone else wrote
        for key, body in FOREIGN.items():
            assert s3.client().get_object(Bucket=bucket, Key=key)["Body"].read() == body
        assert s3.uploads_in_progress(bucket) == []
    assert temporary_branches(neon) == []


def assert_failed_cleanly(slack: FakeSlack, s3: S3Server, bucket: str | None, neon: FakeNeon,
                          bot_env: dict[str, str], export_id: str, cause: str, *,
                          source: str = "main") -> None:
    card = wait_for_card(slack, OPS_CHANNEL, f"Export `{export_id}` of ", timeout=30)
    card = wait_for_card(slack, OPS_CHANNEL, f"`{export_id}` of {source} failed", timeout=90)
    text = json.dumps(card["blocks"])
    assert cause in text, text
    alert = wait_for_card(slack, ALERTS_CHANNEL, export_id, timeout=30)
    assert cause in json.dumps(alert)
    assert_nothing_left(s3, bucket, neon)
    actions = [a for a in audit_of(audit_entries(bot_env), export_id)
               if a.startswith("export.")]
    assert actions[0] == "export.requested" and "export.failed" in actions
    assert actions[-1] == "export.cleaned_up", actions
    failed = next(e for e in audit_entries(bot_env) if e["subject"] == export_id
                  and e["action"] == "export.failed")
    assert cause.split("`")[0][:30] in json.dumps(failed["details"])


def test_an_unknown_branch_is_refused_saying_what_is_accepted(bot_env, s3, bucket, keys,
                                                             neon, slack):
    bot, driver = start(bot_env | export_settings(s3, bucket, *keys), slack)
    try:
        for branch in ("backup-20990101-000000", "restore-main-x", "br-no-such-branch"):
            answer = ask_export(driver, f"export {branch} before the migration")
            assert f"`{branch}` is not a backup branch Lifeguard took" in answer["text"]
            assert "copies the default branch when no branch is named" in answer["text"]
        wait_for_card(slack, ALERTS_CHANNEL, "was refused", timeout=20)
    finally:
        bot.stop()
    assert neon.mutations() == []
    assert_nothing_left(s3, bucket, neon)
    refused = [e for e in audit_entries(bot_env) if e["action"] == "export.refused"]
    assert [e["details"]["source"] for e in refused] == [
        "backup-20990101-000000", "restore-main-x", "br-no-such-branch"]


def test_exports_not_configured_say_which_settings_to_set(bot_env, neon, slack):
    bot, driver = start(bot_env, slack)  # no EXPORT_* at all
    try:
        answer = ask_export(driver)
        assert "Exports are off" in answer["text"]
        assert "`EXPORT_URL`" in answer["text"] and "`EXPORT_RECIPIENTS`" in answer["text"]
        listed = driver.command("/backup", "exports", user_id=ALICE).json()
        assert "Exports are off" in listed["text"]
        wait_for_card(slack, ALERTS_CHANNEL, "was refused", timeout=20)
    finally:
        bot.stop()
    assert neon.mutations() == []
    assert [e["action"] for e in audit_entries(bot_env)
            if e["action"].startswith("export.")] == ["export.refused"]


def test_a_bucket_that_does_not_exist(bot_env, s3, keys, neon, slack):
    bot, driver = start(bot_env | export_settings(s3, "no-such-bucket-here", *keys), slack)
    try:
        export_id = export_id_in(ask_export(driver)["text"])
        assert_failed_cleanly(slack, s3, None, neon, bot_env, export_id,
                              "bucket 'no-such-bucket-here' does not exist",
                              source="the default branch")
    finally:
        bot.stop()
    assert [r for r in neon.mutations()] == []  # refused before any branch was made


def test_credentials_the_bucket_refuses(bot_env, s3, bucket, keys, neon, slack):
    env = bot_env | export_settings(s3, bucket, *keys, credentials=s3.nobody)
    bot, driver = start(env, slack)
    try:
        export_id = export_id_in(ask_export(driver)["text"])
        assert_failed_cleanly(slack, s3, bucket, neon, bot_env, export_id,
                              "check the credentials", source="the default branch")
    finally:
        bot.stop()
    assert neon.mutations() == []
    doctor = run_bot_command(["doctor"], env)
    assert "[FAIL] Exports:" in doctor.stdout and "check the credentials" in doctor.stdout


def test_an_upload_that_fails_half_way(bot_env, s3, bucket, keys, neon, slack):
    fill_main(neon)
    add_random_bytes(neon, 12)  # more than one 8 MiB part once encrypted

    def second_part(method: str, path: str) -> bool:
        return method == "PUT" and "partNumber=2" in path

    with FailingProxy(s3.endpoint, second_part) as proxy:
        env = bot_env | export_settings(s3, bucket, *keys, endpoint=proxy.endpoint)
        bot, driver = start(env, slack)
        try:
            export_id = export_id_in(ask_export(driver)["text"])
            assert_failed_cleanly(slack, s3, bucket, neon, bot_env, export_id,
                                  "InternalError")
        finally:
            bot.stop()
        assert proxy.failed  # the failure was the store's, half-way through


@pytest.mark.parametrize("how", ["exits non-zero", "is killed"])
def test_a_pg_dump_that_fails(bot_env, s3, bucket, keys, neon, slack,
                              postgres: PostgresServer, how):
    fill_main(neon)
    add_random_bytes(neon, 24)  # long enough a dump to stop it while it runs
    bot, driver = start(bot_env | export_settings(s3, bucket, *keys), slack)
    try:
        export_id = export_id_in(ask_export(driver)["text"])
        if how == "is killed":
            [pg_dump] = wait_until(lambda: dumps_running(bot.process.pid), 60,
                                   "pg_dump to start")
            pg_dump.send_signal(signal.SIGKILL)
            cause = "pg_dump was killed (SIGKILL)"
        else:
            with psycopg.connect(postgres.url(), autocommit=True) as admin:
                wait_until(lambda: admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'pg_dump'").fetchall(), 60, "pg_dump's session")
            cause = "pg_dump exited with code 1"
        assert_failed_cleanly(slack, s3, bucket, neon, bot_env, export_id, cause)
    finally:
        bot.stop()


def test_sigkill_during_the_dump_then_restart_ends_whole_or_cleaned_up(
        bot_env, s3, bucket, keys, neon, slack):
    fill_main(neon)
    add_random_bytes(neon, 24)
    env = bot_env | export_settings(s3, bucket, *keys)
    bot, driver = start(env, slack)
    try:
        export_id = export_id_in(ask_export(driver)["text"])
        wait_until(lambda: dumps_running(bot.process.pid), 60, "pg_dump")
        # the card shows the dump's progress as it goes: bytes written, time elapsed
        progress = slack.wait_for(lambda: next(
            (m for m in slack.messages(OPS_CHANNEL) if "MiB written" in json.dumps(m)
             and "elapsed" in json.dumps(m)), None), timeout=30)
        assert "dumping database" in json.dumps(progress["blocks"])
        bot.kill()
    finally:
        bot.stop()
    # Whatever the kill left (parts of an upload, a branch) is never a listed export.
    listed = run_bot_command(["export", "list"], env)
    assert listed.returncode == 0 and export_id not in listed.stdout

    with BotProcess(env):
        card = wait_for_card(slack, OPS_CHANNEL, f"`{export_id}`", timeout=5)
        done = slack.wait_for(lambda: next(
            (m for m in slack.messages(OPS_CHANNEL) if "verified" in m["text"]
             or FAILED in m["text"]), None), timeout=120)
    assert done["ts"] == card["ts"] and len(slack.messages(OPS_CHANNEL)) == 1
    assert temporary_branches(neon) == [] and s3.uploads_in_progress(bucket) == []
    listed = run_bot_command(["export", "list"], env)
    actions = [a for a in audit_of(audit_entries(env), export_id) if a.startswith("export.")]
    if "verified" in done["text"]:
        assert export_id in listed.stdout
        verified = run_bot_command(["export", "verify", export_id], env)
        assert verified.returncode == 0, verified.stdout
        assert actions[-1] == "export.succeeded"
        names = [k.rsplit("/", 1)[1] for k in folder_keys(s3, bucket) if export_id in k]
        assert sorted(names) == ["SHA256SUMS", "manifest.json", "neondb.dump.zst.age"]
    else:
        assert export_id not in listed.stdout
        assert_nothing_left(s3, bucket, neon)
        assert actions[-1] == "export.cleaned_up"
    assert f"{PREFIX}/notes.txt" in folder_keys(s3, bucket)
