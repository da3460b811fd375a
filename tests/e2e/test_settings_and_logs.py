"""The process with the settings an operator copies from `.env.example`, and its logs as a
log shipper reads them (`LOG_FORMAT=json`). Each runs `python -m bot` as a deploy would."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

from tests.e2e.conftest import ALICE, OPS_CHANNEL
from tests.support.bot_process import (
    BOT_TOKEN,
    PROJECT_ROOT,
    SIGNING_SECRET,
    BotProcess,
    run_bot_command,
)
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.postgres import PostgresServer
from tests.support.slack_driver import SlackDriver
from tests.support.waits import wait_for_card

TO_FILL_IN = ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "NEON_API_KEY", "NEON_PROJECT_ID",
              "APPROVALS_CHANNEL", "ALERTS_CHANNEL"]


def env_example_folder(tmp_path: Path) -> Path:
    """A working directory whose .env is `.env.example`, copied and not filled in."""
    folder = tmp_path / "deploy"
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / ".env.example", folder / ".env")
    return folder


def test_starting_with_the_env_example_names_each_placeholder(bot_env, tmp_path):
    bare = {k: v for k, v in bot_env.items() if k not in TO_FILL_IN}
    result = run_bot_command([], bare, cwd=env_example_folder(tmp_path), timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("Lifeguard cannot start")
    for name in TO_FILL_IN:
        assert f"{name} is still a placeholder" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_says_which_settings_are_placeholders(bot_env, tmp_path):
    bare = {k: v for k, v in bot_env.items() if k not in TO_FILL_IN}
    env = {**bare, "SLACK_BOT_TOKEN": "xoxb-your-bot-token"}  # the environment wins over .env
    result = run_bot_command(["doctor"], env, cwd=env_example_folder(tmp_path), timeout=30)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(failed) == len(TO_FILL_IN), result.stdout
    for name, line in zip(TO_FILL_IN, failed, strict=True):
        assert line.startswith(f"[FAIL] Settings: {name} is still a placeholder"), line
    assert "xoxb-your-bot-token" not in result.stdout
    assert "Not ready: Settings." in result.stdout


def test_json_logs_are_one_object_a_line_with_job_ids_and_no_secrets(
        bot_env, postgres: PostgresServer, neon: FakeNeon, slack: FakeSlack):
    # The test server trusts local connections: any password works, and must not show.
    store_password = "hunter2-store-password"
    store = postgres.create_database("json_logs_store").replace(
        "postgresql://postgres@", f"postgresql://postgres:{store_password}@")
    secrets = [BOT_TOKEN, SIGNING_SECRET, neon.api_key, store_password]
    env = {**bot_env, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "DATABASE_URL": store}
    with BotProcess(env) as bot:
        driver = SlackDriver(bot.url, SIGNING_SECRET, slack)
        driver.command("/backup", "now before the release", user_id=ALICE,
                       channel_id=OPS_CHANNEL)
        wait_for_card(slack, OPS_CHANNEL, "is ready")
        # Someone pastes secrets into a command: the answer quotes them back to them, and
        # Bolt logs that answer at DEBUG.
        pasted = driver.command("/backup", f"list {' '.join(secrets)} {store}",
                                user_id=ALICE, channel_id=OPS_CHANNEL)
        assert pasted.status_code == 200 and BOT_TOKEN in pasted.text
    output = bot.log()

    entries = []
    for number, line in enumerate(output.splitlines(), start=1):
        entry = json.loads(line)  # every line, stdout and stderr alike
        assert isinstance(entry, dict), f"line {number}: {line}"
        entries.append(entry)
    assert len(entries) > 20
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["time"].endswith("Z")
        assert datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0
    for secret in secrets:
        assert secret not in output
    answers = [e for e in entries if "Responding with status" in e["message"]
               and "takes nothing after it" in e["message"]]
    assert answers and "[redacted]" in answers[0]["message"]  # the path that would leak
    job_lines = [e for e in entries if e.get("job", "").startswith("backup backup-")]
    assert job_lines and all(len(e["job_id"]) == 12 for e in job_lines)
    assert any(e["logger"] == "lifeguard.neon" for e in job_lines)
    assert not [e for e in entries if e["logger"].startswith("alembic")]  # migrations quiet
