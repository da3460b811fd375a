"""What Slack sends, checked before anything uses it: the envelope of every request, and
the parts each listener needs (who clicked, the button's value, the form's fields).

Slack's own payloads always pass; anything else (a tampered or broken payload) raises
MalformedPayload, whose text says what was wrong, and nothing is done with it. Pure
functions of the payload: no Slack calls, no services.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain.errors import InvalidInput
from bot.services.ports import MessageRef
from handlers import ids

# Slack user ids: U… or W… (Enterprise Grid), then upper-case letters and digits (and
# underscores, which test workspaces use); nothing that could be markup in `<@…>`.
USER_ID = re.compile(r"\A[UW][A-Z0-9_]{1,30}\Z")
# Button values Lifeguard writes: ids, hashes and words; never spaces or markup.
BUTTON_VALUE = re.compile(r"\A[A-Za-z0-9._:-]{1,200}\Z")
PLAN_HASH = re.compile(r"\A[0-9a-f]{64}\Z")
MAX_TEXT = 3000  # Slack's own limit for a text input


class MalformedPayload(InvalidInput):
    """A request from Slack without what Lifeguard needs, or with it in the wrong shape.
    The text says what (for the person and the log); nothing was done with it."""


def _kind(body: Mapping[str, Any]) -> str:
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if isinstance(kind, str) else "unknown"


def check_envelope(body: object) -> None:
    """The shape Bolt itself relies on to route a request (and to build the arguments of
    listeners and of the error handler), checked before Bolt looks: an interactive payload
    names its user, a click its buttons, a view submission its view, an event its type."""
    if not isinstance(body, dict):
        raise MalformedPayload("the request is not a Slack payload")
    kind = _kind(body)
    if kind == "command":
        if not isinstance(body.get("command"), str) or not isinstance(body.get("text", ""), str):
            raise MalformedPayload("the command came without its name or text")
        user_of(body.get("user_id"), "the command")
    elif kind in ("block_actions", "interactive_message"):
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise MalformedPayload("the click came without the button that was clicked")
        if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str)
                   for a in actions):
            raise MalformedPayload("the click names no button Lifeguard knows")
        user_of(_user_id_in(body), "the click")
    elif kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not (isinstance(view, dict) and isinstance(view.get("type"), str)
                and isinstance(view.get("callback_id"), str)):
            raise MalformedPayload("the form came without the form itself")
        user_of(_user_id_in(body), "the form")
    elif kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise MalformedPayload("the event came without its type")


def _user_id_in(body: Mapping[str, Any]) -> object:
    user = body.get("user")
    return user.get("id") if isinstance(user, dict) else None


def user_of(value: object, what: str) -> str:
    if not isinstance(value, str) or not USER_ID.match(value):
        raise MalformedPayload(f"{what} did not say who sent it")
    return value


CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not tab or newline


def _text(value: object, what: str, limit: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedPayload(f"{what} is not text")
    if len(value) > limit:
        raise MalformedPayload(f"{what} is longer than {limit} characters")
    control = CONTROL_CHARACTER.search(value)
    if control is not None:  # NUL and the like cannot be kept in the audit trail
        raise InvalidInput(f"{what[0].upper()}{what[1:]} holds a control character "
                           f"(U+{ord(control.group()):04X}), which Lifeguard does not accept; "
                           "type it again without it.")
    return value


def _optional_id(value: object) -> str | None:
    return value if isinstance(value, str) and BUTTON_VALUE.match(value) else None


# --- slash commands ----------------------------------------------------------------------


@dataclass(frozen=True)
class SlashCommand:
    user_id: str
    text: str  # stripped
    channel_id: str | None
    response_url: str | None
    trigger_id: str | None


def slash_command(command: Mapping[str, Any]) -> SlashCommand:
    response_url = command.get("response_url")
    return SlashCommand(
        user_id=user_of(command.get("user_id"), "the command"),
        text=_text(command.get("text"), "the command's text").strip(),
        channel_id=_optional_id(command.get("channel_id")),
        response_url=response_url if isinstance(response_url, str) else None,
        trigger_id=_optional_id(command.get("trigger_id")))


# --- clicks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Click:
    user_id: str
    value: str
    channel_id: str | None
    message: MessageRef | None  # the message whose button was clicked, when it was one


def click(body: Mapping[str, Any], value: re.Pattern[str] = BUTTON_VALUE,
          meaning: str = "an id Lifeguard wrote") -> Click:
    """The first button of a `block_actions` payload: who clicked, and its value, which
    must match `value` (`meaning` says what it should be, for the answer)."""
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise MalformedPayload("the click came without the button that was clicked")
    user_id = user_of(_user_id_in(body), "the click")
    raw = actions[0].get("value")
    if not isinstance(raw, str):
        raise MalformedPayload(f"the button's value is not text (it should be {meaning})")
    if not value.match(raw):
        raise MalformedPayload(f"the button's value is not {meaning}")
    channel = body.get("channel")
    channel_id = _optional_id(channel.get("id") if isinstance(channel, dict) else None)
    return Click(user_id, raw, channel_id, _clicked_message(body, channel_id))


def on_home_tab(body: Mapping[str, Any], value: str) -> bool:
    """The click came from the person's App Home, from a button that view shows with
    this value (the Home's Approve / Reject act like the card's)."""
    container, view, actions = body.get("container"), body.get("view"), body.get("actions")
    if not (isinstance(container, dict) and container.get("type") == "view"
            and isinstance(view, dict) and view.get("type") == "home"
            and isinstance(actions, list) and actions and isinstance(actions[0], dict)):
        return False
    action_id = actions[0].get("action_id")
    for block in view.get("blocks") or []:
        elements = block.get("elements") if isinstance(block, dict) else None
        for element in elements if isinstance(elements, list) else []:
            if isinstance(element, dict) and element.get("action_id") == action_id \
                    and element.get("value") == value:
                return True
    return False


def _clicked_message(body: Mapping[str, Any], channel_id: str | None) -> MessageRef | None:
    """Where the clicked button was: the container's channel and message ts."""
    container = body.get("container")
    if not isinstance(container, dict) or container.get("type") != "message":
        return None
    ts = container.get("message_ts")
    channel = container.get("channel_id") or channel_id
    if not (isinstance(ts, str) and isinstance(channel, str) and ts and channel):
        return None
    return MessageRef(channel_id=channel, ts=ts)


