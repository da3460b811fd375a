"""The `/restore` listeners, called directly with fakes: what is recorded before the
acknowledgement, what the person is told, and what happens when a service fails."""

from __future__ import annotations

import logging
import re
from unittest.mock import Mock

import pytest
from slack_sdk import WebClient

from bot.domain.errors import Conflict, InvalidInput, NotAllowed
from bot.domain.requests import RequestState
from bot.services.ports import MessageRef
from bot.services.restores import RestoreService
from handlers import restore
from handlers.payloads import MalformedPayload
from tests.support.handler_fakes import (
    ALICE,
    APPROVALS,
    BOB,
    CARD_TS,
    REQUEST_ID,
    RecordingAsker,
    Said,
    click_body,
    command,
    form_body,
    make_request,
)


@pytest.fixture
def restores() -> Mock:
    service = Mock(spec=RestoreService)
    service.request_point_in_time.return_value = make_request()
    service.request_from_branch.return_value = make_request()
    return service


def run_command(text: str, restores: Mock, asker: RecordingAsker | None = None,
                **extra: str) -> tuple[Said, Said, RecordingAsker, Mock]:
    ack, respond, client = Said(), Said(), Mock(spec=WebClient)
    asker = asker or RecordingAsker()
    restore.handle_restore_command(ack, command(text, **extra), respond, client, restores,
                                   asker, APPROVALS)
    return ack, respond, asker, client


def test_a_point_in_time_request_is_recorded_before_the_ack_and_answered_after(restores):
    order: list[str] = []
    restores.record_command.side_effect = lambda *a: order.append("recorded")
    ack = Said()

    def acked(**message: object) -> None:
        order.append("acked")
        ack(**message)

    respond, asker = Said(), RecordingAsker()
    restore.handle_restore_command(acked, command("10 minutes ago bad deploy"), respond,
                                   Mock(spec=WebClient), restores, asker, APPROVALS)
    assert order == ["recorded", "acked"]
    restores.record_command.assert_called_once_with(ALICE, "10 minutes ago bad deploy")
    assert ":mag: Checking" in ack.texts[0]
    restores.request_point_in_time.assert_called_once_with(
        ALICE, "10 minutes ago", "bad deploy", channel_id="C0OPS",
        response_url="https://hooks.slack.test/answer")
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral"
    assert f"Request `{REQUEST_ID}` is waiting for approval in <#{APPROVALS}>" in answer["text"]
    assert asker.told == []


def test_a_store_error_after_checking_is_told_with_an_error_id_that_is_in_the_log(
        restores, caplog):
    restores.request_point_in_time.side_effect = RuntimeError("database is locked")
    with caplog.at_level(logging.ERROR, logger="lifeguard.handlers"):
        ack, respond, asker, _ = run_command("10 minutes ago", restores)
    assert ":mag: Checking" in ack.texts[0]
    assert respond.calls == []
    [told] = asker.told_texts
    match = re.search(r"Something went wrong \(error id `([0-9a-f]{8})`\); nothing was "
                      r"changed\.", told)
    assert match, told
    assert "database is locked" not in told and "Traceback" not in told
    [logged] = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged.exc_info is not None  # the traceback is in the log, not in Slack


def test_a_refusal_after_checking_says_what_was_wrong_and_that_nothing_changed(restores):
    restores.request_point_in_time.side_effect = InvalidInput(
        "2020-01-01 10:00:00 UTC is outside the restore window.")
    _, _, asker, _ = run_command("2020-01-01 10:00 UTC", restores)
    assert asker.told_texts == [":warning: 2020-01-01 10:00:00 UTC is outside the restore "
                                "window. Nothing was changed."]


def test_when_the_command_cannot_be_recorded_nothing_is_acknowledged_here(restores):
    restores.record_command.side_effect = RuntimeError("store down")
    with pytest.raises(RuntimeError):  # the error handler answers (tests/test_handlers_wiring)
        run_command("from backup-20260113-142500", restores)
    restores.request_from_branch.assert_not_called()


def test_bad_input_shows_the_usage_and_records_nothing(restores):
    ack, _, asker, _ = run_command("25:99", restores)
    assert "is not a time of day" in ack.texts[0] and "/restore from" in ack.texts[0]
    restores.record_command.assert_not_called()
    assert asker.ran == []


def test_a_branch_that_may_not_be_used_is_left_to_the_error_handler(restores):
    with pytest.raises(NotAllowed):
        run_command("promote main", restores)
    restores.record_command.assert_not_called()


def test_restore_alone_opens_the_form(restores):
    ack, _, _, client = run_command("", restores)
    assert ack.calls == [{}]
    client.views_open.assert_called_once()
    assert client.views_open.call_args.kwargs["trigger_id"] == "1337.42"
    assert client.views_open.call_args.kwargs["view"]["callback_id"] == "restore.form"


def test_restore_alone_without_a_trigger_says_what_to_type_instead(restores):
    with pytest.raises(InvalidInput, match="/restore &lt;when&gt;"):
        run_command("", restores, trigger_id="")


def test_status_and_log_are_answered_after_the_ack(restores):
    restores.open_requests.return_value = [make_request()]
    ack, respond, _, _ = run_command("status", restores)
    assert ack.calls == [{}]
    assert "1 open requests" in respond.texts[0]
    restores.recent.return_value = []
    _, respond, _, _ = run_command("log", restores)
    assert respond.texts == ["No restore requests yet."]


