"""The one error path of the Slack edge: its wording (handlers.answers), how the person is
reached (response_url, direct message, Home tab; against the fake Slack server), and the
Bolt app wired by handlers.wiring.install, dispatching requests as Bolt receives them."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import Mock
from urllib.parse import urlencode

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.error import BoltUnhandledRequestError
from slack_sdk import WebClient

from bot.domain.errors import Conflict, NotFound
from bot.services.backups import BackupService
from bot.services.drills import DrillService
from bot.services.health import HealthService
from bot.services.incidents import IncidentService
from bot.services.ports import MessageRef
from bot.services.restores import RestoreService
from bot.services.scheduled_backups import ScheduledBackups
from handlers import wiring
from handlers.answers import Asker, failure_text
from handlers.payloads import MalformedPayload
from tests.support.fake_slack import FakeSlack
from tests.support.handler_fakes import (
    ALERTS,
    ALICE,
    APPROVALS,
    BOB,
    CARD_TS,
    REQUEST_ID,
    click_body,
    command,
    form_body,
    make_request,
)

ERROR_ID = re.compile(r"error id `([0-9a-f]{8})`")


# --- the wording ---------------------------------------------------------------------------


def test_a_lifeguard_error_is_its_own_sentence_then_what_was_left_as_it_was() -> None:
    assert failure_text(NotFound("Neon has no branch `x`.")) == (
        "Neon has no branch `x`. Nothing was changed.")
    assert failure_text(Conflict("Taken."), "`/backup list` shows it") == (
        "Taken. `/backup list` shows it.")
    said_already = Conflict("The backups changed, so nothing was deleted. Run it again.")
    assert failure_text(said_already, "nothing was deleted") == str(said_already)


def test_a_malformed_payload_and_an_unexpected_error_have_their_own_wording() -> None:
    assert failure_text(MalformedPayload("the click came without its button")) == (
        "That didn't work: the click came without its button; nothing was changed.")
    text = failure_text(KeyError("user"), error_id="0badc0de")
    assert text.startswith("Something went wrong (error id `0badc0de`); nothing was changed.")
    assert "KeyError" not in text and "user" not in text


# --- who is answered, and how -----------------------------------------------------------------


@pytest.mark.parametrize(("body", "kind", "user_id", "has_url"), [
    (command("x"), "command", ALICE, True),
    (click_body("request.approve", REQUEST_ID), "block_actions", BOB, True),
    (form_body(), "view_submission", ALICE, False),
    ({"type": "event_callback", "event": {"type": "app_home_opened", "user": ALICE}},
     "app_home_opened", ALICE, False),
    ([1, 2, 3], "unknown", None, False),
    ({"type": "block_actions", "user": 5, "response_url": 7}, "block_actions", None, False),
    ({"type": "block_actions", "user": {"id": "<!channel>"}}, "block_actions", None, False),
    ({**click_body("a", "b"), "response_url": "javascript:alert(1)"}, "block_actions", BOB,
     False),
])
def test_the_asker_is_read_from_any_body(body: Any, kind: str, user_id: str | None,
                                         has_url: bool) -> None:
    asker = Asker.of(body, Mock(spec=WebClient), lambda job, what: job())
    assert (asker.kind, asker.user_id, asker.response_url is not None) == (kind, user_id,
                                                                          has_url)


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    try:
        yield slack
    finally:
        slack.stop()


@pytest.fixture
def slack(fake_slack: FakeSlack) -> FakeSlack:
    fake_slack.reset()
    fake_slack.add_user(ALICE, name="alice", tz="UTC")
    return fake_slack


def asker_on(slack: FakeSlack, kind: str, user_id: str | None,
             response_url: str | None) -> Asker:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    return Asker(client, lambda job, what: job(), kind, user_id, response_url)


def test_the_answer_goes_to_the_response_url_privately(slack: FakeSlack) -> None:
    url = slack.new_response_url()
    asker_on(slack, "block_actions", BOB, url).tell({"text": "only for you"})
    [answer] = slack.responses(url)
    assert answer["text"] == "only for you"
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False


def test_without_a_response_url_the_answer_is_a_direct_message(slack: FakeSlack) -> None:
    asker_on(slack, "view_submission", ALICE, None).tell({"text": "about your form"})
    [posted] = slack.calls_to("chat.postMessage")
    assert posted.args["channel"].startswith("D") and posted.args["text"] == "about your form"


def test_a_home_tab_that_failed_shows_what_went_wrong(slack: FakeSlack) -> None:
    asker_on(slack, "app_home_opened", ALICE, None).tell({"text": "Something went wrong"})
    [published] = slack.calls_to("views.publish")
    assert "Something went wrong" in json.dumps(published.args["view"])


def test_when_nobody_can_be_reached_the_log_says_what_they_would_have_been_told(
        slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lifeguard.handlers"):
        asker_on(slack, "event_callback", None, None).tell({"text": "lost words"})
        asker_on(slack, "block_actions", BOB, "http://127.0.0.1:9/gone").tell(
            {"text": "unsent words"})  # never raises
    assert "lost words" in caplog.text and "unsent words" in caplog.text


def test_work_after_the_ack_that_fails_is_told_and_logged_under_one_id(
        slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    url = slack.new_response_url()
    asker = asker_on(slack, "command", ALICE, url)

    def broken() -> None:
        raise RuntimeError("the store is gone")

    with caplog.at_level(logging.ERROR, logger="lifeguard.handlers"):
        asker.later(broken, "broken work", unchanged="the request is recorded")
    [answer] = slack.responses(url)
    error_id = ERROR_ID.search(answer["text"]).group(1)  # type: ignore[union-attr]
    assert "the request is recorded" in answer["text"]
    assert f"error id {error_id}" in caplog.text and "the store is gone" in caplog.text


# --- the Bolt app, as wired ---------------------------------------------------------------------


class Told:
    """What Asker.tell would have sent, in order (patched in: no Slack here)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str | None, dict[str, Any]]] = []

    def __call__(self, asker: Asker, message: dict[str, Any]) -> None:
        self.messages.append((asker.kind, asker.user_id, message))

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [str(m["text"]) for _, _, m in self.messages]


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> Told:
    recorder = Told()
    monkeypatch.setattr(Asker, "tell", lambda self, message: recorder(self, message))
    return recorder


