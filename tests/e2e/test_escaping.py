"""Text Lifeguard did not write shows as text, end to end: signed requests to the real bot,
the fake Slack recording every message it is sent, the fake Neon's branches as real
databases. A reason typed to ping the approvals channel, a production table named to do
the same and a branch name typed to `/backup delete` reach Slack escaped (`&lt;!channel&gt;`),
never as markup Slack would act on; Lifeguard's own mentions and links still work."""

from __future__ import annotations

import html
import time
from datetime import UTC
from typing import Any

from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.support.bot_process import APPROVALS_CHANNEL
from tests.support.fake_slack import FakeSlack
from tests.support.mrkdwn import (
    HOSTILE,
    HOSTILE_SHOWN,
    assert_markup_is_lifeguards,
    assert_shows_as_text,
    mrkdwn_texts,
    outside_markup,
)
from tests.support.restore_steps import REQUEST_ID, card, click, write
from tests.support.slack_driver import SlackDriver
from tests.support.waits import wait_for_card, wait_for_response

APPROVE = "request.approve"
HOSTILE_TABLE = '"<!channel>"'  # quoted: PostgreSQL takes the name as it is written
POSTING = ("chat.postMessage", "chat.update", "chat.postEphemeral", "views.publish",
           "views.open", "views.update")


def everything_sent(slack: FakeSlack) -> list[Any]:
    """Every message, update and view the bot sent to Slack, and every answer it posted to
    a response_url."""
    return ([call.args for call in slack.calls if call.method in POSTING]
            + slack.responses())


def assert_nothing_sent_is_outside_markup(slack: FakeSlack) -> None:
    for sent in everything_sent(slack):
        assert outside_markup(sent) == [], sent
        assert_markup_is_lifeguards(sent)


def card_messages(slack: FakeSlack, request_id: str) -> list[dict[str, Any]]:
    """What the approval card was posted and updated as, in order."""
    return [call.args for call in slack.calls
            if call.method in ("chat.postMessage", "chat.update")
            and call.args.get("channel") == APPROVALS_CHANNEL
            and request_id in str(call.args.get("text", ""))]


def approver_dms(slack: FakeSlack) -> list[dict[str, Any]]:
    return [call.args for call in slack.calls_to("chat.postMessage")
            if str(call.args.get("channel", "")).startswith("D")]


def ask_restore(driver: SlackDriver, slack: FakeSlack, text: str) -> tuple[str, dict, dict]:
    """Alice types `/restore TEXT`: the request id, the acknowledgement, the answer."""
    url = slack.new_response_url()
    ack = driver.command("/restore", text, user_id=ALICE, channel_id=OPS_CHANNEL,
                         response_url=url)
    assert ack.status_code == 200, ack.text
    answer = wait_for_response(slack, url, "waiting for approval")
    match = REQUEST_ID.search(answer["text"])
    assert match, answer["text"]
    return match.group(1), ack.json(), answer


def test_a_hostile_reason_shows_as_text_on_the_card_its_updates_and_every_answer(
        driver, neon, slack, bot_env):
    request_id, checking, answer = ask_restore(driver, slack, f"5 minutes ago {HOSTILE}")
    assert_shows_as_text(checking)  # ":mag: Checking `/restore 5 minutes ago …`"
    assert_markup_is_lifeguards(answer)
    assert f"<#{APPROVALS_CHANNEL}>" in answer["text"]  # Lifeguard's channel link works

    pending = card(slack, request_id, "waiting for approval")
    assert_shows_as_text(pending)
    assert f"Reason: {HOSTILE_SHOWN}" in "\n".join(mrkdwn_texts(pending))
    assert f"requested by <@{ALICE}>" in pending["text"]
    slack.wait_for(lambda: len(approver_dms(slack)) == 2)
    for dm in approver_dms(slack):
        assert_markup_is_lifeguards(dm)
        assert f"<@{ALICE}> asks" in dm["text"] and "|the card>" in dm["text"]

    click(driver, slack, APPROVE, request_id, BOB)
    card(slack, request_id, "done (approved by", timeout=60)
    updates = card_messages(slack, request_id)
    assert len(updates) >= 3  # posted, approved, running …, done
    for update in updates:
        assert_shows_as_text(update)
    assert f"(approved by <@{BOB}>)" in str(updates[-1]["blocks"])

    url = slack.new_response_url()
    driver.command("/restore", f"status {request_id}", user_id=ALICE, response_url=url)
    assert_shows_as_text(wait_for_response(slack, url, request_id))

    assert_nothing_sent_is_outside_markup(slack)
    assert "<!channel>" not in str([m for m in everything_sent(slack)])


