"""Incidents end to end: signed `/incident` commands and clicks to the real bot, a fake
Slack that enforces the manifest's scopes and Slack's argument rules, a fake Neon whose
branches are real databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.e2e.conftest import ALICE, BOB, CAROL, MALLORY, OPS_CHANNEL
from tests.e2e.incidents.conftest import DAVE, ONCALL, RUNBOOK
from tests.support.block_kit import problems
from tests.support.bot_process import ALERTS_CHANNEL, APPROVALS_CHANNEL, audit_entries
from tests.support.fake_slack import FakeSlack, all_text
from tests.support.mrkdwn import mrkdwn_texts
from tests.support.restore_steps import ask, card, click
from tests.support.slack_driver import SlackDriver
from tests.support.waits import wait_for_response


def today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def incident_command(driver: SlackDriver, slack: FakeSlack, text: str, user_id: str = ALICE,
                     channel_id: str = OPS_CHANNEL) -> tuple[str, Any]:
    """Type `/incident TEXT`; returns the response_url and the acknowledgement."""
    url = slack.new_response_url(channel_id=channel_id, user_id=user_id)
    ack = driver.command("/incident", text, user_id=user_id, channel_id=channel_id,
                         response_url=url)
    assert ack.status_code == 200, ack.text
    return url, ack


def open_incident(driver: SlackDriver, slack: FakeSlack, title: str,
                  user_id: str = ALICE) -> dict[str, Any]:
    url, _ = incident_command(driver, slack, f"open {title}", user_id)
    answer = wait_for_response(slack, url, "is open", timeout=30)
    assert answer["response_type"] == "ephemeral"
    channel_id = answer["text"].split("<#", 1)[1].split(">", 1)[0]
    channel = slack.channel(channel_id)
    assert channel is not None
    return channel


def texts(slack: FakeSlack, channel_id: str) -> list[str]:
    return [all_text(m) for m in slack.messages(channel_id)]


def test_opening_from_a_command_makes_the_whole_room(driver, slack, bot_env):
    channel = open_incident(driver, slack, "Orders table émptied!")
    assert channel["name"] == f"inc-{today()}-orders-table-emptied"
    # the opener, the responders (the group expanded to its members) and the bot
    assert set(channel["members"]) == {"UBOT", ALICE, MALLORY, DAVE, CAROL}
    topic = channel["topic"]["value"]
    assert "Orders table émptied!" in topic and "investigating" in topic
    assert f"<@{ALICE}>" in topic
    [pinned] = channel["pins"]
    status = slack.message(channel["id"], pinned)
    assert "Status: investigating" in all_text(status)
    assert [b["link"] for b in channel["bookmarks"]] == [
        RUNBOOK, f"https://console.neon.tech/app/projects/{bot_env['NEON_PROJECT_ID']}"]
    announced = [m for m in slack.messages(ALERTS_CHANNEL) if channel["id"] in all_text(m)]
    assert len(announced) == 1 and "Orders table" in all_text(announced[0])
    assert "opened the incident" in "\n".join(texts(slack, channel["id"]))
    actions = [e["action"] for e in audit_entries(bot_env) if e["action"].startswith("incident.")]
    assert actions[0] == "incident.opening" and "incident.opened" in actions
    assert not slack.server_errors


def incident_channels(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c for c in (slack.channel_by_name(m) for m in _names(slack)) if c]


def _names(slack: FakeSlack) -> list[str]:
    return sorted({call.args.get("name", "") for call in slack.calls_to("conversations.create")
                   if call.ok})


def click_open(driver: SlackDriver, slack: FakeSlack, request_id: str, user_id: str,
               channel_id: str = APPROVALS_CHANNEL) -> str:
    url = slack.new_response_url()
    response = driver.click("incident.open", request_id, user_id=user_id,
                            channel_id=channel_id, response_url=url)
    assert response.status_code == 200, response.text
    return url


def channel_of(answer: dict[str, Any]) -> str:
    return answer["text"].split("<#", 1)[1].split(">", 1)[0]


def position(lines: list[str], words: str) -> int:
    return next(n for n, line in enumerate(lines) if words in line)


def test_opening_from_a_cards_button_links_the_request_and_echoes_its_steps_in_order(
        driver, slack, neon, bot_env):
    request_id = ask(driver, slack, "5 minutes ago orders vanished", ALICE)
    pending = card(slack, request_id, "waiting for approval")
    assert "incident.open" in str(pending["blocks"])  # every request card has the button
    answer = wait_for_response(slack, click_open(driver, slack, request_id, CAROL), "is open",
                               timeout=30)
    channel_id = channel_of(answer)
    channel = slack.channel(channel_id)
    assert channel["name"].startswith(f"inc-{today()}-point-in-time-restore-{request_id}")
    assert {ALICE, CAROL} <= set(channel["members"])  # the requester and the opener
    slack.wait_for(lambda: any(f"asked for request `{request_id}`" in t
                               for t in texts(slack, channel_id)))

    click(driver, slack, "request.approve", request_id, BOB)
    card(slack, request_id, "done (approved by", timeout=60)
    slack.wait_for(lambda: any("is restored and verified" in t
                               for t in texts(slack, channel_id)), timeout=30)
    lines = texts(slack, channel_id)
    order = [position(lines, words) for words in (
        f"asked for request `{request_id}`", f"<@{BOB}> approved request",
        "Neon started creating", "Neon finished the operations", "Verification of request",
        "is restored and verified")]
    assert order == sorted(order), lines
    assert "UTC" in str(slack.messages(channel_id)) and "<!date^" in str(
        slack.messages(channel_id))  # UTC and each reader's own zone

    # a second click on the same card leads to the same channel, and invites the clicker
    again = wait_for_response(slack, click_open(driver, slack, request_id, BOB), "is open",
                              timeout=30)
    assert channel_of(again) == channel_id
    assert BOB in slack.channel(channel_id)["members"]
    assert len(incident_channels(slack)) == 1


def test_a_taken_name_gets_the_next_number(driver, slack):
    slack.add_channel(name=f"inc-{today()}-replica-lag", bot_member=False)
    slack.add_channel(name=f"inc-{today()}-replica-lag-2", bot_member=False)
    channel = open_incident(driver, slack, "Replica lag")
    assert channel["name"] == f"inc-{today()}-replica-lag-3"


def test_a_command_typed_in_the_channel_is_linked_and_closing_summarises_and_archives(
        driver, slack, neon, bot_env):
    channel = open_incident(driver, slack, "Bad deploy dropped rows")
    request_id = ask(driver, slack, "4 minutes ago in the incident", ALICE,
                     channel_id=channel["id"])
    slack.wait_for(lambda: any(f"asked for request `{request_id}`" in t
                               for t in texts(slack, channel["id"])))
    click(driver, slack, "request.approve", request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=60)
    branch = done["text"].split("New branch `", 1)[1].split("`", 1)[0]
    _, noted = incident_command(driver, slack, "note rows are back, checking invoices",
                                channel_id=channel["id"])
    assert "Added to the timeline" in noted.json()["text"]
    _, status = incident_command(driver, slack, "status monitoring", channel_id=channel["id"])
    assert "monitoring" in status.json()["text"]
    slack.wait_for(lambda: "monitoring" in slack.channel(channel["id"])["topic"]["value"])
    pinned = slack.message(channel["id"], slack.channel(channel["id"])["pins"][0])
    slack.wait_for(lambda: "Status: monitoring" in all_text(
        slack.message(channel["id"], pinned["ts"])))

    # /restore log names the incident
    url = slack.new_response_url()
    driver.command("/restore", f"log {request_id}", user_id=ALICE, response_url=url)
    assert channel["name"] in str(wait_for_response(slack, url, "History"))

    close_url, _ = incident_command(driver, slack, "close a deploy dropped rows; restored",
                                    channel_id=channel["id"])
    wait_for_response(slack, close_url, "is closed", timeout=30)
    after = slack.channel(channel["id"])
    assert after["is_archived"] is True
    everything = "\n".join(texts(slack, channel["id"]))
    summary = next(t for t in texts(slack, channel["id"]) if "Incident summary" in t)
    assert f"<@{ALICE}>" in summary and f"<@{BOB}>" in summary and branch in summary
    assert "For Neon support" in summary and bot_env["NEON_PROJECT_ID"] in summary
    assert "a deploy dropped rows; restored" in summary
    assert "# Timeline of Bad deploy dropped rows" in everything  # the Markdown
    assert "@alice" in everything and "rows are back, checking invoices" in everything
    assert "archived now" in everything
    assert "was closed" in all_text([m for m in slack.messages(ALERTS_CHANNEL)
                                     if channel["id"] in all_text(m)])
    linked = [e for e in audit_entries(bot_env) if e["action"] == "incident.linked"]
    assert linked and linked[0]["subject"] == request_id
    # a closed incident takes no more notes: told privately
    _, ack = incident_command(driver, slack, "note too late",
                                     channel_id=channel["id"])
    assert "closed" in ack.text and ack.json()["response_type"] == "ephemeral"


def test_closing_outside_an_incident_channel_is_refused_privately(driver, slack, bot_env):
    _, ack = incident_command(driver, slack, "close all done")
    body = ack.json()
    assert body["response_type"] == "ephemeral"
    assert "only in an incident's own channel" in body["text"]
    assert not slack.calls_to("conversations.archive")


def test_a_title_that_slugs_to_nothing_is_refused_with_what_is_accepted(driver, slack):
    _, ack = incident_command(driver, slack, "open !!! ??? ***")
    body = ack.json()
    assert body["response_type"] == "ephemeral" and "no letter or digit" in body["text"]
    assert not slack.calls_to("conversations.create")


def test_a_responder_who_cannot_be_invited_is_named_and_a_rate_limit_is_waited_out(
        driver, slack, bot_env, bot):
    bot.stop()
    env = {**bot_env, "INCIDENT_RESPONDERS": f"{ONCALL},U0GHOST"}
    from tests.support.bot_process import BotProcess

    with BotProcess(env) as other:
        driver.bot_url, driver.events_url = other.url, other.url + "/slack/events"
        slack.fail_next("conversations.invite", "ratelimited", times=2, retry_after=1)
        url, _ = incident_command(driver, slack, "open Ghost responder")
        answer = wait_for_response(slack, url, "is open", timeout=40)
    assert "<@U0GHOST> (user_not_found)" in answer["text"]
    invites = slack.calls_to("conversations.invite")
    assert [c.http_status for c in invites[:3]] == [429, 429, 200]
    assert invites[2].at - invites[0].at >= 2.0  # Retry-After honoured each time
    channel = slack.channel(channel_of(answer))
    assert {DAVE, CAROL, ALICE} <= set(channel["members"])
    card_text = all_text(slack.message(channel["id"], channel["pins"][0]))
    assert "Not invited" in card_text and "U0GHOST" in card_text


def test_a_partial_opening_is_reported_and_finished_by_opening_again(driver, slack):
    slack.fail_next("conversations.invite", "restricted_action", times=1)
    url, _ = incident_command(driver, slack, "open Half made")
    stalled = wait_for_response(slack, url, "stopped while", timeout=30)
    assert "inviting the responders" in stalled["text"]
    assert "restricted_action" in stalled["text"] and "/incident open Half made" in stalled["text"]
    [made] = _names(slack)
    assert ALICE not in slack.channel_by_name(made)["members"]
    again = open_incident(driver, slack, "Half made")
    assert again["name"] == made == f"inc-{today()}-half-made"  # the same channel, finished
    assert {ALICE, DAVE, CAROL} <= set(again["members"]) and again["pins"]


def test_the_app_home_shows_a_waiting_approval_to_its_approver_only_and_its_button_approves(
        driver, slack, neon):
    request_id = ask(driver, slack, "3 minutes ago home approval", ALICE)
    card(slack, request_id, "waiting for approval")
    open_incident(driver, slack, "Home incident")
    for user in (ALICE, BOB):
        driver.app_home_opened(user)
    slack.wait_for(lambda: slack.home_view(ALICE) and slack.home_view(BOB))
    alice_home, bob_home = slack.home_view(ALICE), slack.home_view(BOB)
    assert problems(alice_home, "home") == [] and problems(bob_home, "home") == []

    def approve_buttons(view: dict[str, Any]) -> list[str]:
        return [e["value"] for b in view["blocks"] if b["type"] == "actions"
                for e in b["elements"] if e["action_id"] == "request.approve"]

    assert approve_buttons(bob_home) == [request_id]
    assert approve_buttons(alice_home) == []  # the requester never approves her own
    assert request_id in all_text(alice_home)  # ... but sees it among her open requests
    for words in ("Open incidents", "Home incident", "Health", "Latest backups",
                  "Latest restore drill", "Next scheduled runs"):
        assert words in all_text(bob_home), words

    published = len(slack.calls_to("views.publish"))
    response = driver.click("request.approve", request_id, user_id=BOB,
                            container_type="view")
    assert response.status_code == 200
    card(slack, request_id, "done (approved by", timeout=60)
    # the Home is published again after the decision, without the approval
    slack.wait_for(lambda: len(slack.calls_to("views.publish")) > published)
    slack.wait_for(lambda: approve_buttons(slack.home_view(BOB)) == [])


def test_a_home_click_naming_a_request_the_home_does_not_show_is_refused(driver, slack):
    request_id = ask(driver, slack, "2 minutes ago forged", ALICE)
    card(slack, request_id, "waiting for approval")
    driver.app_home_opened(MALLORY)  # not an approver: no buttons on the Home
    slack.wait_for(lambda: slack.home_view(MALLORY))
    url = slack.new_response_url()
    driver.click("request.approve", request_id, user_id=BOB, container_type="view",
                 view_id=slack.home_view(MALLORY)["id"], response_url=url)
    time.sleep(1)
    assert "0 of 1" in card(slack, request_id)["text"]


def test_opening_from_a_failure_alerts_button(driver, slack, bot_env):
    alert_ts = slack.add_message(ALERTS_CHANNEL, ":rotating_light: Backup `backup-x` failed: "
                                 "Neon said no", user="UBOT")["ts"]
    url = slack.new_response_url()
    driver.click("incident.open", "", user_id=BOB, channel_id=ALERTS_CHANNEL,
                 message_ts=alert_ts, response_url=url)
    answer = wait_for_response(slack, url, "is open", timeout=30)
    channel = slack.channel(channel_of(answer))
    assert channel["name"] == f"inc-{today()}-backup-backup-x-failed"
    assert BOB in channel["members"]


def test_hostile_titles_and_notes_show_as_text_everywhere(driver, slack):
    channel = open_incident(driver, slack, "<!channel> orders & <@U0MALLORY> gone")
    _, noted = incident_command(driver, slack, "note <!here> <https://evil.example|x>",
                                channel_id=channel["id"])
    assert noted.status_code == 200
    slack.wait_for(lambda: any("evil.example" in t for t in texts(slack, channel["id"])))
    # what Slack parses: mrkdwn (plain_text, such as the card's header, is never parsed)
    shown = [text for message in [*slack.messages(channel["id"]),
                                  *slack.messages(ALERTS_CHANNEL)]
             for text in mrkdwn_texts(message)]
    shown.append(slack.channel(channel["id"])["topic"]["value"])
    for text in shown:
        for markup in ("<!channel>", "<!here>", "<@U0MALLORY>", "<https://evil"):
            assert markup not in text, text
    assert any("&lt;!channel&gt;" in t for t in shown)
