"""The fake Slack's incident-channel methods keep Slack's argument rules and errors, checked
through slack_sdk's real WebClient: channel names, invitations, pins, bookmarks,
archiving, listing, and rate limits with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.support.fake_slack import FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=fake.bot_token, base_url=fake.api_url, timeout=10)


def error_of(call: object) -> tuple[str, dict[str, object]]:
    with pytest.raises(SlackApiError) as excinfo:
        call()  # type: ignore[operator]
    return str(excinfo.value.response["error"]), dict(excinfo.value.response.data)


@pytest.mark.parametrize(("name", "error"), [
    ("", "invalid_name_required"),
    ("Inc-Upper", "invalid_name_specials"),
    ("inc with space", "invalid_name_specials"),
    ("inc.dot", "invalid_name_specials"),
    ("inc-émoji", "invalid_name_specials"),
    ("x" * 81, "invalid_name_maxlength"),
    ("---", "invalid_name_punctuation"),
])
def test_channel_names_follow_slacks_rules(client: WebClient, name: str, error: str) -> None:
    assert error_of(lambda: client.conversations_create(name=name))[0] == error


def test_names_of_80_characters_are_accepted_and_taken_names_stay_taken(
        fake: FakeSlack, client: WebClient) -> None:
    longest = "inc-" + "a" * 76
    channel = client.conversations_create(name=longest)["channel"]
    assert channel["name"] == longest and channel["is_member"] is True
    client.conversations_archive(channel=channel["id"])
    # an archived channel keeps its name: a new incident must pick another
    assert error_of(lambda: client.conversations_create(name=longest))[0] == "name_taken"


def test_invite_takes_a_comma_list_and_fails_whole_on_one_bad_id(
        fake: FakeSlack, client: WebClient) -> None:
    channel = client.conversations_create(name="inc-invites")["channel"]["id"]
    client.conversations_invite(channel=channel, users="U_ALICE,U_BOB")
    error, body = error_of(lambda: client.conversations_invite(channel=channel,
                                                                users="U_CAROL,U_BOB"))
    assert error == "already_in_channel"
    assert body["errors"] == [{"user": "U_BOB", "ok": False, "error": "already_in_channel"}]
    assert "U_CAROL" not in fake.channel(channel)["members"]  # nobody was invited
    assert error_of(lambda: client.conversations_invite(channel=channel,
                                                        users="U_GHOST"))[0] == "user_not_found"
    assert error_of(lambda: client.conversations_invite(channel=channel,
                                                        users="UBOT"))[0] == "cant_invite_self"
    assert error_of(lambda: client.conversations_invite(channel=channel, users=""))[0] == \
        "no_user"


def test_a_forced_invite_invites_the_valid_ones_and_reports_the_rest(
        fake: FakeSlack, client: WebClient) -> None:
    channel = client.conversations_create(name="inc-forced")["channel"]["id"]
    client.conversations_invite(channel=channel, users="U_ALICE")
    answer = client.conversations_invite(channel=channel, users="U_ALICE,U_GHOST,U_BOB",
                                         force=True)
    assert answer["ok"] is True
    assert {e["user"]: e["error"] for e in answer["errors"]} == {
        "U_ALICE": "already_in_channel", "U_GHOST": "user_not_found"}
    assert set(fake.channel(channel)["members"]) == {"UBOT", "U_ALICE", "U_BOB"}
    # nobody valid at all: the call fails even when forced
    assert error_of(lambda: client.conversations_invite(channel=channel, users="U_GHOST",
                                                        force=True))[0] == "user_not_found"


def test_the_bot_must_be_in_a_channel_to_invite_pin_bookmark_or_set_the_topic(
        fake: FakeSlack, client: WebClient) -> None:
    outside = fake.add_channel(name="someone-elses", bot_member=False)
    ts = fake.add_message(outside, "hello")["ts"]
    assert error_of(lambda: client.pins_add(channel=outside, timestamp=ts))[0] == \
        "not_in_channel"
    assert error_of(lambda: client.bookmarks_add(channel_id=outside, title="Runbook",
                                                 type="link", link="https://r.example"))[0] \
        == "not_in_channel"
    assert error_of(lambda: client.conversations_invite(channel=outside,
                                                        users="U_ALICE"))[0] == "not_in_channel"
    assert error_of(lambda: client.conversations_setTopic(channel=outside,
                                                          topic="x"))[0] == "not_in_channel"


def test_pins_and_bookmarks(fake: FakeSlack, client: WebClient) -> None:
    channel = client.conversations_create(name="inc-pins")["channel"]["id"]
    ts = client.chat_postMessage(channel=channel, text="status card")["ts"]
    client.pins_add(channel=channel, timestamp=ts)
    assert error_of(lambda: client.pins_add(channel=channel, timestamp=ts))[0] == \
        "already_pinned"
    assert error_of(lambda: client.pins_add(channel=channel, timestamp="1.000001"))[0] == \
        "message_not_found"
    assert error_of(lambda: client.api_call("pins.add", json={"channel": channel}))[0] == \
        "no_item_specified"
    assert fake.channel(channel)["pins"] == [ts]

    added = client.bookmarks_add(channel_id=channel, title="Runbook", type="link",
                                 link="https://runbook.example/db")["bookmark"]
    assert added["link"] == "https://runbook.example/db" and added["title"] == "Runbook"
    assert error_of(lambda: client.bookmarks_add(channel_id=channel, title="x", type="link",
                                                 link="javascript:alert(1)"))[0] == "invalid_link"
    assert error_of(lambda: client.bookmarks_add(channel_id=channel, title="x", type="file",
                                                 link="https://x.example"))[0] == \
        "invalid_bookmark_type"
    listed = client.api_call("bookmarks.list", json={"channel_id": channel})["bookmarks"]
    assert [b["title"] for b in listed] == ["Runbook"]


def test_an_archived_channel_takes_no_more_posts_and_cannot_be_archived_twice(
        fake: FakeSlack, client: WebClient) -> None:
    channel = client.conversations_create(name="inc-archive")["channel"]["id"]
    client.chat_postMessage(channel=channel, text="closing")
    client.conversations_archive(channel=channel)
    assert fake.channel(channel)["is_archived"] is True
    assert error_of(lambda: client.chat_postMessage(channel=channel, text="late"))[0] == \
        "is_archived"
    assert error_of(lambda: client.conversations_archive(channel=channel))[0] == \
        "already_archived"


def test_conversations_list_pages_through_public_channels(
        fake: FakeSlack, client: WebClient) -> None:
    for n in range(5):
        client.conversations_create(name=f"inc-list-{n}")
    fake.add_channel(name="hidden", is_private=True, bot_member=False)
    names, cursor = [], None
    while True:
        page = client.conversations_list(limit=2, cursor=cursor, exclude_archived=True)
        names += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert names == [f"inc-list-{n}" for n in range(5)]


def test_rate_limits_answer_429_with_retry_after_which_slack_sdk_honours(
        fake: FakeSlack) -> None:
    client = WebClient(token=fake.bot_token, base_url=fake.api_url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    fake.fail_next("conversations.create", "ratelimited", times=1, retry_after=1)
    started = time.monotonic()
    client.conversations_create(name="inc-after-a-pause")
    assert time.monotonic() - started >= 1.0
    first, second = fake.calls_to("conversations.create")
    assert first.http_status == 429 and first.error == "ratelimited" and second.ok


def test_new_methods_need_their_scopes() -> None:
    with FakeSlack(scopes={"chat:write", "channels:manage"}) as scoped:
        web = WebClient(token=scoped.bot_token, base_url=scoped.api_url)
        channel = web.conversations_create(name="inc-scoped")["channel"]["id"]
        ts = web.chat_postMessage(channel=channel, text="card")["ts"]
        web.conversations_invite(channel=channel, users="U_ALICE")
        web.conversations_setTopic(channel=channel, topic="t")
        for call in (lambda: web.pins_add(channel=channel, timestamp=ts),
                     lambda: web.bookmarks_add(channel_id=channel, title="t", type="link",
                                               link="https://x.example")):
            error, body = error_of(call)
            assert error == "missing_scope" and body["needed"] in ("pins:write",
                                                                   "bookmarks:write")
        web.conversations_archive(channel=channel)
