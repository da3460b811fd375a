"""Restore drills end to end: signed requests to the real bot, the fake Slack and Neon on
loopback, branches that are real databases. The drills here restore to 2 s ago
(DRILL_TARGET_AGE), so a checkpoint taken a moment before is what they restore."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.domain.drills import Drill, DrillState
from handlers.drill_blocks import drill_reminder
from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.support.bot_process import ALERTS_CHANNEL, BotProcess, audit_entries
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.restore_steps import write
from tests.support.slack_driver import SlackDriver
from tests.support.waits import first_with_text, wait_for_response

TARGET_AGE = 2.0
DRILL_ID = re.compile(r"Drill `([0-9a-f]{8})` started")


@pytest.fixture
def bot_env(bot_env: dict[str, str]) -> dict[str, str]:
    return {**bot_env, "DRILL_TARGET_AGE": f"{TARGET_AGE:g}s"}


def start(driver: SlackDriver, slack: FakeSlack, user_id: str = ALICE) -> tuple[str, dict]:
    """Type `/drill start`; return the drill id and the acknowledgement."""
    ack = driver.command("/drill", "start", user_id=user_id, channel_id=OPS_CHANNEL)
    assert ack.status_code == 200, ack.text
    body = ack.json()
    assert body["response_type"] == "ephemeral"
    match = DRILL_ID.search(body["text"])
    assert match, body["text"]
    assert f"<#{ALERTS_CHANNEL}>" in body["text"]
    return match.group(1), body


def card(slack: FakeSlack, drill_id: str, words: str = "", timeout: float = 60) -> dict[str, Any]:
    """The drill's report card in the alerts channel, once its text or blocks hold `words`."""
    def cards() -> list[dict[str, Any]]:
        return [{**m, "text": m.get("text", "") + str(m.get("blocks", ""))}
                for m in slack.messages(ALERTS_CHANNEL) if drill_id in m.get("text", "")]
    return first_with_text(slack, cards, words, timeout)


def ask(driver: SlackDriver, slack: FakeSlack, text: str, words: str,
        user_id: str = BOB) -> dict[str, Any]:
    """Type `/drill TEXT`; the ephemeral answer holding `words`."""
    url = slack.new_response_url()
    ack = driver.command("/drill", text, user_id=user_id, response_url=url)
    assert ack.status_code == 200
    answer = wait_for_response(slack, url, words)
    assert answer["response_type"] == "ephemeral"
    return answer


def drill_branches(neon: FakeNeon) -> list[str]:
    return [b["name"] for b in neon.branches() if b["name"].startswith("drill-")]


def actions_of(bot_env: dict[str, str], drill_id: str) -> list[tuple[str, str]]:
    return [(e["action"], e["actor"]) for e in audit_entries(bot_env)
            if e["subject"] == drill_id]


def branch_creates(neon: FakeNeon) -> list[dict[str, Any]]:
    return [r.body["branch"] for r in neon.mutations() if r.method == "POST"
            and r.path.endswith("/branches") and r.body and r.status == 201]


def test_a_drill_end_to_end_reports_each_step_rto_and_rpo_then_deletes_its_branch(
        driver, neon, slack, bot_env):
    write(neon, "main", "kept one", "kept two")
    neon.checkpoint()
    time.sleep(TARGET_AGE + 0.5)
    write(neon, "main", "written after the target instant")  # production moves on

    drill_id, ack = start(driver, slack)
    assert "drill-" in ack["text"]
    done = card(slack, drill_id, f"{drill_id}: succeeded")
    text = done["text"]
    # every step, with its time
    for step in ("Create the drill branch", "Neon makes it ready",
                 "Verify against production", "Delete the drill branch"):
        assert re.search(rf"white_check_mark: {step} · [0-9.]+ s", text), (step, text)
    # the measured RTO, and the RPO from the newest created_at in the restored data
    rto = re.search(r"\*RTO\* \(start → data verified\): \*([0-9.]+) s\*", text)
    assert rto and 0 < float(rto.group(1)) < 60
    rpo = re.search(r"\*RPO\* \(data-loss window\): at most \*([0-9.]+) s\*", text)
    assert rpo and 0 < float(rpo.group(1)) < 30, text
    # verified against live production, which has moved on: shown, allowed
    assert "Verification* (1 table compared" in text and "orders" in text
    assert "allowed" in text
    assert "drill branch deleted" in text
    assert "postgresql://" not in str(slack.calls)  # no connection string ever posted

    # Neon was asked for a branch of main at the target instant, with compute and an expiry
    [created] = branch_creates(neon)
    assert created["name"].startswith("drill-") and created["parent_timestamp"]
    assert created["expires_at"]
    assert drill_branches(neon) == []  # and it was deleted afterwards
    assert len([m for m in slack.messages(ALERTS_CHANNEL) if drill_id in m["text"]]) == 1

    assert actions_of(bot_env, drill_id) == [
        ("drill.requested", ALICE), ("drill.started", "system"),
        ("drill.branch_created", "system"), ("drill.branch_ready", "system"),
        ("drill.verified", "system"), ("drill.branch_deleted", "system"),
        ("drill.succeeded", "system")]

    history = ask(driver, slack, "history", "latest")
    listed = str(history["blocks"])
    assert drill_id in listed and "succeeded" in listed
    assert "RTO" in listed and "RPO ≤" in listed and "1 table compared" in listed
    status = ask(driver, slack, "status", "No restore drill is running")
    assert drill_id in str(status["blocks"]) and "RTO" in str(status["blocks"])