# --- the /restore form ------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreFormInput:
    user_id: str
    picked: int | None  # the date-time picker's Unix time, if any
    source: str  # a backup branch name, or ""
    reason: str


def restore_form_input(body: Mapping[str, Any]) -> RestoreFormInput:
    """The fields of the `/restore` form as submitted. Each field may be absent or empty;
    present, it must have the shape Slack gives it."""
    user_id = user_of(_user_id_in(body), "the form")
    view = body.get("view")
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        raise MalformedPayload("the form came without its fields")
    picked = _field(values, ids.FORM_WHEN).get("selected_date_time")
    if picked is not None and (not isinstance(picked, int) or isinstance(picked, bool)):
        raise MalformedPayload("the date and time picked is not a Unix time")
    if picked is not None and picked < 0:
        raise MalformedPayload("the date and time picked is before 1970, which Slack's "
                               "picker does not send")
    source = _text(_field(values, ids.FORM_SOURCE).get("value"), "the backup branch", 255)
    reason = _text(_field(values, ids.FORM_REASON).get("value"), "the reason")
    return RestoreFormInput(user_id, picked, source.strip(), reason.strip())


def _field(values: Mapping[str, Any], block_id: str) -> Mapping[str, Any]:
    """The state of the form's input in block `block_id` (its action id is the same)."""
    block = values.get(block_id)
    if block is None:
        return {}
    element = block.get(block_id) if isinstance(block, dict) else "not an object"
    if element is None:
        return {}
    if not isinstance(element, dict):
        raise MalformedPayload(f"the form's field `{block_id}` is not in the shape Slack "
                               "sends")
    return element


# --- events ------------------------------------------------------------------------------


def event_user(event: Mapping[str, Any]) -> str:
    return user_of(event.get("user"), "the event")
