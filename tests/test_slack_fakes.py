"""The Slack test doubles are faithful: checked against slack_sdk, slack-bolt and Slack's rules.

(a) slack_sdk's real WebClient talks to FakeSlack as it would to Slack;
(b) the driver's signatures satisfy slack_sdk's SignatureVerifier, forgeries do not;
(c) a bare Bolt app served over HTTP by waitress accepts the driver's requests;
(d) manifest.yml is a well-formed manifest whose scopes cover what the fake enforces.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import waitress
import yaml
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient
from waitress import wasyncore

from tests.support.fake_slack import FakeSlack, all_text, find_action_element, manifest_bot_scopes
from tests.support.slack_driver import SlackDriver

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"

APPROVAL_CARD: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Restore* requested by <@U_ALICE>"}},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "request.approve",
                "value": "req-1",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": "request.reject",
                "value": "req-1",
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject"},
            },
        ],
    },
]

MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "confirm",
    "title": {"type": "plain_text", "text": "Confirm"},
    "submit": {"type": "plain_text", "text": "Go"},
    "private_metadata": "req-9",
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        },
        {
            "type": "input",
            "block_id": "target",
            "label": {"type": "plain_text", "text": "Target"},
            "element": {
                "type": "static_select",
                "action_id": "pick",
                "options": [
                    {"text": {"type": "plain_text", "text": "Main"}, "value": "main"},
                    {"text": {"type": "plain_text", "text": "Dev"}, "value": "dev"},
                ],
            },
        },
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=fake.bot_token, base_url=fake.api_url, timeout=10)


def api_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


# --------------------------------------------------------------------------- (a) Web API


def test_auth_test_identifies_the_bot(fake: FakeSlack, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] is True
    assert resp["user_id"] == "UBOT"
    assert resp["team_id"] == "T0LIFEGUARD"
    assert resp["bot_id"] == fake.bot_id
    assert resp["url"].startswith("https://")
    call = fake.calls_to("auth.test")[0]
    assert call.token == fake.bot_token and call.ok


def test_post_then_update_replaces_the_message(fake: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(
        channel="C_APPROVALS", text="Restore requested", blocks=APPROVAL_CARD
    )
    ts, channel = posted["ts"], posted["channel"]
    assert channel == "C_APPROVALS"
    assert re.fullmatch(r"\d{10}\.\d{6}", ts)
    assert posted["message"]["text"] == "Restore requested"
    stored = fake.message(channel, ts)
    assert stored is not None and stored["blocks"][1]["block_id"] == "decide"
    assert find_action_element(stored, "request.approve", "req-1") is not None

    updated = client.chat_update(channel=channel, ts=ts, text="Approved by <@U_BOB>", blocks=[])
    assert updated["ts"] == ts and updated["channel"] == channel
    after = fake.message(channel, ts)
    assert after is not None
    assert after["text"] == "Approved by <@U_BOB>"
    assert "blocks" not in after  # [] removes blocks, like Slack
    assert after["edited"]["user"] == "UBOT"
    assert len(fake.messages(channel)) == 1

    # left out, blocks are kept (Slack keeps what an update does not mention)
    with pytest.warns(UserWarning, match="text"):  # slack_sdk nags; Slack accepts it
        client.chat_update(channel=channel, ts=ts, blocks=APPROVAL_CARD[:1])
    client.chat_update(channel=channel, ts=ts, text="only text")
    again = fake.message(channel, ts)
    assert again is not None and again["text"] == "only text" and len(again["blocks"]) == 1


def test_timestamps_are_unique_and_increasing(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C_OPS", text=str(i))["ts"] for i in range(20)]
    assert stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == 20


def test_update_of_unknown_message_is_message_not_found(client: WebClient) -> None:
    client.chat_postMessage(channel="C_OPS", text="x")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C_OPS", ts="1111111111.000100", text="nope")
    assert api_error(excinfo) == "message_not_found"
    with pytest.raises(SlackApiError) as excinfo, pytest.warns(UserWarning):
        client.chat_postMessage(channel="C_OPS")
    assert api_error(excinfo) == "no_text"


def test_cannot_update_someone_elses_message(fake: FakeSlack, client: WebClient) -> None:
    seeded = fake.add_message("C_OPS", "hi from alice")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C_OPS", ts=seeded["ts"], text="edited")
    assert api_error(excinfo) == "cant_update_message"


def test_ephemeral_delete_and_permalink(fake: FakeSlack, client: WebClient) -> None:
    eph = client.chat_postEphemeral(channel="C_OPS", user="U_ALICE", text="only you see this")
    assert re.fullmatch(r"\d{10}\.\d{6}", eph["message_ts"])
    assert fake.ephemerals("C_OPS", "U_ALICE")[0]["text"] == "only you see this"
    assert fake.messages("C_OPS") == []

    ts = client.chat_postMessage(channel="C_OPS", text="bye")["ts"]
    link = client.chat_getPermalink(channel="C_OPS", message_ts=ts)["permalink"]
    assert link.endswith("/archives/C_OPS/p" + ts.replace(".", ""))
    client.chat_delete(channel="C_OPS", ts=ts)
    assert fake.message("C_OPS", ts) is None
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_delete(channel="C_OPS", ts=ts)
    assert api_error(excinfo) == "message_not_found"


def test_users_info_from_the_directory(fake: FakeSlack, client: WebClient) -> None:
    fake.add_user("U_ZED", name="zed", tz="Pacific/Auckland", tz_offset=46800)
    user = client.users_info(user="U_ZED")["user"]
    assert (user["id"], user["name"], user["tz"], user["tz_offset"]) == (
        "U_ZED",
        "zed",
        "Pacific/Auckland",
        46800,
    )
    assert user["is_bot"] is False
    assert client.users_info(user="U_ALICE")["user"]["tz"] == "Europe/Berlin"
    assert client.users_info(user="UBOT")["user"]["is_bot"] is True
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="U_NOBODY")
    assert api_error(excinfo) == "user_not_found"


def test_invalid_token_is_invalid_auth(fake: FakeSlack) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=fake.api_url)
    with pytest.raises(SlackApiError) as excinfo:
        bad.auth_test()
    assert api_error(excinfo) == "invalid_auth"
    missing = httpx.post(fake.api_url + "auth.test")
    assert missing.status_code == 200 and missing.json() == {"ok": False, "error": "invalid_auth"}
    assert fake.calls_to("auth.test")[0].token == "xoxb-wrong"


def test_usergroup_members(fake: FakeSlack, client: WebClient) -> None:
    fake.set_usergroup("S_DBA", ["U_BOB", "U_CAROL"], handle="dba")
    assert client.usergroups_users_list(usergroup="S_DBA")["users"] == ["U_BOB", "U_CAROL"]
    with pytest.raises(SlackApiError) as excinfo:
        client.usergroups_users_list(usergroup="S_NOPE")
    assert api_error(excinfo) == "no_such_subteam"


def test_form_json_and_query_string_arguments(fake: FakeSlack) -> None:
    auth = {"Authorization": f"Bearer {fake.bot_token}"}
    # query string
    resp = httpx.post(fake.api_url + "users.info?user=U_BOB", headers=auth).json()
    assert resp["ok"] and resp["user"]["name"] == "bob"
    # form with token in the body and blocks as a JSON string
    form = {
        "token": fake.bot_token,
        "channel": "C_OPS",
        "text": "form",
        "blocks": json.dumps(APPROVAL_CARD),
    }
    resp = httpx.post(fake.api_url + "chat.postMessage", data=form).json()
    assert resp["ok"], resp
    call = fake.calls_to("chat.postMessage")[-1]
    assert call.args["blocks"][1]["block_id"] == "decide"  # decoded
    assert "token" not in call.args and call.token == fake.bot_token
    # JSON: token only counts in the header
    body = {"token": fake.bot_token, "channel": "C_OPS", "text": "json"}
    assert (
        httpx.post(fake.api_url + "chat.postMessage", json=body).json()["error"] == "invalid_auth"
    )
    assert httpx.post(fake.api_url + "chat.postMessage", json=body, headers=auth).json()["ok"]
    # unknown methods
    resp = httpx.post(fake.api_url + "chat.frobnicate", headers=auth).json()
    assert resp["ok"] is False and resp["error"] == "unknown_method"


def test_rate_limit_is_retried_by_slack_sdk(fake: FakeSlack, client: WebClient) -> None:
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    started = time.monotonic()
    resp = client.chat_postMessage(channel="C_OPS", text="after the limit")
    assert resp["ok"]
    assert time.monotonic() - started >= 1.0  # slept Retry-After
    calls = fake.calls_to("chat.postMessage")
    assert [c.http_status for c in calls] == [429, 200]
    assert calls[0].error == "ratelimited"
    assert len(fake.messages("C_OPS")) == 1


def test_rate_limit_without_retry_handler_surfaces_429(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.update", "ratelimited", retry_after=7)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C_OPS", ts="1.000001", text="x")
    response = excinfo.value.response
    assert response.status_code == 429 and response["error"] == "ratelimited"
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert headers["retry-after"] in ("7", ["7"])


def test_injected_errors_and_unreachable_methods(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("users.info", "fatal_error", times=2, status=500)
    for _ in range(2):
        with pytest.raises(SlackApiError) as excinfo:
            client.users_info(user="U_ALICE")
        assert excinfo.value.response.status_code == 500
    assert client.users_info(user="U_ALICE")["ok"]

    fake.unreachable_methods.add("chat.postMessage")
    with pytest.raises(OSError):
        client.chat_postMessage(channel="C_OPS", text="lost")
    dropped = fake.calls_to("chat.postMessage")[-1]
    assert dropped.response is None and dropped.error == "connection_dropped"
    fake.unreachable_methods.clear()
    assert client.chat_postMessage(channel="C_OPS", text="back")["ok"]

    with pytest.raises(ValueError):
        fake.fail_next("chat.postMesage")  # typo: refused instead of never firing


def test_dm_channels(fake: FakeSlack, client: WebClient) -> None:
    first = client.conversations_open(users="U_BOB")
    dm = first["channel"]["id"]
    assert dm.startswith("D") and dm == fake.dm_channel("U_BOB")
    again = client.conversations_open(users=["U_BOB"])
    assert again["channel"]["id"] == dm and again["already_open"] is True
    client.chat_postMessage(channel=dm, text="please approve")
    client.chat_postMessage(channel="U_BOB", text="reminder")  # Slack posts to the DM
    assert [m["text"] for m in fake.messages(dm)] == ["please approve", "reminder"]
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_open(users="U_GHOST")
    assert api_error(excinfo) == "user_not_found"


def test_incident_channel_lifecycle(fake: FakeSlack, client: WebClient) -> None:
    created = client.conversations_create(name="inc-restore-42")["channel"]
    channel = created["id"]
    assert channel.startswith("C") and created["name"] == "inc-restore-42"
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_create(name="inc-restore-42")
    assert api_error(excinfo) == "name_taken"
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_create(name="Bad Name!")
    assert api_error(excinfo) == "invalid_name_specials"

    client.conversations_invite(channel=channel, users=["U_ALICE", "U_BOB"])
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_invite(channel=channel, users="U_BOB")
    assert api_error(excinfo) == "already_in_channel"
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_invite(channel=channel, users="UBOT")
    assert api_error(excinfo) == "cant_invite_self"

    client.conversations_setTopic(channel=channel, topic="Restore of main at 14:25 UTC")
    info = client.conversations_info(channel=channel)["channel"]
    assert info["topic"]["value"] == "Restore of main at 14:25 UTC" and info["is_member"] is True
    members = client.conversations_members(channel=channel)["members"]
    assert set(members) == {"UBOT", "U_ALICE", "U_BOB"}

    client.chat_postMessage(channel=channel, text="first")
    client.chat_postMessage(channel=channel, text="second")
    history = client.conversations_history(channel=channel)["messages"]
    assert [m["text"] for m in history] == ["second", "first"]  # newest first, like Slack

    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_info(channel="nonexistent-name")
    assert api_error(excinfo) == "channel_not_found"


def test_join_and_channels_that_do_not_exist(fake: FakeSlack, client: WebClient) -> None:
    fake.add_channel("C_ALERTS", "alerts", bot_member=False)
    assert client.conversations_info(channel="C_ALERTS")["channel"]["is_member"] is False
    joined = client.conversations_join(channel="C_ALERTS")
    assert joined["channel"]["is_member"] is True and "warning" not in joined
    assert client.conversations_join(channel="C_ALERTS")["warning"] == "already_in_channel"

    fake.auto_create_channels = False
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C_MISSING", text="x")
    assert api_error(excinfo) == "channel_not_found"


def test_views_open_update_push_and_publish(fake: FakeSlack, client: WebClient) -> None:
    trigger = fake.new_trigger_id("U_ALICE")
    view = client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "confirm"
    assert fake.views("U_ALICE")[0]["id"] == view["id"]
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=trigger, view=MODAL)
    assert api_error(excinfo) == "exchanged_trigger_id"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id="12345.98765.abcd", view=MODAL)
    assert api_error(excinfo) == "invalid_trigger_id"
    fake.trigger_ttl = -1
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=fake.new_trigger_id(), view=MODAL)
    assert api_error(excinfo) == "expired_trigger_id"
    fake.trigger_ttl = 3.0

    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id=view["id"], hash="stale", view=MODAL)
    assert api_error(excinfo) == "hash_conflict"
    changed = dict(MODAL, title={"type": "plain_text", "text": "Changed"})
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view=changed)["view"]
    assert updated["id"] == view["id"] and updated["title"]["text"] == "Changed"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id="V_NOPE", view=MODAL)
    assert api_error(excinfo) == "not_found"

    pushed = client.views_push(trigger_id=fake.new_trigger_id("U_ALICE"), view=MODAL)["view"]
    assert pushed["previous_view_id"] == view["id"]

    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}],
    }
    published = client.views_publish(user_id="U_ALICE", view=home)["view"]
    republished = client.views_publish(user_id="U_ALICE", view=home)["view"]
    assert published["id"] == republished["id"]
    home_view = fake.home_view("U_ALICE")
    assert home_view is not None and all_text(home_view) == "Hi"

    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=fake.new_trigger_id(), view={"type": "modal", "blocks": []})
    assert api_error(excinfo) == "invalid_arguments"  # no title


def test_response_url_posts_are_recorded_and_act_like_slack(
    fake: FakeSlack, client: WebClient
) -> None:
    ts = client.chat_postMessage(channel="C_APPROVALS", text="card", blocks=APPROVAL_CARD)["ts"]
    url = fake.new_response_url(channel_id="C_APPROVALS", user_id="U_BOB", message_ts=ts)
    assert url.startswith(f"http://127.0.0.1:{fake.port}/response/")
    hook = WebhookClient(url)

    assert hook.send(text="Working on it").status_code == 200  # ephemeral by default
    assert fake.ephemerals(user="U_BOB")[0]["text"] == "Working on it"
    assert hook.send(text="Approved", replace_original=True).status_code == 200
    replaced = fake.message("C_APPROVALS", ts)
    assert replaced is not None and replaced["text"] == "Approved" and "blocks" not in replaced
    hook.send(text="Everyone: approved", response_type="in_channel")
    assert fake.messages("C_APPROVALS")[-1]["text"] == "Everyone: approved"
    assert [r["text"] for r in fake.responses(url)] == [
        "Working on it",
        "Approved",
        "Everyone: approved",
    ]
    assert fake.responses() == fake.responses(url)

    hook.send(text="4")
    hook.send(text="5")
    refused = hook.send(text="6")
    assert refused.status_code == 404 and "used_url" in refused.body
    assert len(fake.responses(url)) == 5 and len(fake.response_posts(url)) == 6
    hook.send(text="gone", delete_original=True)  # used up: no effect
    assert fake.message("C_APPROVALS", ts) is not None


def test_wait_for_returns_the_value_or_explains_the_timeout(
    fake: FakeSlack, client: WebClient
) -> None:
    def later() -> None:
        time.sleep(0.2)
        client.chat_postMessage(channel="C_OPS", text="done")

    threading.Thread(target=later).start()
    messages = fake.wait_for(lambda: fake.messages("C_OPS"), timeout=5)
    assert messages[0]["text"] == "done"

    with pytest.raises(AssertionError) as excinfo:
        fake.wait_for(lambda: fake.calls_to("views.open"), timeout=0.3)
    assert "chat.postMessage" in str(excinfo.value) and "C_OPS" in str(excinfo.value)


def test_reset_keeps_the_directory_unless_told(fake: FakeSlack, client: WebClient) -> None:
    fake.add_user("U_TMP", name="tmp")
    fake.set_usergroup("S_X", ["U_TMP"])
    client.chat_postMessage(channel="C_OPS", text="x")
    fake.fail_next("auth.test")
    fake.reset()
    assert fake.calls == [] and fake.messages("C_OPS") == []
    assert client.auth_test()["ok"]  # failure forgotten
    assert fake.user("U_TMP") is not None
    assert client.usergroups_users_list(usergroup="S_X")["users"] == ["U_TMP"]
    fake.reset(users=True, usergroups=True)
    assert fake.user("U_TMP") is None and fake.user("U_ALICE") is not None


def test_scopes_are_enforced_when_given() -> None:
    with FakeSlack(scopes={"chat:write"}) as scoped:
        web = WebClient(token=scoped.bot_token, base_url=scoped.api_url)
        assert web.chat_postMessage(channel="C_OPS", text="ok")["ok"]
        with pytest.raises(SlackApiError) as excinfo:
            web.users_info(user="U_ALICE")
        assert api_error(excinfo) == "missing_scope"
        assert excinfo.value.response["needed"] == "users:read"
        assert excinfo.value.response["provided"] == "chat:write"


# --------------------------------------------------------------------------- (b) signatures


class Capture:
    """An httpx transport that keeps the requests the driver would send."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text="")


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def offline_driver(fake: FakeSlack, capture: Capture) -> Iterator[SlackDriver]:
    with SlackDriver(
        "http://bot.invalid", SECRET, fake, transport=httpx.MockTransport(capture)
    ) as driver:
        yield driver


