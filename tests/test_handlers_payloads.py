"""Checks of what Slack sends, before anything uses it (handlers.payloads)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain.errors import InvalidInput
from handlers.payloads import (
    PLAN_HASH,
    MalformedPayload,
    check_envelope,
    click,
    event_user,
    restore_form_input,
    slash_command,
)
from tests.support.handler_fakes import ALICE, BOB, click_body, command, form_body


@pytest.mark.parametrize("body", [
    command("5 minutes ago"),
    click_body("request.approve", "1a2b3c4d"),
    form_body(picked=1768310700),
    {"type": "event_callback", "event": {"type": "app_home_opened", "user": ALICE}},
    {"type": "url_verification", "challenge": "x"},
])
def test_what_slack_sends_passes(body: dict[str, Any]) -> None:
    check_envelope(body)


@pytest.mark.parametrize(("body", "says"), [
    ([1, 2], "not a Slack payload"),
    ({**command("x"), "user_id": ""}, "did not say who sent it"),
    ({**command("x"), "text": ["x"]}, "without its name or text"),
    ({"type": "block_actions", "user": {"id": BOB}}, "without the button"),
    ({**click_body("a", "b"), "actions": []}, "without the button"),
    ({**click_body("a", "b"), "actions": {"action_id": "a"}}, "without the button"),
    ({**click_body("a", "b"), "actions": [{"value": "b"}]}, "no button Lifeguard knows"),
    ({**click_body("a", "b"), "actions": [{"action_id": 7}]}, "no button Lifeguard knows"),
    ({**click_body("a", "b"), "user": "U0BOB"}, "did not say who sent it"),
    ({**click_body("a", "b"), "user": {"id": "U0BOB> <!channel"}}, "did not say who sent it"),
    ({"type": "view_submission", "user": {"id": ALICE}}, "without the form itself"),
    ({**form_body(), "view": {"callback_id": "restore.form"}}, "without the form itself"),
    ({**form_body(), "view": {"type": "modal"}}, "without the form itself"),
    ({**form_body(), "user": None}, "did not say who sent it"),
    ({"type": "event_callback"}, "without its type"),
    ({"type": "event_callback", "event": {"user": ALICE}}, "without its type"),
])
def test_a_broken_envelope_says_what_is_wrong(body: Any, says: str) -> None:
    with pytest.raises(MalformedPayload, match=says):
        check_envelope(body)


def test_a_click_gives_who_clicked_the_value_and_the_channel() -> None:
    clicked = click(click_body("backup.prune.confirm", "ab" * 32), PLAN_HASH, "a plan hash")
    assert (clicked.user_id, clicked.value, clicked.channel_id) == (BOB, "ab" * 32,
                                                                    "C0APPROVALS")


@pytest.mark.parametrize(("value", "says"), [
    (5, "not text"), ({"id": "x"}, "not text"), (None, "not text"), (True, "not text"),
    ("", "is not an id"), ("two words", "is not an id"), ("<!channel>", "is not an id"),
    ("x" * 201, "is not an id"),
])
def test_a_click_value_of_the_wrong_shape_is_refused(value: Any, says: str) -> None:
    with pytest.raises(MalformedPayload, match=says):
        click(click_body("drill.start", value), meaning="an id Lifeguard wrote")


def test_a_slash_command_is_read_with_its_optional_parts() -> None:
    asked = slash_command(command("  10 minutes ago  ", channel_id="C0OPS"))
    assert (asked.user_id, asked.text, asked.channel_id) == (ALICE, "10 minutes ago", "C0OPS")
    assert asked.trigger_id == "1337.42"
    bare = slash_command({"user_id": ALICE})
    assert (bare.text, bare.channel_id, bare.response_url, bare.trigger_id) == (
        "", None, None, None)


def test_the_restore_form_reads_its_three_fields() -> None:
    form = restore_form_input(form_body(picked=1768310700, source=" ", reason=" why "))
    assert (form.user_id, form.picked, form.source, form.reason) == (ALICE, 1768310700, "",
                                                                     "why")
    empty = restore_form_input({"user": {"id": ALICE}, "view": {"state": {"values": {}}}})
    assert (empty.picked, empty.source, empty.reason) == (None, "", "")


@pytest.mark.parametrize(("body", "says"), [
    ({"user": {"id": ALICE}, "view": {}}, "without its fields"),
    ({"user": {"id": ALICE}, "view": {"state": {"values": []}}}, "without its fields"),
    (form_body(picked="1768310700"), "not a Unix time"),
    (form_body(picked=1768310700.5), "not a Unix time"),
    (form_body(picked=False), "not a Unix time"),
    (form_body(picked=[1]), "not a Unix time"),
    (form_body(picked=-1), "before 1970"),
    (form_body(source=7), "the backup branch is not text"),
    (form_body(source="b" * 256), "longer than 255"),
    (form_body(reason=["why"]), "the reason is not text"),
    ({"user": {"id": ALICE}, "view": {"state": {"values": {"when": "soon"}}}},
     "field `when`"),
    ({"user": {"id": ALICE}, "view": {"state": {"values": {"when": {"when": 5}}}}},
     "field `when`"),
])
def test_a_restore_form_of_the_wrong_shape_is_refused(body: Any, says: str) -> None:
    with pytest.raises(MalformedPayload, match=says):
        restore_form_input(body)


def test_an_event_names_its_user() -> None:
    assert event_user({"user": ALICE}) == ALICE
    with pytest.raises(MalformedPayload):
        event_user({"user": {"id": ALICE}})


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f"])
def test_a_control_character_in_typed_text_is_refused_saying_which(character: str) -> None:
    with pytest.raises(InvalidInput, match=f"U\\+{ord(character):04X}"):
        slash_command(command(f"now before{character}migration"))


def test_tabs_and_newlines_are_ordinary_text() -> None:
    assert slash_command(command("now line one\n\tline two")).text == "now line one\n\tline two"