def test_cancel_by_command_is_decided_before_the_ack(restores):
    restores.cancel.return_value = make_request(RequestState.CANCELLED)
    ack, _, asker, _ = run_command(f"cancel {REQUEST_ID}", restores)
    restores.cancel.assert_called_once_with(REQUEST_ID, ALICE, shown_on=None)  # typed
    assert ack.calls == [{}]
    assert asker.ran == []  # nothing to run


def test_an_approval_that_reaches_quorum_runs_after_the_ack(restores):
    restores.approve.return_value = make_request(RequestState.APPROVED)
    ack, asker = Said(), RecordingAsker("block_actions", BOB)
    restore.handle_approve(ack, click_body("request.approve", REQUEST_ID), restores, asker)
    restores.approve.assert_called_once_with(
        REQUEST_ID, BOB, shown_on=MessageRef(APPROVALS, CARD_TS))  # bound to its card
    assert ack.calls == [{}]
    assert asker.ran == [f"run request {REQUEST_ID}"]
    restores.advance.assert_called_once_with(REQUEST_ID)


def test_a_failed_run_after_an_approval_says_the_approval_is_recorded(restores):
    restores.approve.return_value = make_request(RequestState.APPROVED)
    restores.advance.side_effect = RuntimeError("store down")
    asker = RecordingAsker("block_actions", BOB)
    restore.handle_approve(Said(), click_body("request.approve", REQUEST_ID), restores, asker)
    [told] = asker.told_texts
    assert "error id" in told and "the approval is recorded" in told


def test_a_pending_approval_runs_nothing(restores):
    restores.approve.return_value = make_request(RequestState.PENDING)
    asker = RecordingAsker("block_actions", BOB)
    restore.handle_approve(Said(), click_body("request.approve", REQUEST_ID), restores, asker)
    assert asker.ran == []


def test_a_refused_click_is_left_to_the_error_handler_and_not_acknowledged(restores):
    restores.reject.side_effect = Conflict("Request 1a2b3c4d is already rejected.")
    ack = Said()
    with pytest.raises(Conflict):
        restore.handle_reject(ack, click_body("request.reject", REQUEST_ID), restores,
                              RecordingAsker("block_actions", BOB))
    assert ack.calls == []


@pytest.mark.parametrize("value", [12345678, {"id": REQUEST_ID}, None, "1a2b3c4d; DROP",
                                   "ZZZZZZZZ", ["1a2b3c4d"]])
def test_a_click_whose_value_is_not_a_request_id_touches_nothing(restores, value):
    with pytest.raises(MalformedPayload, match="a request id"):
        restore.handle_cancel(Said(), click_body("request.cancel", value), restores,
                              RecordingAsker("block_actions", BOB))
    restores.cancel.assert_not_called()


def run_form(body: dict, restores: Mock) -> tuple[Said, RecordingAsker]:
    ack, asker = Said(), RecordingAsker("view_submission", ALICE, None)
    restore.handle_restore_form(ack, body, restores, asker, APPROVALS)
    return ack, asker


def test_a_form_with_an_instant_becomes_a_request_answered_in_a_direct_message(restores):
    ack, asker = run_form(form_body(picked=1768310700, reason="from the form"), restores)
    restores.record_command.assert_called_once_with(ALICE, "2026-01-13T13:25:00Z from the form")
    assert ack.calls == [{}]
    restores.request_point_in_time.assert_called_once()
    assert "waiting for approval" in asker.told_texts[0]


def test_a_form_from_a_backup_becomes_a_request(restores):
    run_form(form_body(source=" backup-20260113-142500 "), restores)
    restores.record_command.assert_called_once_with(ALICE, "from backup-20260113-142500")
    restores.request_from_branch.assert_called_once()


@pytest.mark.parametrize(("picked", "source"), [(None, None), (1768310700, "backup-x")])
def test_a_form_needs_exactly_one_of_an_instant_and_a_backup(restores, picked, source):
    ack, _ = run_form(form_body(picked=picked, source=source), restores)
    assert ack.calls[0]["response_action"] == "errors"
    assert "not both" in ack.calls[0]["errors"]["when"]
    restores.record_command.assert_not_called()


def test_a_form_instant_beyond_year_9999_is_said_on_its_field(restores):
    ack, _ = run_form(form_body(picked=253402300800), restores)
    error = ack.calls[0]["errors"]["when"]
    assert "in the future" in error and "restore window" in error and len(error) <= 150
    restores.record_command.assert_not_called()


def test_a_form_problem_with_the_text_is_said_under_the_reason(restores):
    ack, _ = run_form(form_body(picked=1768310700, reason="x" * 501), restores)
    assert "500" in ack.calls[0]["errors"]["reason"]
    restores.record_command.assert_not_called()


@pytest.mark.parametrize("body", [
    {"type": "view_submission", "user": {"id": ALICE}, "view": {"state": None}},
    form_body(picked=[1768310700]),
    form_body(picked=-5),
    form_body(source={"name": "backup-x"}),
])
def test_a_malformed_form_is_refused_before_anything_is_recorded(restores, body):
    with pytest.raises(MalformedPayload):
        run_form(body, restores)
    restores.record_command.assert_not_called()