def test_driver_signatures_satisfy_slack_sdk(offline_driver: SlackDriver, capture: Capture) -> None:
    verifier = SignatureVerifier(SECRET)
    offline_driver.command("/backup", "now nightly")
    offline_driver.click("request.approve", "req-1")
    offline_driver.submit_view("confirm", {"reason": {"text": "because"}})
    offline_driver.event({"type": "app_home_opened", "user": "U_ALICE", "tab": "home"})
    assert len(capture.requests) == 4
    for request in capture.requests:
        assert str(request.url) == "http://bot.invalid/slack/events"
        assert request.method == "POST"
        assert verifier.is_valid_request(request.content, dict(request.headers))

    body = capture.requests[0].content
    headers = dict(capture.requests[0].headers)
    assert not verifier.is_valid_request(body.replace(b"nightly", b"hacked"), headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    six_minutes_ago = int(time.time()) - 6 * 60
    stale = offline_driver.sign(body, timestamp=six_minutes_ago)
    assert not verifier.is_valid_request(body, stale)
    assert verifier.is_valid_request(
        body, offline_driver.sign(body, timestamp=int(time.time()) - 200)
    )


def test_slash_command_payload_is_slacks(
    fake: FakeSlack, offline_driver: SlackDriver, capture: Capture
) -> None:
    offline_driver.command("/restore", "14:25 oops", retry_num=1)
    request = capture.requests[0]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["x-slack-retry-num"] == "1"
    assert request.headers["x-slack-retry-reason"] == "http_timeout"
    raw = request.content.decode()
    assert "command=%2Frestore" in raw
    fields = parse_qs(raw, keep_blank_values=True)
    assert list(fields) == [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    ]
    assert fields["text"] == ["14:25 oops"] and fields["channel_name"] == ["ops"]
    assert fields["response_url"][0] == offline_driver.last_response_url
    assert fields["response_url"][0].startswith(fake.base_url + "/response/")

    unsigned = offline_driver.command("/restore", "x", sign=False)
    assert unsigned.status_code == 200
    assert "x-slack-signature" not in capture.requests[-1].headers


def test_click_payload_uses_the_stored_card(
    fake: FakeSlack, client: WebClient, offline_driver: SlackDriver, capture: Capture
) -> None:
    client.chat_postMessage(channel="C_APPROVALS", text="older", blocks=APPROVAL_CARD)
    ts = client.chat_postMessage(channel="C_APPROVALS", text="card", blocks=APPROVAL_CARD)["ts"]
    offline_driver.click("request.approve", "req-1", user_id="U_CAROL", user_name="carol")
    form = parse_qs(capture.requests[0].content.decode())
    payload = json.loads(form["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": "U_CAROL",
        "username": "carol",
        "name": "carol",
        "team_id": "T0LIFEGUARD",
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": "C_APPROVALS",
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": "C_APPROVALS", "name": "approvals"}
    assert payload["message"]["ts"] == ts and payload["message"]["text"] == "card"
    (action,) = payload["actions"]
    assert action["action_id"] == "request.approve" and action["value"] == "req-1"
    assert action["block_id"] == "decide" and action["type"] == "button"
    assert action["style"] == "primary" and action["text"]["text"] == "Approve"
    assert payload["response_url"] == offline_driver.last_response_url
    assert payload["trigger_id"] and payload["team"]["id"] == "T0LIFEGUARD"


def test_view_submission_payload(
    fake: FakeSlack, client: WebClient, offline_driver: SlackDriver, capture: Capture
) -> None:
    view = client.views_open(trigger_id=fake.new_trigger_id("U_ALICE"), view=MODAL)["view"]
    offline_driver.submit_view(
        "confirm", {"reason": {"text": "because"}, "target": {"pick": "dev"}}
    )
    payload = json.loads(parse_qs(capture.requests[0].content.decode())["payload"][0])
    assert payload["type"] == "view_submission"
    sent = payload["view"]
    assert sent["id"] == view["id"] and sent["private_metadata"] == "req-9"
    values = sent["state"]["values"]
    assert values["reason"]["text"] == {"type": "plain_text_input", "value": "because"}
    assert values["target"]["pick"]["type"] == "static_select"
    assert values["target"]["pick"]["selected_option"]["value"] == "dev"


# --------------------------------------------------------------------------- (c) a real Bolt app


@pytest.fixture
def bolt_url(fake: FakeSlack) -> Iterator[str]:
    app = App(
        token=fake.bot_token,
        signing_secret=SECRET,
        client=WebClient(base_url=fake.api_url, token=fake.bot_token),
        request_verification_enabled=True,
    )

    @app.command("/ping")
    def ping(ack: Any, command: dict[str, Any]) -> None:
        ack(f"pong {command['text']}".strip())

    @app.command("/confirm")
    def open_modal(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=MODAL)

    @app.view("confirm")
    def submitted(ack: Any, view: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        reason = view["state"]["values"]["reason"]["text"]["value"]
        if not reason:
            ack(response_action="errors", errors={"reason": "Say why"})
            return
        ack()
        client.chat_postMessage(
            channel="C_OPS", text=f"{body['user']['id']}: {reason} ({view['private_metadata']})"
        )

    @app.action("request.approve")
    def approve(ack: Any, body: dict[str, Any], client: WebClient, respond: Any) -> None:
        ack()
        client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text=f"Approved by <@{body['user']['id']}>",
            blocks=[],
        )
        respond(text="Thanks for approving")

    @app.event("app_home_opened")
    def home(event: dict[str, Any], client: WebClient) -> None:
        client.views_publish(
            user_id=event["user"],
            view={
                "type": "home",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Lifeguard"}}],
            },
        )

    sockets: dict[int, Any] = {}  # waitress's socket map, so the loop can be emptied
    server = waitress.create_server(
        SlackRequestHandler(app), map=sockets, host="127.0.0.1", port=0, threads=4
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # close every socket from inside the loop thread (closing them from here races
        # with its select()); the loop ends when the map is empty
        server.trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()


@pytest.fixture
def driver(bolt_url: str, fake: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bolt_url, SECRET, fake) as d:
        yield d


def test_bolt_answers_a_signed_slash_command(fake: FakeSlack, driver: SlackDriver) -> None:
    assert fake.calls_to("auth.test")  # Bolt checked its token against the fake at start
    resp = driver.command("/ping", "hello")
    assert resp.status_code == 200
    assert resp.text == "pong hello"


def test_bolt_rejects_unsigned_and_forged_requests(driver: SlackDriver) -> None:
    assert driver.command("/ping", sign=False).status_code == 401
    assert driver.command("/ping", secret="not-the-secret").status_code == 401
    old = int(time.time()) - 6 * 60
    assert driver.command("/ping", timestamp=old).status_code == 401
    body = b"command=%2Fping&text=forged"
    signed_for_other_body = driver.sign(b"command=%2Fping&text=original")
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed_for_other_body}
    assert driver.raw(body, headers).status_code == 401


def test_bolt_handles_a_button_click(
    fake: FakeSlack, client: WebClient, driver: SlackDriver
) -> None:
    ts = client.chat_postMessage(channel="C_APPROVALS", text="card", blocks=APPROVAL_CARD)["ts"]
    resp = driver.click("request.approve", "req-1")
    assert resp.status_code == 200

    def approved_card() -> dict[str, Any] | None:
        card = fake.message("C_APPROVALS", ts)
        return card if card is not None and "Approved" in card["text"] else None

    message = fake.wait_for(approved_card)
    assert message is not None
    assert message["text"] == "Approved by <@U_BOB>" and "blocks" not in message
    responses = fake.wait_for(lambda: fake.responses(driver.last_response_url))
    assert responses[0]["text"] == "Thanks for approving"


def test_bolt_modal_round_trip(fake: FakeSlack, driver: SlackDriver) -> None:
    assert driver.command("/confirm").status_code == 200
    view = fake.wait_for(lambda: fake.views("U_ALICE"))[0]
    assert view["callback_id"] == "confirm"
    assert fake.calls_to("views.open")[0].ok  # the trigger id was fresh and unused

    rejected = driver.submit_view("confirm", {"reason": {"text": ""}})
    assert rejected.status_code == 200
    assert rejected.json() == {"response_action": "errors", "errors": {"reason": "Say why"}}

    accepted = driver.submit_view("confirm", {"reason": {"text": "drill"}})
    assert accepted.status_code == 200
    posted = fake.wait_for(lambda: fake.messages("C_OPS"))
    assert posted[0]["text"] == "U_ALICE: drill (req-9)"


def test_bolt_receives_events(fake: FakeSlack, driver: SlackDriver) -> None:
    assert driver.url_verification("abc").json() == {"challenge": "abc"}
    assert driver.app_home_opened("U_CAROL").status_code == 200
    home = fake.wait_for(lambda: fake.home_view("U_CAROL"))
    assert all_text(home) == "Lifeguard"
    assert (
        driver.event({"type": "app_home_opened", "user": "U_CAROL"}, sign=False).status_code == 401
    )


# --------------------------------------------------------------------------- (d) manifest

# Slack's bot token scopes (https://api.slack.com/scopes, "Granular bot" token type).
KNOWN_BOT_SCOPES = frozenset(
    {
        "app_mentions:read",
        "assistant:write",
        "bookmarks:read",
        "bookmarks:write",
        "calls:read",
        "calls:write",
        "canvases:read",
        "canvases:write",
        "channels:history",
        "channels:join",
        "channels:manage",
        "channels:read",
        "channels:write.invites",
        "channels:write.topic",
        "chat:write",
        "chat:write.customize",
        "chat:write.public",
        "commands",
        "conversations.connect:manage",
        "conversations.connect:read",
        "conversations.connect:write",
        "dnd:read",
        "emoji:read",
        "files:read",
        "files:write",
        "groups:history",
        "groups:read",
        "groups:write",
        "groups:write.invites",
        "groups:write.topic",
        "im:history",
        "im:read",
        "im:write",
        "im:write.topic",
        "incoming-webhook",
        "links.embed:write",
        "links:read",
        "links:write",
        "lists:read",
        "lists:write",
        "metadata.message:read",
        "mpim:history",
        "mpim:read",
        "mpim:write",
        "mpim:write.topic",
        "pins:read",
        "pins:write",
        "reactions:read",
        "reactions:write",
        "remote_files:read",
        "remote_files:share",
        "remote_files:write",
        "search:read.files",
        "search:read.public",
        "search:read.users",
        "team.billing:read",
        "team.preferences:read",
        "team:read",
        "triggers:read",
        "triggers:write",
        "usergroups:read",
        "usergroups:write",
        "users.profile:read",
        "users:read",
        "users:read.email",
        "users:write",
        "workflow.steps:execute",
    }
)

# Keys Slack's manifest schema (v2) allows in each section we use.
ALLOWED_KEYS = {
    "": {"_metadata", "display_information", "features", "oauth_config", "settings"},
    "display_information": {"name", "description", "background_color", "long_description"},
    "features": {"app_home", "bot_user", "slash_commands", "shortcuts", "unfurl_domains"},
    "app_home": {"home_tab_enabled", "messages_tab_enabled", "messages_tab_read_only_enabled"},
    "bot_user": {"display_name", "always_online"},
    "slash_command": {"command", "url", "description", "usage_hint", "should_escape"},
    "settings": {
        "event_subscriptions",
        "interactivity",
        "org_deploy_enabled",
        "socket_mode_enabled",
        "token_rotation_enabled",
        "allowed_ip_address_ranges",
        "incoming_webhooks",
    },
    "event_subscriptions": {"request_url", "bot_events", "user_events"},
    "interactivity": {"is_enabled", "request_url", "message_menu_options_url"},
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_manifest_shape(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"] == {"major_version": 2, "minor_version": 1}
    assert set(manifest) <= ALLOWED_KEYS[""]
    info = manifest["display_information"]
    assert set(info) <= ALLOWED_KEYS["display_information"]
    assert info["name"] == "Lifeguard" and len(info["name"]) <= 35
    assert 1 <= len(info["description"]) <= 140
    assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", info["background_color"])
    features = manifest["features"]
    assert set(features) <= ALLOWED_KEYS["features"]
    assert set(features["app_home"]) <= ALLOWED_KEYS["app_home"]
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    assert set(features["bot_user"]) <= ALLOWED_KEYS["bot_user"]
    assert features["bot_user"] == {"display_name": "lifeguard", "always_online": True}


def test_manifest_commands_events_and_interactivity(manifest: dict[str, Any]) -> None:
    url = "https://YOUR-LIFEGUARD-HOST/slack/events"
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(commands) == {"/backup", "/restore", "/drill", "/incident"}
    for command in commands.values():
        assert set(command) <= ALLOWED_KEYS["slash_command"]
        assert command["url"] == url
        assert re.fullmatch(r"/[a-z0-9_-]{1,31}", command["command"])
        assert 1 <= len(command["description"]) <= 2000
        assert 1 <= len(command["usage_hint"]) <= 1000
        assert command["should_escape"] is False
    settings = manifest["settings"]
    assert set(settings) <= ALLOWED_KEYS["settings"]
    assert set(settings["event_subscriptions"]) <= ALLOWED_KEYS["event_subscriptions"]
    assert settings["event_subscriptions"]["request_url"] == url
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert set(settings["interactivity"]) <= ALLOWED_KEYS["interactivity"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": url}
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_manifest_scopes_are_known_bot_scopes(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert set(manifest["oauth_config"]) == {"scopes"} and set(
        manifest["oauth_config"]["scopes"]
    ) == {"bot"}
    assert len(scopes) == len(set(scopes))
    unknown = sorted(set(scopes) - KNOWN_BOT_SCOPES)
    assert not unknown, f"not Slack bot scopes: {unknown}"
    needed = {
        "commands",  # slash commands
        "chat:write",  # cards, reports, alerts, and their updates
        "chat:write.public",  # approvals/alerts channels without an invitation
        "im:write",  # DMs to approvers
        "users:read",  # requester's time zone
        "usergroups:read",  # approver user groups
        "channels:read",  # channel info
        "groups:read",  # private channel info
        "channels:history",  # find its own status card again after a crash
        "groups:history",  # ... in private channels too
        "channels:manage",  # incident channels: create, invite, topic, archive
        "pins:write",  # pin the incident's status card
        "bookmarks:write",  # bookmark the runbook and the Neon project
    }
    assert set(scopes) == needed


def test_manifest_scopes_cover_what_the_bot_calls() -> None:
    """With the manifest's scopes enforced, every Web API call Lifeguard's features need works."""
    with FakeSlack(scopes=manifest_bot_scopes(MANIFEST)) as scoped:
        web = WebClient(token=scoped.bot_token, base_url=scoped.api_url)
        scoped.set_usergroup("S_DBA", ["U_BOB"])
        ts = web.chat_postMessage(channel="C_APPROVALS", text="card")["ts"]
        web.chat_update(channel="C_APPROVALS", ts=ts, text="approved")
        web.chat_postEphemeral(channel="C_OPS", user="U_ALICE", text="hi")
        dm = web.conversations_open(users="U_BOB")["channel"]["id"]
        web.chat_postMessage(channel=dm, text="please approve")
        web.users_info(user="U_ALICE")
        web.usergroups_users_list(usergroup="S_DBA")
        web.conversations_info(channel="C_APPROVALS")
        private = scoped.add_channel(name="ops-private", is_private=True)
        web.conversations_info(channel=private)
        web.views_publish(user_id="U_ALICE", view={"type": "home", "blocks": []})
        web.conversations_history(channel="C_APPROVALS", include_all_metadata=True)
        web.conversations_history(channel=private, include_all_metadata=True)
        # an incident's channel, from its creation to its archive
        incident = web.conversations_create(name="inc-20260113-orders")["channel"]["id"]
        web.conversations_list(types="public_channel", exclude_archived=True)
        web.conversations_invite(channel=incident, users="U_ALICE,U_BOB", force=True)
        web.conversations_setTopic(channel=incident, topic="Orders · investigating")
        card = web.chat_postMessage(channel=incident, text="status card")["ts"]
        web.pins_add(channel=incident, timestamp=card)
        web.bookmarks_add(channel_id=incident, title="Runbook", type="link",
                          link="https://runbook.example")
        web.conversations_history(channel=incident, include_all_metadata=True)
        web.conversations_archive(channel=incident)
        assert all(call.ok for call in scoped.calls), scoped.describe_calls()
        # and nothing more: direct messages are never read, private channels never made
        with pytest.raises(SlackApiError) as excinfo:
            web.conversations_history(channel=dm)
        assert api_error(excinfo) == "missing_scope"
        with pytest.raises(SlackApiError) as excinfo:
            web.conversations_create(name="not-asked-for", is_private=True)
        assert api_error(excinfo) == "missing_scope"