def test_a_production_table_named_to_ping_shows_as_text_in_the_verification_report(
        driver, neon, slack, bot_env):
    write(neon, "main", "A", table=HOSTILE_TABLE)
    before = neon.checkpoint()
    time.sleep(1.0)
    write(neon, "main", "B", table=HOSTILE_TABLE)
    after = neon.checkpoint()
    between = (before + (after - before) / 2).astimezone(UTC)
    instant = between.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    request_id, _, _ = ask_restore(driver, slack, f"{instant} the table named <!channel>")
    click(driver, slack, APPROVE, request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=60)
    report = next(text for text in mrkdwn_texts(done) if "*Verification:*" in text)
    # the restored branch has one row, live production two: listed, by its name, as text
    assert "1 of 1 tables differ against main (live)" in report
    assert "&lt;!channel&gt; (rows 1 here, 2 in the source" in report
    assert_markup_is_lifeguards(done)
    assert_nothing_sent_is_outside_markup(slack)


def test_a_backup_delete_of_a_hostile_name_is_refused_with_the_name_as_text(
        driver, neon, slack, bot_env):
    url = slack.new_response_url()
    ack = driver.command("/backup", "delete <!here>", user_id=ALICE, channel_id=OPS_CHANNEL,
                         response_url=url)
    assert ack.status_code == 200, ack.text
    refusal = wait_for_response(slack, url, "is not a backup Lifeguard took")
    assert refusal["response_type"] == "ephemeral"
    assert "`&lt;!here&gt;` is not a backup Lifeguard took" in refusal["text"]
    assert_markup_is_lifeguards(refusal)
    assert_nothing_sent_is_outside_markup(slack)
    assert neon.mutations() == []


def test_a_backup_reason_shows_as_text_on_its_card_and_in_the_list(driver, neon, slack,
                                                                    bot_env):
    ack = driver.command("/backup", f"now {HOSTILE}", user_id=ALICE, channel_id=OPS_CHANNEL)
    assert ack.status_code == 200, ack.text
    ready = wait_for_card(slack, OPS_CHANNEL, "is ready", timeout=30)
    assert_shows_as_text(ready)
    assert f"requested by <@{ALICE}>" in ready["text"]

    url = slack.new_response_url()
    driver.command("/backup", "list", user_id=ALICE, response_url=url)
    assert_shows_as_text(wait_for_response(slack, url, "backups"))
    assert_nothing_sent_is_outside_markup(slack)


# Each command's help, and each answer that repeats a usage after a mistake, as the bot
# sends them: their placeholders (`<branch>`, `<when>`, `<id>`, `<title>`) and the example
# `id <= 5` mean themselves, so they reach Slack as entities, which Slack shows as written.
USAGE_ANSWERS = [
    ("/backup", "help", "`/backup delete &lt;branch&gt;`"),
    ("/backup", "", "`/backup verify &lt;branch&gt;`"),
    ("/restore", "help", "`/restore cancel &lt;id&gt;`"),
    ("/restore", "help", "`&lt;when&gt;` is `2026-01-13T14:25:00Z`"),
    ("/restore", "sometime soonish please", "`/restore from &lt;branch&gt; [reason]`"),
    ("/restore", "table accounts", "`/restore table &lt;table&gt; from &lt;branch&gt;|at "
                                   "&lt;when&gt;"),
    ("/restore", "table accounts", '`--rows "id &lt;= 5"`'),
    ("/restore", "table accounts from main", "`at &lt;when&gt;` copies the table"),
    ("/incident", "help", "`/incident open &lt;title&gt;`"),
    ("/incident", "note it", "`/incident open &lt;title&gt;` opens one"),
    ("/drill", "help", "`/drill start`"),
    ("/drill", "bogus", "`/drill history`"),
]


def test_every_commands_help_and_usage_shows_its_placeholders_as_text(driver, neon, slack):
    for command, text, shown in USAGE_ANSWERS:
        ack = driver.command(command, text, user_id=ALICE, channel_id=OPS_CHANNEL,
                             response_url=slack.new_response_url())
        assert ack.status_code == 200, (command, text, ack.text)
        answer = ack.json()
        assert answer.get("response_type") == "ephemeral", (command, text, answer)
        assert_markup_is_lifeguards(answer)  # a raw `<branch>` is found as markup here
        texts = "\n".join(mrkdwn_texts(answer))
        assert shown in texts, (command, text, texts)
        assert html.unescape(shown) in html.unescape(texts)  # what the reader sees
    assert_nothing_sent_is_outside_markup(slack)
    assert neon.mutations() == []