@pytest.fixture
def services() -> wiring.Services:
    def run_later(job: Callable[[], object], what: str) -> object:
        threading.Thread(target=job, name=what).start()
        return None

    return wiring.Services(
        backups=Mock(spec=BackupService), restores=Mock(spec=RestoreService),
        drills=Mock(spec=DrillService), health=Mock(spec=HealthService),
        scheduled=Mock(spec=ScheduledBackups), describe_schedule=lambda: {},
        run_later=run_later, approvals_channel=APPROVALS, alerts_channel=ALERTS,
        incidents=Mock(spec=IncidentService))


@pytest.fixture
def app(services: wiring.Services) -> App:
    bolt = App(signing_secret="not-checked-here", request_verification_enabled=False,
               token_verification_enabled=False, raise_error_for_unhandled_request=True,
               authorize=lambda **_: AuthorizeResult(enterprise_id=None, team_id="T0",
                                                     bot_token="xoxb-test",
                                                     bot_user_id="U0LIFEGUARD", bot_id="B0"))
    wiring.install(bolt, services)
    return bolt


def dispatch(app: App, body: dict[str, Any]) -> BoltResponse:
    fields = body if "command" in body else {"payload": json.dumps(body)}
    return app.dispatch(BoltRequest(body=urlencode(fields), headers={
        "content-type": ["application/x-www-form-urlencoded"]}))


def test_listeners_are_handed_their_services_through_the_context(app, services, told) -> None:
    services.restores.approve.return_value = make_request()
    response = dispatch(app, click_body("request.approve", REQUEST_ID))
    assert (response.status, response.body) == (200, "")
    services.restores.approve.assert_called_once_with(
        REQUEST_ID, BOB, shown_on=MessageRef(APPROVALS, CARD_TS))
    assert told.messages == []


def test_a_command_failing_before_the_ack_gets_an_error_id_in_the_ack(app, services, caplog):
    services.restores.record_command.side_effect = RuntimeError("the store is gone")
    with caplog.at_level(logging.ERROR, logger="lifeguard.handlers"):
        response = dispatch(app, command("10 minutes ago"))
    assert response.status == 200
    answer = json.loads(response.body)
    assert answer["response_type"] == "ephemeral"
    error_id = ERROR_ID.search(answer["text"]).group(1)  # type: ignore[union-attr]
    assert "nothing was changed" in answer["text"] and "the store is gone" not in answer["text"]
    assert f"error id {error_id}" in caplog.text


