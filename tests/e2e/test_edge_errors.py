"""The Slack edge when things go wrong, end to end: signed requests to the real bot, the
fake Slack and Neon on loopback.

- The store fails after the acknowledgement (of `/restore`, of an Approve click): the
  person gets a private answer with an error id, and the bot's log has that id.
- Malformed interaction payloads and forms: HTTP 200, a private "That didn't work: …;
  nothing was changed.", logged, never a 5xx or a traceback, and nothing reaches Neon.
- An instant beyond the calendar (`/restore 9999-12-31T23:59:59Z`) is answered like one
  outside the restore window.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.e2e.conftest import ALICE, BOB
from tests.support.bot_process import APPROVALS_CHANNEL, BotProcess, audit_entries
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.postgres import PostgresServer
from tests.support.restore_steps import ask, card
from tests.support.slack_driver import SlackDriver
from tests.support.waits import wait_for_response

ERROR_ID = re.compile(r"error id `([0-9a-f]{8})`")
DIDNT_WORK = "That didn't work"
NOTHING_CHANGED = "nothing was changed"


def use(driver: SlackDriver, bot: BotProcess) -> None:
    driver.bot_url = bot.url
    driver.events_url = bot.url + "/slack/events"


# --- the store fails after the acknowledgement ---------------------------------------------


class BreakableStore:
    """Lifeguard's store on its own PostgreSQL database, which the test can take away as
    an outage would: new connections refused, the open ones terminated."""

    def __init__(self, postgres: PostgresServer) -> None:
        self.postgres = postgres
        self.name = f"edge_{uuid.uuid4().hex[:10]}"
        self.url = postgres.create_database(self.name)

    def _admin(self, statement: sql.Composable, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.postgres.url("postgres"), autocommit=True) as admin:
            admin.execute(statement, params)

    def break_it(self) -> None:
        self._admin(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false")
                    .format(sql.Identifier(self.name)))
        self._admin(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()"), (self.name,))

    def repair(self) -> None:
        self._admin(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true")
                    .format(sql.Identifier(self.name)))


@pytest.fixture
def store_bot(bot_env: dict[str, str], bot: BotProcess, driver: SlackDriver,
              postgres: PostgresServer) -> Iterator[tuple[BotProcess, BreakableStore]]:
    bot.stop()
    store = BreakableStore(postgres)
    try:
        with BotProcess({**bot_env, "DATABASE_URL": store.url}) as on_postgres:
            use(driver, on_postgres)
            yield on_postgres, store
    finally:
        store.repair()


def told_with_an_error_id(slack: FakeSlack, url: str, bot: BotProcess,
                          unchanged: str) -> str:
    answer = wait_for_response(slack, url, "error id", timeout=30)
    assert answer["response_type"] == "ephemeral"
    text = answer["text"]
    assert "Something went wrong" in text and unchanged in text, text
    assert "Traceback" not in text and "psycopg" not in text
    match = ERROR_ID.search(text)
    assert match, text
    error_id = match.group(1)
    deadline = time.monotonic() + 10
    while f"error id {error_id}" not in bot.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"error id {error_id}" in bot.log()  # the log entry the person can point to
    return error_id


def test_a_store_failure_after_the_ack_of_restore_is_told_with_an_error_id(
        store_bot, driver, neon, slack):
    bot, store = store_bot
    # Neon answers slowly, so the store breaks after the ack and before the request is
    # recorded (the command itself was recorded before the ack).
    neon.delay_next(3.0, method="GET", path_contains=f"/projects/{neon.project_id}")
    url = slack.new_response_url()
    ack = driver.command("/restore", "10 minutes ago bad deploy", user_id=ALICE,
                         response_url=url)
    assert ack.status_code == 200
    assert ":mag: Checking" in ack.json()["text"]
    store.break_it()
    told_with_an_error_id(slack, url, bot, NOTHING_CHANGED)
    assert neon.mutations() == []
    assert slack.messages(APPROVALS_CHANNEL) == []  # no card: nothing was asked of anyone


def test_a_store_failure_after_the_ack_of_an_approval_is_told_with_an_error_id(
        store_bot, driver, neon, slack):
    bot, store = store_bot
    request_id = ask(driver, slack, "5 minutes ago", ALICE)
    card(slack, request_id, "waiting for approval")
    # Neon creates the branch slowly, so the store breaks while the approved request runs.
    neon.delay_next(3.0, method="POST", path_contains="/branches")
    url = slack.new_response_url()
    clicked = driver.click("request.approve", request_id, user_id=BOB,
                           channel_id=APPROVALS_CHANNEL, response_url=url)
    assert clicked.status_code == 200
    card(slack, request_id, "creating the restore branch")  # acknowledged, running
    store.break_it()
    told_with_an_error_id(slack, url, bot, "the approval is recorded")


# --- malformed interaction payloads -------------------------------------------------------


def click_payload(driver: SlackDriver, action_id: str, value: Any, user_id: str,
                  response_url: str) -> dict[str, Any]:
    """A `block_actions` payload shaped as Slack sends it, for one button."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": "bob", "name": "bob", "team_id": driver.team_id},
        "api_app_id": driver.api_app_id,
        "token": driver.verification_token,
        "trigger_id": driver.fake.new_trigger_id(user_id),
        "team": {"id": driver.team_id, "domain": driver.team_domain},
        "container": {"type": "message", "message_ts": f"{time.time():.6f}",
                      "channel_id": APPROVALS_CHANNEL, "is_ephemeral": False},
        "channel": {"id": APPROVALS_CHANNEL, "name": "approvals"},
        "response_url": response_url,
        "state": {"values": {}},
        "actions": [{"action_id": action_id, "block_id": "actions", "type": "button",
                     "value": value, "text": {"type": "plain_text", "text": "Approve"},
                     "action_ts": f"{time.time():.6f}"}],
    }


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def with_action(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    action = {**payload["actions"][0], **changes}
    return {**payload, "actions": [{k: v for k, v in action.items() if v is not ...}]}


def neon_untouched_by(neon: FakeNeon, send: Any) -> Any:
    before = len(neon.requests)
    result = send()
    time.sleep(0.3)  # anything it set off has had its chance to reach Neon
    assert neon.requests[before:] == []
    return result


def test_malformed_clicks_get_a_private_answer_and_reach_nothing(driver, neon, slack, bot,
                                                                 bot_env):
    request_id = ask(driver, slack, "5 minutes ago", ALICE)
    card(slack, request_id, "waiting for approval")
    cases: list[tuple[str, Any, str]] = [
        ("no actions", lambda p: without(p, "actions"), "without the button"),
        ("an empty list of actions", lambda p: {**p, "actions": []}, "without the button"),
        ("actions that are not objects", lambda p: {**p, "actions": ["request.approve"]},
         "no button"),
        ("a value that is a number", lambda p: with_action(p, value=12345678), "not text"),
        ("a value that is an object", lambda p: with_action(p, value={"id": request_id}),
         "not text"),
        ("no value", lambda p: with_action(p, value=...), "not text"),
        ("a value that is not a request id", lambda p: with_action(p, value="x' OR 1=1"),
         "is not a request id"),
        ("no user", lambda p: without(p, "user"), "did not say who sent it"),
        ("a user that is a string", lambda p: {**p, "user": BOB}, "did not say who sent it"),
        ("a user id that is a number", lambda p: {**p, "user": {"id": 42}},
         "did not say who sent it"),
        ("a button Lifeguard does not have",
         lambda p: with_action(p, action_id="request.approve_all"), "has no button"),
    ]
    for case, mangle, says in cases:
        url = slack.new_response_url()
        payload = mangle(click_payload(driver, "request.approve", request_id, BOB, url))
        response = neon_untouched_by(neon, lambda p=payload: driver.interaction(p))
        assert response.status_code == 200, (case, response.status_code, response.text)
        assert "Traceback" not in response.text, case
        answer = wait_for_response(slack, url, DIDNT_WORK)
        assert answer["response_type"] == "ephemeral", case
        assert says in answer["text"] and NOTHING_CHANGED in answer["text"], (case, answer)
        assert answer.get("replace_original") is False, case  # the card stays as it is
    assert "0 of 1" in card(slack, request_id)["text"]  # nobody approved anything
    assert neon.mutations() == []
    assert [e["action"] for e in audit_entries(bot_env) if e["subject"] == request_id] == [
        "request.created"]
    log = bot.log()
    assert log.count("malformed block_actions") >= len(cases) - 1
    assert "Traceback" not in log


def form_payload(driver: SlackDriver, values: Any, user_id: str = ALICE,
                 callback_id: str = "restore.form") -> dict[str, Any]:
    """A `view_submission` of the `/restore` form with these `state.values`."""
    return {
        "type": "view_submission",
        "team": {"id": driver.team_id, "domain": driver.team_domain},
        "user": {"id": user_id, "username": "alice", "name": "alice",
                 "team_id": driver.team_id},
        "api_app_id": driver.api_app_id,
        "token": driver.verification_token,
        "trigger_id": driver.fake.new_trigger_id(user_id),
        "view": {"id": "V0FORM", "type": "modal", "callback_id": callback_id,
                 "private_metadata": "", "blocks": [], "state": {"values": values}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def fields(picked: Any = None, source: Any = None, reason: Any = "from the form"
           ) -> dict[str, Any]:
    return {"when": {"when": {"type": "datetimepicker", "selected_date_time": picked}},
            "source": {"source": {"type": "plain_text_input", "value": source}},
            "reason": {"reason": {"type": "plain_text_input", "value": reason}}}


def test_malformed_forms_get_a_private_answer_and_reach_nothing(driver, neon, slack, bot,
                                                                bot_env):
    now = int(time.time())
    notices: list[tuple[str, Any, str]] = [
        ("a form with no state", lambda: {**form_payload(driver, {}),
                                          "view": {**form_payload(driver, {})["view"],
                                                   "state": None}},
         "the form came without its fields"),
        ("values that are a list", lambda: form_payload(driver, [fields(now)]),
         "the form came without its fields"),
        ("a date-time that is negative", lambda: form_payload(driver, fields(-1)),
         "before 1970"),
        ("a date-time that is a list", lambda: form_payload(driver, fields([now - 600])),
         "not a Unix time"),
        ("a date-time that is text", lambda: form_payload(driver, fields(str(now - 600))),
         "not a Unix time"),
        ("a date-time that is true", lambda: form_payload(driver, fields(True)),
         "not a Unix time"),
        ("a backup branch that is a number", lambda: form_payload(driver, fields(source=42)),
         "the backup branch is not text"),
        ("a reason that is an object",
         lambda: form_payload(driver, fields(now - 600, reason={"text": "x"})),
         "the reason is not text"),
        ("a field that is not an object",
         lambda: form_payload(driver, {**fields(now - 600), "when": {"when": "soon"}}),
         "field `when`"),
        ("no user", lambda: without(form_payload(driver, fields(now - 600)), "user"),
         "did not say who sent it"),
        ("no view", lambda: without(form_payload(driver, fields(now - 600)), "view"),
         "without the form itself"),
        ("a view without its type", lambda: {**form_payload(driver, fields(now - 600)),
                                             "view": {"callback_id": "restore.form"}},
         "without the form itself"),
        ("a form Lifeguard does not have",
         lambda: form_payload(driver, fields(now - 600), callback_id="restore.everything"),
         "has no form"),
    ]
    for case, build, says in notices:
        payload = build()
        response = neon_untouched_by(neon, lambda p=payload: driver.interaction(p))
        assert response.status_code == 200, (case, response.status_code, response.text)
        body = response.json()
        # The form is replaced by the answer: only the person who submitted it sees it.
        assert body["response_action"] == "update", (case, body)
        [shown] = body["view"]["blocks"]
        assert DIDNT_WORK in shown["text"]["text"], case
        assert says in shown["text"]["text"] and NOTHING_CHANGED in shown["text"]["text"], (
            case, shown)

    # Beyond year 9999: said on the field, as for an instant outside the restore window.
    beyond = neon_untouched_by(neon, lambda: driver.interaction(
        form_payload(driver, fields(253402300800))))
    assert beyond.status_code == 200
    errors = beyond.json()["errors"]
    assert "in the future" in errors["when"] and "restore window" in errors["when"]

    assert not [e for e in audit_entries(bot_env) if e["action"] == "restore.asked"]
    assert slack.messages(APPROVALS_CHANNEL) == []
    assert "Traceback" not in bot.log()
    assert bot.log().count("malformed view_submission") >= len(notices) - 1


def test_malformed_commands_events_and_bodies_are_never_a_5xx(driver, neon, slack, bot):
    url = slack.new_response_url()
    no_user = neon_untouched_by(neon, lambda: driver.signed_form({
        "command": "/restore", "text": "5 minutes ago", "team_id": driver.team_id,
        "channel_id": "C0OPS", "response_url": url, "trigger_id": "13345224609.7"}))
    assert no_user.status_code == 200
    assert no_user.json()["response_type"] == "ephemeral"
    assert DIDNT_WORK in no_user.json()["text"] and "who sent it" in no_user.json()["text"]

    # Bodies that are not Slack payloads at all: nobody to answer, but no 5xx.
    for body in ({"payload": "{not json"}, {"payload": "[1, 2, 3]"},
                 {"payload": json.dumps({"type": "block_actions", "user": 5})}):
        response = neon_untouched_by(neon, lambda b=body: driver.signed_form(b))
        assert response.status_code < 500, (body, response.status_code)
        assert "Traceback" not in response.text

    # An App Home event without a user, an envelope without its event: acknowledged.
    assert driver.event({"type": "app_home_opened", "tab": "home"}).status_code == 200
    broken = json.dumps({"type": "event_callback", "team_id": driver.team_id,
                         "api_app_id": driver.api_app_id, "event_id": "Ev0BROKEN",
                         "event_time": int(time.time())}).encode()
    response = driver.raw(broken, {"Content-Type": "application/json", **driver.sign(broken)})
    assert response.status_code == 200
    time.sleep(0.3)
    assert slack.calls_to("views.publish") == []
    assert neon.requests == []
    assert "Traceback" not in bot.log()


# --- instants beyond the calendar ----------------------------------------------------------


def test_an_instant_in_year_9999_is_answered_like_one_outside_the_window(driver, neon,
                                                                         slack, bot):
    url = slack.new_response_url()
    ack = driver.command("/restore", "9999-12-31T23:59:59Z", user_id=ALICE, response_url=url)
    assert ack.status_code == 200
    answer = wait_for_response(slack, url, "in the future")
    assert answer["response_type"] == "ephemeral"
    assert "9999-12-31 23:59:59 UTC" in answer["text"]
    assert "restore window" in answer["text"] and "Europe/Berlin" in answer["text"]
    assert neon.mutations() == []
    assert slack.messages(APPROVALS_CHANNEL) == []
    assert "OverflowError" not in bot.log() and "Traceback" not in bot.log()

