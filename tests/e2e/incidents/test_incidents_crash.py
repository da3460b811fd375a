"""An incident's opening survives the bot being killed (SIGKILL) in the instant after
Slack made its channel and before the bot stored it: the restarted bot finishes opening
it in that same channel, doing each of the room's steps once, and the opener is told.
And a timeline line is posted once however often the reconciler comes round."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.e2e.conftest import ALICE, CAROL, MALLORY
from tests.e2e.incidents.conftest import DAVE, RUNBOOK
from tests.e2e.incidents.test_incidents import (
    channel_of,
    incident_command,
    texts,
    today,
)
from tests.support.bot_process import (
    ALERTS_CHANNEL,
    APPROVALS_CHANNEL,
    BotProcess,
    audit_entries,
)
from tests.support.fake_slack import FakeSlack, all_text
from tests.support.restore_steps import ask, card, click
from tests.support.waits import wait_for_response

RECONCILE_ROUNDS = 3 * 2.0  # three rounds of the bot's RECONCILE_INTERVAL in the tests


def ok_calls(slack: FakeSlack, method: str) -> list[Any]:
    return [call for call in slack.calls_to(method) if call.ok]


def test_a_kill_right_after_slack_made_the_channel_finishes_in_that_channel(
        driver, slack, bot, bot_env):
    held = slack.hold_answer("conversations.create")
    url, ack = incident_command(driver, slack, "open Killed mid opening")
    assert "Opening an incident channel" in ack.json()["text"]
    held.wait_reached()
    bot.kill()  # Slack made the channel; the bot never heard, nothing of it is stored
    held.release()
    name = f"inc-{today()}-killed-mid-opening"
    made = slack.channel_by_name(name)
    assert made is not None and made["members"] == ["UBOT"]

    with BotProcess(bot_env) as restarted:
        driver.bot_url, driver.events_url = restarted.url, restarted.url + "/slack/events"
        answer = wait_for_response(slack, url, "is open", timeout=60)
        channel_id = made["id"]
        assert channel_of(answer) == channel_id  # the same channel, no `-2`
        slack.wait_for(lambda: any("opened the incident" in t
                                   for t in texts(slack, channel_id)), timeout=20)
        _, noted = incident_command(driver, slack, "note after the restart",
                                    channel_id=channel_id)
        assert noted.status_code == 200
        slack.wait_for(lambda: any("after the restart" in t
                                   for t in texts(slack, channel_id)), timeout=20)
        time.sleep(RECONCILE_ROUNDS)  # the reconciler comes round: nothing is done again

    creates = slack.calls_to("conversations.create")
    assert {c.args["name"] for c in creates} == {name}  # never `-2`
    assert [c.ok for c in creates] == [True, False]  # the retry met name_taken and adopted
    assert ok_calls(slack, "conversations.list")  # ... looking for its own channel

    channel = slack.channel(channel_id)
    assert set(channel["members"]) == {"UBOT", ALICE, MALLORY, DAVE, CAROL}
    assert len(ok_calls(slack, "conversations.invite")) == 1
    assert [c.args["channel"] for c in ok_calls(slack, "conversations.setTopic")] == [
        channel_id]
    assert "Killed mid opening" in channel["topic"]["value"]
    [pinned] = channel["pins"]
    assert len(ok_calls(slack, "pins.add")) == 1
    cards = [m for m in slack.messages(channel_id)
             if (m.get("metadata") or {}).get("event_type") == "lifeguard_status_card"]
    assert [c["ts"] for c in cards] == [pinned]
    assert [b["link"] for b in channel["bookmarks"]] == [
        RUNBOOK, f"https://console.neon.tech/app/projects/{bot_env['NEON_PROJECT_ID']}"]
    assert len(ok_calls(slack, "bookmarks.add")) == 2
    announced = [m for m in slack.messages(ALERTS_CHANNEL) if channel_id in all_text(m)]
    assert len(announced) == 1 and "Killed mid opening" in all_text(announced[0])

    # every line of the timeline once
    lines = Counter(m["metadata"]["event_payload"]["key"] for m in slack.messages(channel_id)
                    if (m.get("metadata") or {}).get("event_type") == "lifeguard_timeline_line")
    assert lines and set(lines.values()) == {1}, lines
    assert sum("opened the incident" in t for t in texts(slack, channel_id)) == 1

    # the opener: "Opening…", then exactly one answer, naming that channel, never a stall
    told = [all_text(r) for r in slack.responses(url)]
    assert len(told) == 1 and f"<#{channel_id}>" in told[0], told
    assert not any("stopped while" in t for t in told)

    actions = Counter(e["action"] for e in audit_entries(bot_env)
                      if str(e["action"]).startswith("incident."))
    assert actions["incident.opening"] == 1 and actions["incident.opened"] == 1
    assert actions["incident.channel_created"] == 1 and actions["incident.stalled"] == 0
    assert not slack.server_errors


def test_each_opener_is_told_once_whoever_opens_the_same_incident(driver, slack, neon):
    """The worker that ends an opening tells its opener; a second click (the incident
    open already) is answered by the listener; the card the buttons sit on stays."""
    request_id = ask(driver, slack, "5 minutes ago told once", ALICE)
    before = card(slack, request_id, "waiting for approval")
    first = click(driver, slack, "incident.open", request_id, CAROL)
    channel_id = channel_of(wait_for_response(slack, first, "is open", timeout=30))
    second = click(driver, slack, "incident.open", request_id, ALICE)
    assert channel_of(wait_for_response(slack, second, "is open", timeout=30)) == channel_id
    time.sleep(RECONCILE_ROUNDS)
    for url in (first, second):
        answers = [all_text(r) for r in slack.responses(url)]
        assert sum("is open" in a for a in answers) == 1, answers
        assert all(r.get("replace_original") is False for r in slack.responses(url))
    assert slack.message(APPROVALS_CHANNEL, before["ts"]) is not None