def test_a_drill_that_compared_nothing_fails_says_what_to_do_and_deletes_its_branch(
        driver, neon, slack, bot_env):
    # production has no tables at all: nothing to compare
    empty_id, _ = start(driver, slack)
    empty = card(slack, empty_id, f"{empty_id}: failed")["text"]
    assert "compared no tables" in empty and "has no tables" in empty
    assert "NEON_PROJECT_ID" in empty

    # a table created after the target instant: the restored data cannot have it
    write(neon, "main", "too new")
    drill_id, _ = start(driver, slack)
    failed = card(slack, drill_id, f"{drill_id}: failed")
    text = failed["text"]
    assert f"Restore drill {drill_id}: failed" in failed["text"]
    assert "*What failed* (at “Verify against production”)" in text
    assert "compared no tables" in text and "public.orders" in text
    assert "*What was tried:*" in text and "deleting the drill branch (done)" in text
    assert "*What to do next:*" in text and "DRILL_TARGET_AGE" in text
    assert ":x: Verify against production" in text
    assert "RTO*: not measured" in text
    assert "drill branch deleted" in text
    assert drill_branches(neon) == []  # still deleted
    assert len(branch_creates(neon)) == 2

    actions = [a for a, _ in actions_of(bot_env, drill_id)]
    assert actions[-3:] == ["drill.verified", "drill.branch_deleted", "drill.failed"]
    verified = [e for e in audit_entries(bot_env)
                if e["subject"] == drill_id and e["action"] == "drill.verified"]
    assert verified[0]["details"]["ok"] is False
    assert verified[0]["details"]["compared_tables"] == 0

    history = ask(driver, slack, "history", "latest")
    assert str(history["blocks"]).count("failed") >= 2
    status = ask(driver, slack, "status", "No restore drill is running")
    assert "No drill has succeeded yet" in str(status["blocks"])


def test_neon_trouble_is_reported_with_what_was_tried_and_the_branch_is_cleaned_up(
        driver, neon, slack, bot_env):
    # Neon refuses the create: nothing to delete, the card says so and what to do
    neon.fail_next(422, method="POST", path_contains="/branches",
                   message="branches limit exceeded")
    refused_id, _ = start(driver, slack)
    text = card(slack, refused_id, f"{refused_id}: failed")["text"]
    assert "*What failed* (at “Create the drill branch”)" in text
    assert "branches limit exceeded" in text
    assert "creating `drill-" in text and "(failed)" in text
    assert "*What to do next:*" in text and "/drill start" in text
    assert drill_branches(neon) == []

    # Neon refuses to delete the drill branch: the drill fails and says what to delete
    write(neon, "main", "kept")
    neon.checkpoint()
    time.sleep(TARGET_AGE + 0.5)
    neon.fail_next(422, method="DELETE", path_contains="/branches/",
                   message="the branch is being used")
    drill_id, _ = start(driver, slack)
    failed = card(slack, drill_id, f"{drill_id}: failed")["text"]
    [left] = drill_branches(neon)
    assert f"`{left}` could not be deleted" in failed and "the branch is being used" in failed
    assert f"Delete branch `{left}` in the Neon console" in failed
    assert f"`{left}` still exists" in failed
    assert ":white_check_mark: Verify against production" in failed  # the restore itself held
    assert "*RTO* (start → data verified)" in failed
    actions = [a for a, _ in actions_of(bot_env, drill_id)]
    assert actions[-2:] == ["drill.cleanup_failed", "drill.failed"]


