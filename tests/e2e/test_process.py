"""The process itself: start-up settings, the health check, doctor, migrate, the audit
commands. Each runs `python -m bot` as an operator would."""

from __future__ import annotations

import sqlite3
import time

import httpx
import psycopg

from tests.e2e.conftest import ALICE, OPS_CHANNEL
from tests.support.bot_process import BotProcess, audit_entries, run_bot_command
from tests.support.waits import wait_for_card

REQUIRED = ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "NEON_API_KEY", "NEON_PROJECT_ID",
            "APPROVALS_CHANNEL", "ALERTS_CHANNEL"]


def test_starting_without_settings_names_every_missing_variable(bot_env):
    bare = {k: v for k, v in bot_env.items() if k not in REQUIRED}
    result = run_bot_command([], bare, timeout=30)
    assert result.returncode != 0
    for name in REQUIRED:
        assert f"{name} is missing" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_settings_are_named_with_what_is_accepted(bot_env):
    env = {**bot_env, "APPROVAL_TTL": "half an hour", "ALERTS_CHANNEL": "#alerts",
           "NEON_API_KEY": "", "SLACK_BOT_TOKEN": "xoxp-user-token"}
    result = run_bot_command([], env, timeout=30)
    assert result.returncode != 0
    assert "APPROVAL_TTL is malformed" in result.stderr and "10m" in result.stderr
    assert "ALERTS_CHANNEL is malformed" in result.stderr
    assert "SLACK_BOT_TOKEN is malformed" in result.stderr
    assert "xoxp-user-token" not in result.stderr  # secrets never echoed


def test_healthz_is_200_while_the_store_answers_and_503_when_it_does_not(
        bot_env, postgres, neon, slack):
    url = postgres.create_database("health_store")
    with BotProcess({**bot_env, "DATABASE_URL": url}) as bot:
        ok = httpx.get(f"{bot.url}/healthz")
        assert ok.status_code == 200 and ok.json()["store"] == "ok"
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
            conn.execute("DROP DATABASE health_store WITH (FORCE)")
        down = httpx.get(f"{bot.url}/healthz")
        assert down.status_code == 503
        assert "store" in down.json()


def test_doctor_is_all_green_against_the_fakes(bot_env, neon, slack):
    run_bot_command(["migrate"], bot_env)
    result = run_bot_command(["doctor"], bot_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All green." in result.stdout
    for part in ("Settings", "Slack", "APPROVALS_CHANNEL", "ALERTS_CHANNEL", "Neon", "pg_dump",
                 "Store"):
        assert f"[ok  ] {part}" in result.stdout


def test_doctor_names_each_broken_part(bot_env, neon, slack):
    run_bot_command(["migrate"], bot_env)
    neon.api_key = "another-key"
    try:
        result = run_bot_command(["doctor"], bot_env)
    finally:
        neon.api_key = "neon-test-key"
    assert result.returncode == 1
    assert "[FAIL] Neon: Neon refused the API key." in result.stdout
    assert "NEON_API_KEY" in result.stdout
    assert "[ok  ] Slack" in result.stdout

    result = run_bot_command(["doctor"], {**bot_env, "SLACK_BOT_TOKEN": "xoxb-revoked"})
    assert result.returncode == 1
    assert "[FAIL] Slack: Slack refused the bot token (invalid_auth)" in result.stdout

    result = run_bot_command(["doctor"], {**bot_env, "NEON_PROJECT_ID": "no-such-project"})
    assert "[FAIL] Neon: Neon does not know NEON_PROJECT_ID." in result.stdout

    result = run_bot_command(
        ["doctor"], {**bot_env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    assert result.returncode == 1
    assert "[FAIL] Store" in result.stdout and "DATABASE_URL" in result.stdout

    result = run_bot_command(["doctor"], {**bot_env, "NEON_API_KEY": ""})
    assert result.returncode == 1
    assert "[FAIL] Settings" in result.stdout and "NEON_API_KEY" in result.stdout


def test_audit_verify_detects_an_edited_entry(driver, bot, bot_env, slack):
    driver.command("/backup", "now first", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    bot.stop()
    ok = run_bot_command(["audit", "verify"], bot_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Audit trail intact" in ok.stdout
    entries = audit_entries(bot_env)
    assert len(entries) >= 3

    path = bot_env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # an editor with direct database access
        triggers = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_entries'")]
        for name in triggers:
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE audit_entries SET actor = 'U0MALLORY' WHERE seq = 2")
    broken = run_bot_command(["audit", "verify"], bot_env)
    assert broken.returncode == 1
    assert "BROKEN at entry #2" in broken.stdout


def test_audit_export_csv_and_since(driver, bot, bot_env, slack):
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    csv_out = run_bot_command(["audit", "export", "--format", "csv"], bot_env)
    assert csv_out.returncode == 0
    header = csv_out.stdout.splitlines()[0]
    assert "seq" in header and "actor" in header and "hash" in header
    later = run_bot_command(["audit", "export", "--since", "2999-01-01"], bot_env)
    assert later.returncode == 0 and later.stdout.strip() == ""
    bad = run_bot_command(["audit", "export", "--since", "yesterday-ish"], bot_env)
    assert bad.returncode != 0 and "2026-01-13" in bad.stderr


def test_migrate_is_idempotent_and_independent_of_the_working_directory(bot_env, tmp_path):
    first = run_bot_command(["migrate"], bot_env, cwd=tmp_path)
    second = run_bot_command(["migrate"], bot_env)
    assert first.returncode == 0 and second.returncode == 0
    assert "up to date" in second.stdout


def test_sigterm_stops_the_bot_cleanly(bot):
    assert bot.process is not None
    bot.process.terminate()
    deadline = time.monotonic() + 10
    while bot.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bot.process.returncode == 0, bot.log()


def test_socket_mode_serves_health_and_keeps_trying_to_reach_slack(bot_env, slack, neon):
    env = {k: v for k, v in bot_env.items() if k != "SLACK_SIGNING_SECRET"}
    env["SLACK_APP_TOKEN"] = "xapp-1-test-token"
    with BotProcess(env) as bot:  # starts although Slack refuses the connection
        assert httpx.get(f"{bot.url}/healthz").status_code == 200
        # Slack reaches the bot over the socket: the HTTP endpoint is off
        assert httpx.post(f"{bot.url}/slack/events", content=b"{}").status_code == 404
        opened = slack.wait_for(
            lambda: (calls := slack.calls_to("apps.connections.open")) and len(calls) >= 2
            and calls, timeout=20)
        assert all(call.token == "xapp-1-test-token" for call in opened)
        assert "trying again" in bot.log()
