"""Drives the bot's real HTTP endpoint the way Slack does.

Requests are built like Slack's (slash command forms, `block_actions` and
`view_submission` payloads, Events API envelopes), signed with the signing secret
(`v0=` + HMAC-SHA256 of `v0:{timestamp}:{raw body}`) and posted with httpx to
`{bot_url}/slack/events`. Response URLs and trigger ids come from the FakeSlack server,
so what the bot does with them is recorded there:

    driver = SlackDriver("http://127.0.0.1:3000", SECRET, fake)
    driver.command("/backup", "now nightly")
    fake.wait_for(lambda: fake.responses(driver.last_response_url))
    driver.click("request.approve", request_id)   # finds the card with that button

A click without `message_ts` looks for the newest message in `channel_id` that holds a
button with that `action_id` and `value` (the card the bot posted), as a person would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.support.fake_slack import FakeSlack, default_channel_name, find_action_element

__all__ = ["SlackDriver", "slack_signature"]


def slack_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, Slack's request signature."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _action_ts() -> str:
    return f"{time.time():.6f}"


class SlackDriver:
    """Sends signed Slack requests (commands, clicks, view submissions, events) to the bot."""

    def __init__(
        self,
        bot_url: str,
        signing_secret: str,
        fake_slack: FakeSlack,
        *,
        team_id: str = "T0LIFEGUARD",
        team_domain: str = "lifeguard-test",
        api_app_id: str = "A0LIFEGUARD",
        verification_token: str = "deprecated-verification-token",
        path: str = "/slack/events",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.bot_url = bot_url.rstrip("/")
        self.events_url = self.bot_url + path
        self.signing_secret = signing_secret
        self.fake = fake_slack
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.verification_token = verification_token
        self.last_response_url: str | None = None
        self.last_trigger_id: str | None = None
        self.last_payload: dict[str, Any] | None = None
        self._http = httpx.Client(timeout=timeout, transport=transport)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ signing and sending

    def sign(
        self, body: bytes, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        """The `X-Slack-Request-Timestamp` and `X-Slack-Signature` headers for `body`."""
        ts = int(time.time()) if timestamp is None else int(timestamp)
        secret = self.signing_secret if secret is None else secret
        return {
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": slack_signature(secret, ts, body),
        }

    def raw(self, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """POST `body` with exactly these headers (forged, unsigned, odd requests)."""
        return self._http.post(self.events_url, content=body, headers=dict(headers))

    def _post(
        self,
        body: bytes,
        content_type: str,
        *,
        sign: bool,
        timestamp: int | None,
        secret: str | None,
        retry_num: int | None,
        retry_reason: str | None,
    ) -> httpx.Response:
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "Accept": "application/json,*/*",
        }
        if sign:
            headers.update(self.sign(body, timestamp, secret))
        elif timestamp is not None:
            headers["X-Slack-Request-Timestamp"] = str(timestamp)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        elif retry_reason is not None:
            headers["X-Slack-Retry-Reason"] = retry_reason
        return self._http.post(self.events_url, content=body, headers=headers)

    def _post_form(self, fields: dict[str, str], **kw: Any) -> httpx.Response:
        body = urlencode(fields).encode("utf-8")
        return self._post(body, "application/x-www-form-urlencoded", **kw)

    def _post_payload(self, payload: dict[str, Any], **kw: Any) -> httpx.Response:
        self.last_payload = payload
        return self._post_form({"payload": json.dumps(payload, separators=(",", ":"))}, **kw)

    def _trigger(self, trigger_id: str | None, user_id: str) -> str:
        if trigger_id is None:
            trigger_id = self.fake.new_trigger_id(user_id)
        else:
            self.fake.register_trigger_id(trigger_id, user_id)
        self.last_trigger_id = trigger_id
        return trigger_id

    def _user(self, user_id: str, user_name: str) -> dict[str, Any]:
        return {"id": user_id, "username": user_name, "name": user_name, "team_id": self.team_id}

    def _team(self) -> dict[str, Any]:
        return {"id": self.team_id, "domain": self.team_domain}

    def _channel_name(self, channel_id: str) -> str:
        info = self.fake.channel(channel_id)
        if info and info.get("name"):
            return str(info["name"])
        return "directmessage" if channel_id.startswith("D") else default_channel_name(channel_id)

    # ------------------------------------------------------------------ slash commands

    def command(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str = "U_ALICE",
        user_name: str = "alice",
        channel_id: str = "C_OPS",
        channel_name: str | None = None,
        trigger_id: str | None = None,
        response_url: str | None = None,
        sign: bool = True,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> httpx.Response:
        """A slash command, form-encoded exactly like Slack's payload."""
        if not command.startswith("/"):
            command = "/" + command
        if response_url is None:
            response_url = self.fake.new_response_url(channel_id=channel_id, user_id=user_id)
        self.last_response_url = response_url
        fields = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name or self._channel_name(channel_id),
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self._trigger(trigger_id, user_id),
        }
        return self._post_form(
            fields,
            sign=sign,
            timestamp=timestamp,
            secret=secret,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )

    # ------------------------------------------------------------------ buttons

    def _find_card(
        self, channel_id: str, action_id: str, value: str
    ) -> tuple[str, dict[str, Any]] | None:
        for message in reversed(self.fake.messages(channel_id)):
            if find_action_element(message, action_id, value) is not None:
                return str(message["ts"]), message
        return None

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str = "U_BOB",
        user_name: str = "bob",
        channel_id: str = "C_APPROVALS",
        message_ts: str | None = None,
        block_id: str | None = None,
        response_url: str | None = None,
        sign: bool = True,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        message: dict[str, Any] | None = None,
        container_type: str = "message",
        view_id: str | None = None,
        is_ephemeral: bool = False,
        trigger_id: str | None = None,
    ) -> httpx.Response:
        """A `block_actions` payload for a button click.

        Without `message_ts` the newest message in `channel_id` with a button of this
        `action_id` and `value` is the one clicked. The button's text, style and block_id
        are taken from the stored message when it has the button; `block_id` defaults to
        that, else "actions". `container_type="view"` clicks a button in a modal or the
        Home tab (`view_id`, default: the user's Home tab).
        """
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id or "actions",
            "text": _plain(action_id),
            "value": value,
            "type": "button",
            "action_ts": _action_ts(),
        }
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": self._trigger(trigger_id, user_id),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
        }
        source: dict[str, Any] | None
        if container_type == "view":
            view = self.fake.view(view_id) if view_id else self.fake.home_view(user_id)
            if view is None and view_id is None:
                raise ValueError(f"{user_id} has no Home tab view to click in")
            view = view or {"id": view_id, "type": "modal", "blocks": [], "state": {"values": {}}}
            payload["container"] = {"type": "view", "view_id": view["id"]}
            payload["view"] = view
            payload["state"] = view.get("state", {"values": {}})
            source = view
        else:
            if message is None and not is_ephemeral:
                if message_ts is None:
                    found = self._find_card(channel_id, action_id, value)
                    if found is not None:
                        message_ts, message = found
                else:
                    message = self.fake.message(channel_id, message_ts)
            if message_ts is None:
                message_ts = str(message["ts"]) if message and "ts" in message else _action_ts()
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": is_ephemeral,
            }
            payload["channel"] = {"id": channel_id, "name": self._channel_name(channel_id)}
            if message is not None:
                payload["message"] = message
            payload["state"] = {"values": {}}
            source = message
        found_element = find_action_element(source, action_id, value)
        if found_element is not None:
            found_block_id, element = found_element
            action["block_id"] = block_id or found_block_id or "actions"
            if isinstance(element.get("text"), dict):
                action["text"] = element["text"]
            if element.get("style"):
                action["style"] = element["style"]
        if response_url is None:
            response_url = self.fake.new_response_url(
                channel_id=channel_id if container_type == "message" else None,
                user_id=user_id,
                message_ts=payload.get("container", {}).get("message_ts"),
            )
        self.last_response_url = response_url
        if container_type == "message":
            payload["response_url"] = response_url
        payload["actions"] = [action]
        return self._post_payload(
            payload,
            sign=sign,
            timestamp=timestamp,
            secret=secret,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )

    def interaction(self, payload: Any, *, sign: bool = True) -> httpx.Response:
        """Any interaction payload exactly as given (a broken one too: no actions, a value
        of the wrong type, no user …), form-encoded as Slack does and signed."""
        return self._post_payload(
            payload,
            sign=sign,
            timestamp=None,
            secret=None,
            retry_num=None,
            retry_reason=None,
        )

    def signed_form(self, fields: dict[str, str]) -> httpx.Response:
        """A signed form-encoded body with exactly these fields (a slash command without
        its user, a `payload` that is not JSON …)."""
        return self._post_form(
            fields, sign=True, timestamp=None, secret=None, retry_num=None, retry_reason=None
        )

    # ------------------------------------------------------------------ modals

    @staticmethod
    def _state_value(element: dict[str, Any] | None, value: Any) -> dict[str, Any]:
        """Slack's view.state entry for `value` typed into/selected in `element`."""
        if isinstance(value, dict):
            return value
        kind = str((element or {}).get("type") or "plain_text_input")
        options = (element or {}).get("options") or []

        def option(v: Any) -> dict[str, Any]:
            for opt in options:
                if isinstance(opt, dict) and opt.get("value") == v:
                    return opt
            return {"text": _plain(str(v)), "value": str(v)}

        if kind in ("static_select", "external_select", "radio_buttons"):
            return {"type": kind, "selected_option": option(value) if value is not None else None}
        if kind in ("multi_static_select", "multi_external_select", "checkboxes"):
            return {"type": kind, "selected_options": [option(v) for v in value or []]}
        if kind == "users_select":
            return {"type": kind, "selected_user": value}
        if kind == "multi_users_select":
            return {"type": kind, "selected_users": list(value or [])}
        if kind == "conversations_select":
            return {"type": kind, "selected_conversation": value}
        if kind == "channels_select":
            return {"type": kind, "selected_channel": value}
        if kind == "datepicker":
            return {"type": kind, "selected_date": value}
        if kind == "timepicker":
            return {"type": kind, "selected_time": value}
        if kind == "datetimepicker":
            return {"type": kind, "selected_date_time": value}
        return {"type": kind, "value": None if value is None else str(value)}

    def submit_view(
        self,
        callback_id: str,
        values: Mapping[str, Mapping[str, Any]],
        *,
        user_id: str = "U_ALICE",
        user_name: str = "alice",
        private_metadata: str | None = None,
        view_id: str | None = None,
        sign: bool = True,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> httpx.Response:
        """A `view_submission` payload.

        `values` is `{block_id: {action_id: value}}`; a plain value is turned into the state
        entry Slack sends for the element's type in the stored view (text input, select,
        users select, date picker, ...), a dict is sent as it is. The submitted view is
        `view_id`, else the user's newest view with this callback_id that the bot opened,
        else a minimal modal; `private_metadata` defaults to the stored view's.
        """
        stored = self.fake.view(view_id) if view_id else None
        if stored is None and view_id is None:
            candidates = [
                v for v in self.fake.views(user_id) if v.get("callback_id") == callback_id
            ]
            stored = candidates[-1] if candidates else None
        view: dict[str, Any] = stored or {
            "id": view_id or f"V{uuid.uuid4().hex[:10].upper()}",
            "team_id": self.team_id,
            "type": "modal",
            "title": _plain(callback_id[:24]),
            "blocks": [],
            "private_metadata": "",
            "callback_id": callback_id,
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "previous_view_id": None,
            "root_view_id": None,
            "app_id": self.api_app_id,
            "bot_id": None,
        }
        view["callback_id"] = callback_id
        if private_metadata is not None:
            view["private_metadata"] = private_metadata
        elements: dict[tuple[str, str], dict[str, Any]] = {}
        for block in view.get("blocks") or []:
            element = block.get("element") if isinstance(block, dict) else None
            if isinstance(element, dict) and element.get("action_id"):
                elements[(str(block.get("block_id")), str(element["action_id"]))] = element
        view["state"] = {
            "values": {
                block_id: {
                    action_id: self._state_value(elements.get((block_id, action_id)), value)
                    for action_id, value in actions.items()
                }
                for block_id, actions in values.items()
            }
        }
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": self._trigger(None, user_id),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._post_payload(
            payload,
            sign=sign,
            timestamp=timestamp,
            secret=secret,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )

    # ------------------------------------------------------------------ Events API

    def event(
        self,
        event: dict[str, Any],
        *,
        sign: bool = True,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> httpx.Response:
        """An Events API `event_callback` envelope around `event` (JSON body)."""
        now = time.time()
        event = dict(event)
        event.setdefault("event_ts", f"{now:.6f}")
        envelope = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.fake.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }
        self.last_payload = envelope
        body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
        return self._post(
            body,
            "application/json",
            sign=sign,
            timestamp=timestamp,
            secret=secret,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )

    def app_home_opened(self, user_id: str = "U_ALICE", *, tab: str = "home") -> httpx.Response:
        """The `app_home_opened` event Slack sends when a user opens the app's Home tab."""
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": self.fake.dm_channel(user_id),
            "tab": tab,
        }
        home = self.fake.home_view(user_id)
        if home is not None:
            event["view"] = home
        return self.event(event)

    def url_verification(self, challenge: str = "lifeguard-challenge") -> httpx.Response:
        """The signed `url_verification` request Slack sends when the request URL is saved."""
        body = json.dumps(
            {"token": self.verification_token, "challenge": challenge, "type": "url_verification"}
        ).encode("utf-8")
        return self._post(
            body,
            "application/json",
            sign=True,
            timestamp=None,
            secret=None,
            retry_num=None,
            retry_reason=None,
        )