def test_a_command_failing_after_the_ack_is_told_through_the_asker(app, services, told):
    services.restores.request_point_in_time.side_effect = RuntimeError("the store is gone")
    response = dispatch(app, command("10 minutes ago"))
    assert ":mag: Checking" in json.loads(response.body)["text"]
    [text] = told.wait()
    assert "Something went wrong (error id" in text


def test_a_refused_click_is_told_privately_with_http_200(app, services, told) -> None:
    services.restores.approve.side_effect = Conflict("Request 1a2b3c4d is already rejected.")
    response = dispatch(app, click_body("request.approve", REQUEST_ID))
    assert (response.status, response.body) == (200, "")
    told.wait()
    [(kind, user_id, message)] = told.messages
    assert (kind, user_id) == ("block_actions", BOB)
    assert message["text"] == (":warning: Request 1a2b3c4d is already rejected. "
                               "Nothing was changed.")


def test_a_form_failing_before_the_ack_is_replaced_by_what_went_wrong(app, services) -> None:
    services.restores.record_command.side_effect = RuntimeError("the store is gone")
    response = dispatch(app, form_body(picked=int(time.time()) - 600))
    answer = json.loads(response.body)
    assert answer["response_action"] == "update" and answer["view"]["type"] == "modal"
    assert "error id" in json.dumps(answer["view"])


@pytest.mark.parametrize(("body", "says"), [
    ({**click_body("request.approve", REQUEST_ID), "actions": []}, "without the button"),
    ({k: v for k, v in click_body("request.approve", REQUEST_ID).items() if k != "container"},
     "did not come from a request's card"),
    (click_body("request.approve", {"id": REQUEST_ID}), "not text"),
    ({k: v for k, v in click_body("request.approve", REQUEST_ID).items() if k != "user"},
     "who sent it"),
    (click_body("request.approve_everything", REQUEST_ID), "has no button"),
])
def test_malformed_or_unknown_clicks_get_that_didnt_work(app, services, told, body,
                                                         says) -> None:
    response = dispatch(app, body)
    assert response.status == 200
    [text] = told.wait()
    assert "That didn't work" in text and says in text
    services.restores.approve.assert_not_called()


def test_an_unknown_command_is_answered(app, told) -> None:
    response = dispatch(app, {**command("x"), "command": "/export"})
    assert response.status == 200
    assert "has no command `/export`" in json.loads(response.body)["text"]


def test_an_event_lifeguard_does_not_use_is_acknowledged_quietly(app, told) -> None:
    body = {"type": "event_callback", "team_id": "T0",
            "event": {"type": "reaction_added", "user": ALICE}}
    response = app.dispatch(BoltRequest(body=json.dumps(body), headers={
        "content-type": ["application/json"]}))
    assert response.status == 200
    time.sleep(0.1)
    assert told.messages == []


def test_the_home_tab_failing_is_shown_on_it(app, services, told) -> None:
    services.backups.recent.side_effect = RuntimeError("the store is gone")
    body = {"type": "event_callback", "team_id": "T0",
            "event": {"type": "app_home_opened", "user": ALICE, "tab": "home"}}
    app.dispatch(BoltRequest(body=json.dumps(body), headers={
        "content-type": ["application/json"]}))
    told.wait()  # events are acknowledged at once; the listener runs after
    [(kind, user_id, message)] = told.messages
    assert (kind, user_id) == ("app_home_opened", ALICE)
    assert "error id" in message["text"]


def test_a_known_button_not_acknowledged_in_time_is_not_called_unknown(app, told) -> None:
    error = BoltUnhandledRequestError(request=Mock(), current_response=None)
    body = click_body("request.approve", REQUEST_ID)
    asker = Asker.of(body, Mock(spec=WebClient), lambda job, what: job())
    response = wiring.handle_error(error, body, {"asker": asker}, BoltResponse(status=404))
    assert response is not None and response.status == 200
    [text] = told.wait()
    assert "has no button" not in text
    assert "error id" in text and "may still be done" in text