def test_the_reminders_start_button_starts_a_drill_and_one_runs_at_a_time(
        driver, neon, slack, bot_env):
    write(neon, "main", "kept")
    neon.checkpoint()
    time.sleep(TARGET_AGE + 0.5)
    reminder = drill_reminder()
    slack.add_message(ALERTS_CHANNEL, reminder["text"], user=slack.bot_user_id,
                      blocks=reminder["blocks"])
    neon.operation_seconds = 1.0  # long enough for the second click to meet the first drill

    url = slack.new_response_url()
    clicked = driver.click("drill.start", "start", user_id=BOB, channel_id=ALERTS_CHANNEL,
                           response_url=url)
    assert clicked.status_code == 200
    told = wait_for_response(slack, url, "started")
    match = DRILL_ID.search(told["text"])
    assert match, told["text"]
    drill_id = match.group(1)

    again = slack.new_response_url()
    driver.click("drill.start", "start", user_id=ALICE, channel_id=ALERTS_CHANNEL,
                 response_url=again)
    refused = wait_for_response(slack, again, "one drill runs at a time")
    assert drill_id in refused["text"] and refused["response_type"] == "ephemeral"

    card(slack, drill_id, f"{drill_id}: succeeded", timeout=90)
    assert actions_of(bot_env, drill_id)[0] == ("drill.requested", BOB)
    assert len(branch_creates(neon)) == 1
    assert drill_branches(neon) == []


def test_bad_drill_input_is_explained_only_to_the_asker_and_nothing_runs(
        driver, neon, slack, bot_env):
    for text, words in (("stop", "is not a /drill command"),
                        ("start now please", "takes nothing after it"),
                        ("history 5", "takes nothing after it"),
                        ("", "Restore drills"), ("help", "Restore drills")):
        ack = driver.command("/drill", text, user_id=ALICE)
        assert ack.status_code == 200
        body = ack.json()
        assert body["response_type"] == "ephemeral"
        assert words in body["text"], body["text"]
        assert "/drill start" in body["text"] and "/drill history" in body["text"]
    time.sleep(1.0)
    assert neon.mutations() == []
    assert slack.messages(ALERTS_CHANNEL) == []
    assert not [e for e in audit_entries(bot_env) if e["action"].startswith("drill.")]


def test_sigkill_while_neon_works_then_restart_finishes_the_drill(
        bot_env, neon, slack, driver, bot):
    write(neon, "main", "kept")
    neon.checkpoint()
    time.sleep(TARGET_AGE + 0.5)
    neon.operation_seconds = 4.0
    drill_id, _ = start(driver, slack)
    card(slack, drill_id, "Neon is creating the drill branch")
    bot.kill()
    with BotProcess(bot_env):
        done = card(slack, drill_id, f"{drill_id}: succeeded", timeout=90)
    assert "RTO" in done["text"] and drill_branches(neon) == []
    assert len(branch_creates(neon)) == 1  # the restarted bot did not create a second
    assert len([m for m in slack.messages(ALERTS_CHANNEL) if drill_id in m["text"]]) == 1
    actions = [a for a, _ in actions_of(bot_env, drill_id)]
    assert actions.count("drill.branch_created") == 1
    assert actions[-1] == "drill.succeeded"


def test_the_reminder_says_when_the_last_drill_succeeded():
    now = datetime.fromisoformat("2026-04-06T09:00:00+00:00")
    message = drill_reminder(None, now=now)
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    [button] = actions["elements"]
    assert button["action_id"] == "drill.start" and button["text"]["text"] == "Start drill"
    assert "No restore drill has succeeded yet" in str(message["blocks"])
    last = Drill(id="1a2b3c4d", state=DrillState.SUCCEEDED, started_by=ALICE,
                 target_instant=now - timedelta(days=92), branch_name="drill-20260105-090000",
                 created_at=now - timedelta(days=91), updated_at=now - timedelta(days=91),
                 rto_seconds=42.0, rpo_seconds=3.0)
    assert "91 d ago (RTO 42 s, RPO ≤ 3.0 s)" in str(drill_reminder(last, now=now)["blocks"])
