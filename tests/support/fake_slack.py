"""A fake Slack Web API server for the tests, speaking real HTTP on 127.0.0.1.

The bot's `slack_sdk.WebClient` is pointed at it with `base_url=fake.api_url`
(`SLACK_API_URL` in the bot's settings). It answers the Web API methods Lifeguard uses the
way Slack does (same envelopes, same error codes, HTTP 429 with `Retry-After` for rate
limits), records every call, and keeps enough state (channels, messages, views, users,
user groups, response URLs) for tests to read what the bot left in Slack:

    with FakeSlack() as fake:
        client = WebClient(token=fake.bot_token, base_url=fake.api_url)
        client.chat_postMessage(channel="C_OPS", text="hello")
        assert fake.messages("C_OPS")[0]["text"] == "hello"

Faithfulness notes (what real Slack does and the fake does too):
- Every answer is HTTP 200 with `{"ok": false, "error": ...}` on failure, except rate limits
  (429 + `Retry-After`) and whatever status a test injects with `fail_next`.
- Arguments may come form-encoded, as JSON (token then only in the Authorization header)
  or in the query string; `blocks`, `attachments`, `view` and `metadata` sent as JSON
  strings in a form are decoded.
- Blocks without a `block_id` get one, interactive elements without an `action_id` get one.
- Trigger ids are valid for `trigger_ttl` seconds (3 s, like Slack) and only once.
- `response_url`s accept 5 posts within 30 minutes; `replace_original` / `delete_original`
  act on the message the URL was issued for.
- When `scopes` is set (e.g. from manifest.yml with `manifest_bot_scopes`), methods the
  token lacks a scope for answer `missing_scope` with `needed`/`provided`, like Slack.
- Incident channels: `conversations.create` applies Slack's name rules (lowercase letters,
  digits, `-` and `_`, at most 80 characters; `name_taken` also for archived channels);
  `conversations.invite` takes a comma list and fails whole on one bad id unless `force`
  (`already_in_channel`, `cant_invite_self`, `user_not_found`, with `errors` per user);
  `pins.add` and `bookmarks.add` need the bot in the channel (`not_in_channel`),
  `already_pinned` for a second pin; an archived channel takes no posts (`is_archived`).

Test conveniences (not Slack behaviour): channel ids that look like ids (`C…`, `G…`) are
created on first use unless `auto_create_channels` is False, and the user directory starts
with the bot user and three people (U_ALICE, U_BOB, U_CAROL) unless `default_users=False`.
`hold_answer(method)` does the next such call and keeps its answer back until the test
releases it, for killing the bot in the instant after Slack acted.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

__all__ = [
    "FakeSlack",
    "HeldAnswer",
    "ResponsePost",
    "SlackCall",
    "all_text",
    "default_channel_name",
    "find_action_element",
    "manifest_bot_scopes",
]

T = TypeVar("T")

# Fields Slack accepts as JSON strings inside form-encoded requests.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")
_RESPONSE_URL_MAX_USES = 5
_RESPONSE_URL_TTL = 30 * 60
_MAX_MESSAGE_TEXT = 40_000
_MAX_MESSAGE_BLOCKS = 50
_MAX_VIEW_BLOCKS = 100
_CHANNEL_NAME = re.compile(r"^[a-z0-9_-]+$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9_]+$")
_USER_ID = re.compile(r"^[UW][A-Z0-9_]+$")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SlackCall:
    """One Web API request the fake received."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float
    http_status: int = 200
    response: dict[str, Any] | None = None  # None: the connection was dropped (unreachable)

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        if self.response is None:
            return "connection_dropped"
        error = self.response.get("error")
        return str(error) if error is not None else None


@dataclass(frozen=True)
class ResponsePost:
    """One POST to a response_url, accepted or not."""

    url: str
    body: dict[str, Any]
    at: float
    status: int
    error: str | None = None


class HeldAnswer:
    """One call whose answer the fake keeps back (`FakeSlack.hold_answer`): Slack has
    done it (and recorded it) when `reached` is set; the answer goes out on `release`,
    or never reaches a caller that died meanwhile."""

    def __init__(self, method: str, timeout: float) -> None:
        self.method = method
        self.timeout = timeout
        self.reached = threading.Event()
        self._released = threading.Event()

    def wait_reached(self, timeout: float = 30.0) -> None:
        if not self.reached.wait(timeout):
            raise AssertionError(f"no {self.method} call came within {timeout:g}s")

    def release(self) -> None:
        self._released.set()

    def _hold(self) -> None:
        self.reached.set()
        self._released.wait(self.timeout)


@dataclass
class _Failure:
    error: str
    remaining: int
    status: int
    retry_after: int | None


@dataclass
class _Channel:
    id: str
    name: str
    created: int
    creator: str
    is_private: bool = False
    is_im: bool = False
    is_mpim: bool = False
    im_user: str | None = None
    is_archived: bool = False
    members: list[str] = field(default_factory=list)
    topic: dict[str, Any] = field(
        default_factory=lambda: {"value": "", "creator": "", "last_set": 0}
    )
    purpose: dict[str, Any] = field(
        default_factory=lambda: {"value": "", "creator": "", "last_set": 0}
    )
    messages: list[dict[str, Any]] = field(default_factory=list)
    pins: list[dict[str, Any]] = field(default_factory=list)  # {"ts", "pinned_by", "at"}
    bookmarks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _ResponseUrl:
    url: str
    created: float
    channel_id: str | None
    user_id: str | None
    message_ts: str | None
    uses: int = 0


@dataclass
class _Trigger:
    issued: float
    user_id: str | None
    used: bool = False


class _SlackError(Exception):
    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.extra = extra or {}


# --------------------------------------------------------------------------- helpers


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _str_arg(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _required(args: dict[str, Any], key: str, error: str = "invalid_arguments") -> str:
    value = _str_arg(args, key)
    if value is None:
        raise _SlackError(
            error,
            extra={"response_metadata": {"messages": [f"[ERROR] missing required field: {key}"]}}
            if error == "invalid_arguments"
            else None,
        )
    return value


def _id_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def default_channel_name(channel_id: str) -> str:
    """ "C_OPS" -> "ops": test ids written like that get the obvious name."""
    match = re.match(r"^[CG]_(.+)$", channel_id)
    return (match.group(1) if match else channel_id).lower()


def _short_id() -> str:
    return uuid.uuid4().hex[:5]


def all_text(obj: Any) -> str:
    """Every `text` string inside a message, view or block list, joined by newlines.

    Handy for assertions: `assert "14:25 UTC" in all_text(fake.message(ch, ts))`.
    """
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj)
    return "\n".join(parts)


def _interactive_elements(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if block.get("type") == "actions":
        for element in block.get("elements") or []:
            if isinstance(element, dict):
                yield element
    for key in ("accessory", "element"):
        element = block.get(key)
        if isinstance(element, dict):
            yield element


def find_action_element(
    message_or_view: dict[str, Any] | None, action_id: str, value: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """`(block_id, element)` of the first element with this action_id (and value, if given)."""
    if not message_or_view:
        return None
    for block in message_or_view.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        for element in _interactive_elements(block):
            if element.get("action_id") != action_id:
                continue
            if value is not None and element.get("value") not in (None, value):
                continue
            return str(block.get("block_id", "")), element
    return None


def manifest_bot_scopes(path: str | Path) -> set[str]:
    """The bot scopes declared in a Slack app manifest (YAML or JSON)."""
    import yaml  # local import: only needed when scopes are enforced

    text = Path(path).read_text(encoding="utf-8")
    manifest = yaml.safe_load(text)
    return set(manifest["oauth_config"]["scopes"]["bot"])


def _timezone_offset(tz: str) -> int:
    offset = dt.datetime.now(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _timezone_label(tz: str) -> str:
    return dt.datetime.now(ZoneInfo(tz)).tzname() or tz


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: FakeSlack, address: tuple[str, int]) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "FakeSlack/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST")

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET")


# --------------------------------------------------------------------------- the fake


class FakeSlack:
    """A local Slack Web API. See the module docstring."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        team_id: str = "T0LIFEGUARD",
        team_name: str = "Lifeguard Test",
        team_domain: str = "lifeguard-test",
        bot_user_id: str = "UBOT",
        bot_id: str = "B0LIFEGUARD",
        app_id: str = "A0LIFEGUARD",
        bot_name: str = "lifeguard",
        host: str = "127.0.0.1",
        port: int = 0,
        default_users: bool = True,
        scopes: Iterable[str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.host = host
        self._requested_port = port
        self._default_users = default_users
        # Mutable knobs a test may change at any time.
        self.scopes: set[str] | None = set(scopes) if scopes is not None else None
        self.unreachable_methods: set[str] = set()
        self.auto_create_channels = True
        self.trigger_ttl = 3.0

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._last_ts_us = 0

        self._calls: list[SlackCall] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._held: dict[str, HeldAnswer] = {}
        self._channels: dict[str, _Channel] = {}
        self._dms: dict[str, str] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._view_users: dict[str, str | None] = {}
        self._home_views: dict[str, str] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._response_posts: list[ResponsePost] = []
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        self.server_errors: list[str] = []  # tracebacks of bugs in the fake itself
        self._reset_users()

        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.open": self._conversations_open,
            "conversations.create": self._conversations_create,
            "conversations.invite": self._conversations_invite,
            "conversations.info": self._conversations_info,
            "conversations.join": self._conversations_join,
            "conversations.setTopic": self._conversations_set_topic,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.members": self._conversations_members,
            "conversations.archive": self._conversations_archive,
            "conversations.list": self._conversations_list,
            "pins.add": self._pins_add,
            "pins.list": self._pins_list,
            "bookmarks.add": self._bookmarks_add,
            "bookmarks.list": self._bookmarks_list,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        if self._server is not None:
            return self
        server = _Server(self, (self.host, self._requested_port))
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-slack:{server.server_address[1]}",
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ recording

    @property
    def calls(self) -> list[SlackCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [call for call in self._calls if call.method == method]

    def describe_calls(self) -> str:
        """One line per recorded call and response_url post, for failure messages."""
        with self._lock:
            calls = list(self._calls)
            posts = list(self._response_posts)
        lines = [f"{len(calls)} Slack API call(s):"]
        for call in calls:
            outcome = "ok" if call.ok else f"error={call.error}"
            args = {k: v for k, v in call.args.items() if k not in ("blocks", "view")}
            brief = json.dumps(args, default=str, ensure_ascii=False)
            if len(brief) > 200:
                brief = brief[:197] + "..."
            lines.append(f"  {call.method} [{call.http_status} {outcome}] {brief}")
        if posts:
            lines.append(f"{len(posts)} response_url post(s):")
            for post in posts:
                brief = json.dumps(post.body, default=str, ensure_ascii=False)[:200]
                lines.append(f"  {post.url} [{post.status}] {brief}")
        return "\n".join(lines)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Poll `predicate` until it returns something truthy and return that.

        Raises AssertionError with a summary of the recorded calls on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._generation
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"condition not met within {timeout:g}s\n{self.describe_calls()}"
                )
            self._wait_for_change(seen, min(remaining, 0.1))

    def _wait_for_change(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen, timeout=timeout)

    def _touch(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def reset(self, *, users: bool = False, usergroups: bool = False) -> None:
        """Forget calls, channels and messages, views, responses and injected failures.

        The user directory and user groups are kept unless `users` / `usergroups` is True
        (users then go back to the initial directory; groups are emptied).
        """
        with self._lock:
            self._calls.clear()
            self._failures.clear()
            for held in self._held.values():
                held.release()
            self._held.clear()
            self.unreachable_methods.clear()
            self._channels.clear()
            self._dms.clear()
            self._ephemerals.clear()
            self._views.clear()
            self._view_users.clear()
            self._home_views.clear()
            self._triggers.clear()
            self._response_urls.clear()
            self._response_posts.clear()
            self.server_errors.clear()
            if users:
                self._reset_users()
            if usergroups:
                self._usergroups.clear()
        self._touch()

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        times: int = 1,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make the next `times` calls to `method` fail with `error`.

        `status` defaults to 429 for `ratelimited` (or when `retry_after` is given) and to
        200 otherwise, like Slack. A 429 always carries `Retry-After` (`retry_after`,
        default 1 second). Failures queue up in the order they are added.
        """
        if method not in self._methods:
            raise ValueError(f"FakeSlack does not implement {method!r}")
        if status is None:
            status = 429 if (error == "ratelimited" or retry_after is not None) else 200
        with self._lock:
            self._failures.setdefault(method, []).append(
                _Failure(error=error, remaining=times, status=status, retry_after=retry_after)
            )

    def hold_answer(self, method: str, timeout: float = 60.0) -> HeldAnswer:
        """Do the next call to `method` as Slack would, record it, then keep its answer
        back until the test releases it (at most `timeout` seconds): for killing the bot
        in the instant after Slack acted and before the bot heard of it."""
        if method not in self._methods:
            raise ValueError(f"FakeSlack does not implement {method!r}")
        held = HeldAnswer(method, timeout)
        with self._lock:
            self._held[method] = held
        return held

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

    # ------------------------------------------------------------------ users and groups

    def _reset_users(self) -> None:
        self._users.clear()
        self.add_user(
            self.bot_user_id,
            name=self.bot_name,
            tz="America/Los_Angeles",
            is_bot=True,
            real_name="Lifeguard",
        )
        if self._default_users:
            self.add_user("U_ALICE", name="alice", tz="Europe/Berlin", real_name="Alice Adams")
            self.add_user("U_BOB", name="bob", tz="America/New_York", real_name="Bob Brown")
            self.add_user("U_CAROL", name="carol", tz="Asia/Kolkata", real_name="Carol Chen")

    def add_user(
        self,
        user_id: str,
        name: str | None = None,
        *,
        tz: str = "Europe/Berlin",
        tz_offset: int | None = None,
        is_bot: bool = False,
        real_name: str | None = None,
        tz_label: str | None = None,
        deleted: bool = False,
        is_admin: bool = False,
    ) -> dict[str, Any]:
        """Add or replace a user. `tz_offset` defaults to the zone's current UTC offset
        in seconds (Europe/Berlin: 3600 in winter, 7200 in summer), as Slack reports it."""
        name = name or user_id.lower()
        real_name = real_name or name.title()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": deleted,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz_label or _timezone_label(tz),
            "tz_offset": _timezone_offset(tz) if tz_offset is None else tz_offset,
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": name,
                "display_name_normalized": name,
                "team": self.team_id,
                "image_48": f"https://avatars.example/{user_id}_48.png",
            },
            "is_admin": is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
        }
        if is_bot and user_id == self.bot_user_id:
            user["profile"]["bot_id"] = self.bot_id
        with self._lock:
            self._users[user_id] = user
        return copy.deepcopy(user)

    def remove_user(self, user_id: str) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            user = self._users.get(user_id)
            return copy.deepcopy(user) if user else None

    def set_usergroup(
        self,
        group_id: str,
        users: Iterable[str],
        *,
        handle: str | None = None,
        name: str | None = None,
    ) -> None:
        handle = handle or group_id.lower()
        with self._lock:
            self._usergroups[group_id] = {
                "id": group_id,
                "team_id": self.team_id,
                "is_usergroup": True,
                "name": name or handle,
                "handle": handle,
                "description": "",
                "date_create": int(time.time()),
                "users": list(users),
            }

    def remove_usergroup(self, group_id: str) -> None:
        with self._lock:
            self._usergroups.pop(group_id, None)

    # ------------------------------------------------------------------ channels and messages

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08X}"

    def _next_ts(self) -> str:
        with self._lock:
            now_us = int(time.time() * 1_000_000)
            self._last_ts_us = max(now_us, self._last_ts_us + 1)
            us = self._last_ts_us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def add_channel(
        self,
        channel_id: str | None = None,
        name: str | None = None,
        *,
        is_private: bool = False,
        members: Iterable[str] = (),
        bot_member: bool = True,
        topic: str = "",
    ) -> str:
        """Create a channel (public by default, the bot a member unless told) and return
        its id."""
        with self._lock:
            channel_id = channel_id or self._new_id("C")
            channel = _Channel(
                id=channel_id,
                name=name or default_channel_name(channel_id),
                created=int(time.time()),
                creator="U_ADMIN",
                is_private=is_private,
                members=list(
                    dict.fromkeys([*members, *([self.bot_user_id] if bot_member else [])])
                ),
            )
            channel.topic["value"] = topic
            self._channels[channel_id] = channel
        self._touch()
        return channel_id

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM channel with this user (opened if needed)."""
        with self._lock:
            return self._open_dm(user_id)

    def _open_dm(self, user_id: str) -> str:
        channel_id = self._dms.get(user_id)
        if channel_id is None:
            channel_id = self._new_id("D")
            self._channels[channel_id] = _Channel(
                id=channel_id,
                name=channel_id,
                created=int(time.time()),
                creator=self.bot_user_id,
                is_im=True,
                im_user=user_id,
                members=[self.bot_user_id, user_id],
            )
            self._dms[user_id] = channel_id
        return channel_id

    def add_message(
        self,
        channel: str,
        text: str = "",
        *,
        user: str = "U_ALICE",
        blocks: list[dict[str, Any]] | None = None,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Seed a message written by someone (a person by default) into a channel."""
        with self._lock:
            chan = self._channel_or_error(channel)
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts or self._next_ts(),
                "team": self.team_id,
            }
            if blocks is not None:
                message["blocks"] = copy.deepcopy(blocks)
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._insert_message(chan, message)
        self._touch()
        return copy.deepcopy(message)

    def channel(self, channel_id: str) -> dict[str, Any] | None:
        """conversations.info's view of a channel (with `members`), or None."""
        with self._lock:
            chan = self._channels.get(channel_id)
            if chan is None:
                return None
            info = self._channel_info(chan)
            info["members"] = list(chan.members)
            info["pins"] = [pin["ts"] for pin in chan.pins]
            info["bookmarks"] = copy.deepcopy(chan.bookmarks)
            return info

    def channel_by_name(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            for chan in self._channels.values():
                if chan.name == name.lstrip("#"):
                    return self.channel(chan.id)
        return None

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            chan = self._channels.get(channel)
            if chan is None:
                return None
            found = self._find_message(chan, ts)
            return copy.deepcopy(found) if found else None

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """All messages in a channel, thread replies included, oldest first."""
        with self._lock:
            chan = self._channels.get(channel)
            return copy.deepcopy(chan.messages) if chan else []

    def last_message(self, channel: str) -> dict[str, Any] | None:
        messages = self.messages(channel)
        return messages[-1] if messages else None

    def ephemerals(
        self, channel: str | None = None, user: str | None = None
    ) -> list[dict[str, Any]]:
        """Ephemeral messages (chat.postEphemeral and ephemeral response_url posts)."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._ephemerals
                if (channel is None or e["channel"] == channel)
                and (user is None or e["user"] == user)
            ]

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            view = self._views.get(view_id)
            return copy.deepcopy(view) if view else None

    def views(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Views opened, pushed or published, oldest first (optionally for one user)."""
        with self._lock:
            return [
                copy.deepcopy(view)
                for view_id, view in self._views.items()
                if user_id is None or self._view_users.get(view_id) == user_id
            ]

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            view_id = self._home_views.get(user_id)
            return self.view(view_id) if view_id else None

    def _channel_info(self, chan: _Channel) -> dict[str, Any]:
        if chan.is_im:
            return {
                "id": chan.id,
                "created": chan.created,
                "is_im": True,
                "is_org_shared": False,
                "user": chan.im_user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": chan.id,
            "name": chan.name,
            "is_channel": not chan.is_private and not chan.is_mpim,
            "is_group": chan.is_private and not chan.is_mpim,
            "is_im": False,
            "is_mpim": chan.is_mpim,
            "is_private": chan.is_private,
            "created": chan.created,
            "is_archived": chan.is_archived,
            "is_general": False,
            "unlinked": 0,
            "name_normalized": chan.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "is_member": self.bot_user_id in chan.members,
            "creator": chan.creator,
            "topic": dict(chan.topic),
            "purpose": dict(chan.purpose),
            "num_members": len(chan.members),
        }

    def _lookup_channel(self, ref: str) -> _Channel | None:
        chan = self._channels.get(ref)
        if chan is not None:
            return chan
        name = ref.lstrip("#")
        for candidate in self._channels.values():
            if not candidate.is_im and candidate.name == name:
                return candidate
        if self.auto_create_channels and _CHANNEL_ID.match(ref):
            self.add_channel(ref)
            return self._channels[ref]
        return None

    def _channel_or_error(self, ref: str | None) -> _Channel:
        if not ref:
            raise _SlackError("channel_not_found")
        chan = self._lookup_channel(ref)
        if chan is None:
            raise _SlackError("channel_not_found")
        return chan

    def _find_message(self, chan: _Channel, ts: str) -> dict[str, Any] | None:
        for message in chan.messages:
            if message.get("ts") == ts:
                return message
        return None

    def _insert_message(self, chan: _Channel, message: dict[str, Any]) -> None:
        chan.messages.append(message)
        chan.messages.sort(key=lambda m: float(m["ts"]))
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != message["ts"]:
            parent = self._find_message(chan, thread_ts)
            if parent is not None:
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
                parent["latest_reply"] = message["ts"]

    # ------------------------------------------------------------------ triggers and response_url

    def new_trigger_id(self, user_id: str | None = None) -> str:
        """A fresh trigger id as Slack puts in interactive payloads (valid `trigger_ttl`s)."""
        n = next(self._ids)
        trigger_id = f"{int(time.time())}{n:04d}.{n * 7919 % 10**9}.{uuid.uuid4().hex[:32]}"
        self.register_trigger_id(trigger_id, user_id)
        return trigger_id

    def register_trigger_id(self, trigger_id: str, user_id: str | None = None) -> None:
        with self._lock:
            self._triggers[trigger_id] = _Trigger(issued=time.monotonic(), user_id=user_id)

    def _use_trigger(self, args: dict[str, Any]) -> str | None:
        trigger_id = _str_arg(args, "trigger_id")
        if trigger_id is None:
            raise _SlackError(
                "invalid_arguments",
                extra={
                    "response_metadata": {
                        "messages": ["[ERROR] missing required field: trigger_id"]
                    }
                },
            )
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise _SlackError("invalid_trigger_id")
        if trigger.used:
            raise _SlackError("exchanged_trigger_id")
        if time.monotonic() - trigger.issued > self.trigger_ttl:
            raise _SlackError("expired_trigger_id")
        trigger.used = True
        return trigger.user_id

    def new_response_url(
        self,
        *,
        channel_id: str | None = None,
        user_id: str | None = None,
        message_ts: str | None = None,
    ) -> str:
        """A response_url on this server. Posts to it are recorded; when the URL belongs to
        a message (`channel_id` + `message_ts`), `replace_original`/`delete_original` act on
        that message, `response_type: in_channel` posts to `channel_id`, anything else is
        an ephemeral message to `user_id`."""
        url = f"{self.base_url}/response/{uuid.uuid4().hex}"
        with self._lock:
            self._response_urls[url] = _ResponseUrl(
                url=url,
                created=time.monotonic(),
                channel_id=channel_id,
                user_id=user_id,
                message_ts=message_ts,
            )
        return url

    def responses(self, url: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies accepted at response URLs (all, or for one url), in order."""
        with self._lock:
            return [
                copy.deepcopy(post.body)
                for post in self._response_posts
                if post.status == 200 and (url is None or post.url == url)
            ]

    def response_posts(self, url: str | None = None) -> list[ResponsePost]:
        """Every POST to a response URL, refused ones (expired, used up) included."""
        with self._lock:
            return [p for p in self._response_posts if url is None or p.url == url]

    # ------------------------------------------------------------------ HTTP dispatch

    def _dispatch(self, handler: _Handler, verb: str) -> None:
        try:
            parts = urlsplit(handler.path)
            body = self._read_body(handler)
            if parts.path.startswith("/api/"):
                self._handle_api(handler, parts.path[len("/api/") :], parts.query, body)
            elif parts.path.startswith("/response/") and verb == "POST":
                self._handle_response_url(handler, parts.path, body)
            else:
                self._send(handler, 404, {"ok": False, "error": "not_found"})
        except Exception:  # a bug in the fake: make it loud
            trace = traceback.format_exc()
            self.server_errors.append(trace)
            print(f"FakeSlack internal error:\n{trace}", file=sys.stderr)
            with contextlib.suppress(Exception):
                self._send(handler, 500, {"ok": False, "error": "fatal_error"})

    @staticmethod
    def _read_body(handler: _Handler) -> bytes:
        if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        handler: _Handler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    def _parse_args(
        self, handler: _Handler, query: str, body: bytes
    ) -> tuple[dict[str, Any], bool]:
        """Request arguments and whether the body was JSON."""
        args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        is_json = False
        if body:
            if content_type == "application/json":
                is_json = True
                try:
                    parsed = json.loads(body)
                except ValueError as exc:
                    raise _SlackError("invalid_json") from exc
                if not isinstance(parsed, dict):
                    raise _SlackError("invalid_json")
                args.update(parsed)
            elif content_type in ("application/x-www-form-urlencoded", ""):
                try:
                    args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
                except UnicodeDecodeError as exc:
                    raise _SlackError("invalid_charset") from exc
            elif content_type == "multipart/form-data":
                args.update(self._parse_multipart(handler, body))
            else:
                raise _SlackError("invalid_post_type")
        for key in _JSON_FIELDS:
            value = args.get(key)
            if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(value)
        return args, is_json

    @staticmethod
    def _parse_multipart(handler: _Handler, body: bytes) -> dict[str, Any]:
        head = f"Content-Type: {handler.headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP_POLICY).parsebytes(head + body)
        result: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            decoded = part.get_payload(decode=True)
            payload = decoded if isinstance(decoded, bytes) else b""
            if part.get_filename():
                result[str(name)] = payload
            else:
                result[str(name)] = payload.decode("utf-8", "replace")
        return result

    def _handle_api(self, handler: _Handler, method: str, query: str, body: bytes) -> None:
        auth = handler.headers.get("Authorization") or ""
        token: str | None = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        args: dict[str, Any] = {}
        status, headers = 200, {}
        response: dict[str, Any] | None
        try:
            args, is_json = self._parse_args(handler, query, body)
            form_token = args.pop("token", None)
            if token is None and not is_json and form_token:
                token = str(form_token)
            if method in self.unreachable_methods:
                response = None
            else:
                response = self._call(method, args, token)
        except _SlackError as exc:
            status, headers = exc.status, dict(exc.headers)
            response = {"ok": False, "error": exc.error, **exc.extra}
        with self._lock:
            if self.scopes is not None and response is not None:
                headers.setdefault("X-OAuth-Scopes", ",".join(sorted(self.scopes)))
            self._calls.append(
                SlackCall(
                    method=method,
                    args=copy.deepcopy(args),
                    token=token,
                    at=time.time(),
                    http_status=status if response is not None else 0,
                    response=copy.deepcopy(response),
                )
            )
        self._touch()
        if response is None:
            handler.close_connection = True  # drop the connection without an answer
            return
        with self._lock:
            held = self._held.pop(method, None)
        if held is not None:
            held._hold()
            with contextlib.suppress(OSError):  # the caller may have died meanwhile
                self._send(handler, status, response, headers)
            return
        self._send(handler, status, response, headers)

    def _call(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        implementation = self._methods.get(method)
        if implementation is None:
            raise _SlackError("unknown_method", extra={"req_method": method})
        if method != "api.test" and token != self.bot_token:
            raise _SlackError("invalid_auth")
        with self._lock:
            failure = self._take_failure(method)
        if failure is not None:
            headers: dict[str, str] = {}
            if failure.status == 429 or failure.retry_after is not None:
                headers["Retry-After"] = str(
                    failure.retry_after if failure.retry_after is not None else 1
                )
            raise _SlackError(failure.error, status=failure.status, headers=headers)
        with self._lock:
            self._check_scope(method, args)
            result = implementation(args)
        return {"ok": True, **result}

    # ------------------------------------------------------------------ scopes

    def _conversation_kind(self, ref: Any) -> str:
        chan = self._channels.get(str(ref)) if ref else None
        if chan is None:
            return "channels"
        if chan.is_im:
            return "im"
        if chan.is_mpim:
            return "mpim"
        return "groups" if chan.is_private else "channels"

    def _required_scopes(self, method: str, args: dict[str, Any]) -> tuple[str, ...]:
        kind = self._conversation_kind(args.get("channel"))
        manage = {
            "channels": "channels:manage",
            "groups": "groups:write",
            "im": "im:write",
            "mpim": "mpim:write",
        }
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "chat.delete"):
            return ("chat:write",)
        if method == "users.info":
            return ("users:read",)
        if method in ("usergroups.list", "usergroups.users.list"):
            return ("usergroups:read",)
        if method == "conversations.open":
            many = len(_id_list(args.get("users"))) > 1
            return ("mpim:write",) if many else ("im:write",)
        if method == "conversations.create":
            return (
                ("groups:write",) if _flag(args.get("is_private", False)) else ("channels:manage",)
            )
        if method == "conversations.invite":
            return (manage[kind], f"{kind}:write.invites")
        if method == "conversations.setTopic":
            return (manage[kind], f"{kind}:write.topic")
        if method in ("conversations.info", "conversations.members"):
            return (f"{kind}:read",)
        if method == "conversations.join":
            return ("channels:join",)
        if method == "conversations.archive":
            return (manage[kind],)
        if method == "conversations.list":
            return ("channels:read", "groups:read", "im:read", "mpim:read")
        if method == "pins.add":
            return ("pins:write",)
        if method == "pins.list":
            return ("pins:read",)
        if method == "bookmarks.add":
            return ("bookmarks:write",)
        if method == "bookmarks.list":
            return ("bookmarks:read",)
        if method in ("conversations.history", "conversations.replies"):
            return (f"{kind}:history",)
        return ()

    def _check_scope(self, method: str, args: dict[str, Any]) -> None:
        if self.scopes is None:
            return
        needed = self._required_scopes(method, args)
        if needed and not (set(needed) & self.scopes):
            raise _SlackError(
                "missing_scope",
                extra={"needed": ",".join(needed), "provided": ",".join(sorted(self.scopes))},
            )

    # ------------------------------------------------------------------ response_url

    def _handle_response_url(self, handler: _Handler, path: str, body: bytes) -> None:
        url = f"{self.base_url}{path}"
        try:
            parsed: Any = json.loads(body or b"{}")
        except ValueError:
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            try:
                parsed = json.loads(form.get("payload", ""))
            except ValueError:
                parsed = None
        status, error = 200, None
        with self._lock:
            record = self._response_urls.get(url)
            if not isinstance(parsed, dict):
                status, error, parsed = (
                    400,
                    "invalid_payload",
                    {"raw": body.decode("utf-8", "replace")},
                )
            elif record is None or time.monotonic() - record.created > _RESPONSE_URL_TTL:
                status, error = 404, "expired_url"
            elif record.uses >= _RESPONSE_URL_MAX_USES:
                status, error = 404, "used_url"
            else:
                record.uses += 1
                self._apply_response(record, parsed)
            self._response_posts.append(
                ResponsePost(
                    url=url, body=copy.deepcopy(parsed), at=time.time(), status=status, error=error
                )
            )
        self._touch()
        self._send(
            handler, status, {"ok": True} if error is None else {"ok": False, "error": error}
        )

    def _apply_response(self, record: _ResponseUrl, body: dict[str, Any]) -> None:
        chan = self._channels.get(record.channel_id) if record.channel_id else None
        original = (
            self._find_message(chan, record.message_ts)
            if chan is not None and record.message_ts
            else None
        )
        if _flag(body.get("delete_original", False)):
            if chan is not None and original is not None:
                chan.messages.remove(original)
            return
        if _flag(body.get("replace_original", False)) and original is not None:
            for key in ("text", "blocks", "attachments"):
                original.pop(key, None)
                if key in body:
                    original[key] = copy.deepcopy(body[key])
            original.setdefault("text", "")
            self._normalize_blocks(original.get("blocks"))
            original["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
            return
        content: dict[str, Any] = {
            k: copy.deepcopy(body[k]) for k in ("text", "blocks", "attachments") if k in body
        }
        if body.get("response_type") == "in_channel" and record.channel_id:
            target = self._lookup_channel(record.channel_id)
            if target is not None:
                message = self._bot_message(content)
                if body.get("thread_ts"):
                    message["thread_ts"] = str(body["thread_ts"])
                self._insert_message(target, message)
            return
        self._ephemerals.append(
            {
                "channel": record.channel_id,
                "user": record.user_id,
                "ts": self._next_ts(),
                "via": "response_url",
                **content,
            }
        )

    # ------------------------------------------------------------------ message helpers

    @staticmethod
    def _normalize_blocks(blocks: Any) -> None:
        if not isinstance(blocks, list):
            return
        for block in blocks:
            if not isinstance(block, dict):
                continue
            block.setdefault("block_id", _short_id())
            for element in _interactive_elements(block):
                if element.get("type") in {
                    "button",
                    "static_select",
                    "users_select",
                    "overflow",
                    "datepicker",
                    "checkboxes",
                    "radio_buttons",
                    "plain_text_input",
                    "conversations_select",
                    "channels_select",
                    "multi_users_select",
                    "multi_static_select",
                    "timepicker",
                    "datetimepicker",
                    "number_input",
                }:
                    element.setdefault("action_id", _short_id())

    def _validated_content(self, args: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
        content: dict[str, Any] = {}
        if "text" in args and args["text"] is not None:
            content["text"] = str(args["text"])
        for key, error in (("blocks", "invalid_blocks"), ("attachments", "invalid_attachments")):
            if key not in args or args[key] is None or args[key] == "":
                continue
            value = args[key]
            if isinstance(value, str):
                raise _SlackError(f"{error}_format" if key == "blocks" else error)
            if not isinstance(value, list) or not all(
                isinstance(item, dict) and (key == "attachments" or "type" in item)
                for item in value
            ):
                raise _SlackError(error)
            if key == "blocks" and len(value) > _MAX_MESSAGE_BLOCKS:
                raise _SlackError(error)
            content[key] = copy.deepcopy(value)
        if (
            required
            and not content.get("text")
            and not content.get("blocks")
            and not content.get("attachments")
        ):
            raise _SlackError("no_text")
        if len(content.get("text", "")) > _MAX_MESSAGE_TEXT:
            raise _SlackError("msg_too_long")
        self._normalize_blocks(content.get("blocks"))
        return content

    def _bot_message(self, content: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": "",
            "ts": self._next_ts(),
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
                "deleted": False,
            },
        }
        message.update(content)
        return message

    def _post_target(self, ref: str | None) -> _Channel:
        if ref and _USER_ID.match(ref) and ref not in self._channels:
            if ref not in self._users:  # Slack treats an unknown user id as a bad channel
                raise _SlackError("channel_not_found")
            return self._channels[self._open_dm(ref)]
        chan = self._channel_or_error(ref)
        if chan.is_archived:
            raise _SlackError("is_archived")
        return chan

    def _known_user(self, user_id: str) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None:
            raise _SlackError("user_not_found")
        return user

    # ------------------------------------------------------------------ Web API methods

    def _api_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"args": {k: v for k, v in args.items() if isinstance(v, str)}}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._post_target(_str_arg(args, "channel"))
        content = self._validated_content(args)
        message = self._bot_message(content)
        thread_ts = _str_arg(args, "thread_ts")
        if thread_ts:
            message["thread_ts"] = thread_ts
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = copy.deepcopy(args["metadata"])
        self._insert_message(chan, message)
        return {"channel": chan.id, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        ts = _required(args, "ts", "message_not_found")
        message = self._find_message(chan, ts)
        if message is None:
            raise _SlackError("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise _SlackError("cant_update_message")
        content = self._validated_content(args)
        # Slack keeps blocks/attachments left out of the update; [] removes them.
        for key in ("text", "blocks", "attachments"):
            if key in content:
                if content[key] == [] and key != "text":
                    message.pop(key, None)
                else:
                    message[key] = content[key]
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = copy.deepcopy(args["metadata"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "channel": chan.id,
            "ts": ts,
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        user = _required(args, "user", "user_not_found")
        chan = self._post_target(_str_arg(args, "channel"))
        self._known_user(user)
        if not chan.is_im and user not in chan.members and chan.is_private:
            raise _SlackError("user_not_in_channel")
        content = self._validated_content(args)
        ts = self._next_ts()
        entry = {"channel": chan.id, "user": user, "ts": ts, "via": "chat.postEphemeral", **content}
        if _str_arg(args, "thread_ts"):
            entry["thread_ts"] = _str_arg(args, "thread_ts")
        self._ephemerals.append(entry)
        return {"message_ts": ts}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        ts = _required(args, "ts", "message_not_found")
        message = self._find_message(chan, ts)
        if message is None:
            raise _SlackError("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise _SlackError("cant_delete_message")
        chan.messages.remove(message)
        return {"channel": chan.id, "ts": ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        ts = _required(args, "message_ts", "message_not_found")
        if self._find_message(chan, ts) is None:
            raise _SlackError("message_not_found")
        return {
            "channel": chan.id,
            "permalink": f"https://{self.team_domain}.slack.com/archives/{chan.id}/"
            f"p{ts.replace('.', '')}",
        }

    # views ---------------------------------------------------------------

    def _view_arg(self, args: dict[str, Any], *, allowed: tuple[str, ...]) -> dict[str, Any]:
        view = args.get("view")
        if view is None or view == "":
            raise _SlackError(
                "invalid_arguments",
                extra={"response_metadata": {"messages": ["[ERROR] missing required field: view"]}},
            )
        if not isinstance(view, dict):
            raise _SlackError("invalid_arguments")
        problems: list[str] = []
        if view.get("type") not in allowed:
            problems.append(f"[ERROR] must be one of {list(allowed)} [json-pointer:/view/type]")
        if view.get("type") == "modal" and not isinstance(view.get("title"), dict):
            problems.append("[ERROR] missing required field: title [json-pointer:/view]")
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or not all(
            isinstance(b, dict) and "type" in b for b in blocks
        ):
            problems.append("[ERROR] missing required field: blocks [json-pointer:/view]")
        elif len(blocks) > _MAX_VIEW_BLOCKS:
            problems.append("[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]")
        if problems:
            raise _SlackError(
                "invalid_arguments", extra={"response_metadata": {"messages": problems}}
            )
        view = copy.deepcopy(view)
        self._normalize_blocks(view["blocks"])
        return view

    def _store_view(
        self,
        view: dict[str, Any],
        *,
        user_id: str | None,
        view_id: str | None = None,
        previous_view_id: str | None = None,
        root_view_id: str | None = None,
    ) -> dict[str, Any]:
        view_id = view_id or self._new_id("V")
        stored: dict[str, Any] = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type"),
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": previous_view_id,
            "root_view_id": root_view_id or view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self._views[view_id] = stored
        self._view_users[view_id] = user_id
        return copy.deepcopy(stored)

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(args, allowed=("modal",))
        user_id = self._use_trigger(args)
        return {"view": self._store_view(view, user_id=user_id)}

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(args, allowed=("modal",))
        user_id = self._use_trigger(args)
        previous = next(
            (
                vid
                for vid in reversed(self._views)
                if self._view_users.get(vid) == user_id and self._views[vid]["type"] == "modal"
            ),
            None,
        )
        root = self._views[previous]["root_view_id"] if previous else None
        return {
            "view": self._store_view(
                view, user_id=user_id, previous_view_id=previous, root_view_id=root
            )
        }

    def _find_view(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = _str_arg(args, "view_id")
        external_id = _str_arg(args, "external_id")
        if view_id is None and external_id is None:
            raise _SlackError(
                "invalid_arguments",
                extra={
                    "response_metadata": {
                        "messages": ["[ERROR] view_id or external_id is required"]
                    }
                },
            )
        for stored in self._views.values():
            if (view_id and stored["id"] == view_id) or (
                external_id and stored.get("external_id") == external_id
            ):
                return stored
        raise _SlackError("not_found")

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self._find_view(args)
        view = self._view_arg(args, allowed=(stored["type"],))
        expected = _str_arg(args, "hash")
        if expected is not None and expected != stored["hash"]:
            raise _SlackError("hash_conflict")
        return {
            "view": self._store_view(
                view,
                user_id=self._view_users.get(stored["id"]),
                view_id=stored["id"],
                previous_view_id=stored["previous_view_id"],
                root_view_id=stored["root_view_id"],
            )
        }

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(args, "user_id", "invalid_arguments")
        self._known_user(user_id)
        view = self._view_arg(args, allowed=("home",))
        existing = self._home_views.get(user_id)
        expected = _str_arg(args, "hash")
        if existing and expected is not None and expected != self._views[existing]["hash"]:
            raise _SlackError("hash_conflict")
        stored = self._store_view(view, user_id=user_id, view_id=existing)
        self._home_views[user_id] = stored["id"]
        return {"view": stored}

    # users and groups ----------------------------------------------------

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(args, "user", "user_not_found")
        return {"user": copy.deepcopy(self._known_user(user_id))}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include_users = _flag(args.get("include_users", False))
        groups = []
        for group in self._usergroups.values():
            entry = {k: v for k, v in group.items() if k != "users"}
            entry["user_count"] = len(group["users"])
            if include_users:
                entry["users"] = list(group["users"])
            groups.append(entry)
        return {"usergroups": groups}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group_id = _required(args, "usergroup", "no_such_subteam")
        group = self._usergroups.get(group_id)
        if group is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    # conversations -------------------------------------------------------

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = _id_list(args.get("users"))
        channel_ref = _str_arg(args, "channel")
        if not users:
            if channel_ref is None:
                raise _SlackError("users_list_not_supplied")
            chan = self._channels.get(channel_ref)
            if chan is None or not (chan.is_im or chan.is_mpim):
                raise _SlackError("channel_not_found")
            already = True
        else:
            for user_id in users:
                self._known_user(user_id)
            others = [u for u in users if u != self.bot_user_id]
            if len(others) > 8:
                raise _SlackError("too_many_users")
            if len(others) <= 1:
                target = others[0] if others else self.bot_user_id
                already = target in self._dms
                chan = self._channels[self._open_dm(target)]
            else:
                chan, already = self._open_mpim(others)
        result: dict[str, Any] = {"no_op": True, "already_open": True} if already else {}
        full = _flag(args.get("return_im", False))
        result["channel"] = self._channel_info(chan) if full else {"id": chan.id}
        return result

    def _open_mpim(self, others: list[str]) -> tuple[_Channel, bool]:
        members = sorted({self.bot_user_id, *others})
        for chan in self._channels.values():
            if chan.is_mpim and sorted(chan.members) == members:
                return chan, True
        chan = _Channel(
            id=self._new_id("G"),
            name=f"mpdm-{'--'.join(members)}-1",
            created=int(time.time()),
            creator=self.bot_user_id,
            is_private=True,
            is_mpim=True,
            members=members,
        )
        self._channels[chan.id] = chan
        return chan, False

    def _conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _str_arg(args, "name")
        if name is None:
            raise _SlackError("invalid_name_required")
        if len(name) > 80:
            raise _SlackError("invalid_name_maxlength")
        if not _CHANNEL_NAME.match(name):
            raise _SlackError("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise _SlackError("invalid_name_punctuation")
        if any(c.name == name for c in self._channels.values() if not c.is_im):
            raise _SlackError("name_taken")
        channel_id = self._new_id("C")
        chan = _Channel(
            id=channel_id,
            name=name,
            created=int(time.time()),
            creator=self.bot_user_id,
            is_private=_flag(args.get("is_private", False)),
            members=[self.bot_user_id],
        )
        self._channels[channel_id] = chan
        return {"channel": self._channel_info(chan)}

    def _member_channel(self, args: dict[str, Any]) -> _Channel:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        if chan.is_archived:
            raise _SlackError("is_archived")
        if self.bot_user_id not in chan.members:
            raise _SlackError("not_in_channel")
        return chan

    def _conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack's rules: a comma list of up to 1000 user ids. Without `force`, one id that
        cannot be invited (unknown, the caller itself, already a member) fails the whole
        call and invites nobody; the answer's `errors` names each such user. With `force`,
        the valid ones are invited and the rest reported in `errors` beside `ok: true`
        (the call fails only when nobody could be invited)."""
        chan = self._member_channel(args)
        if chan.is_im:
            raise _SlackError("method_not_supported_for_channel_type")
        users = _id_list(args.get("users"))
        if not users:
            raise _SlackError("no_user")
        if len(users) > 1000:
            raise _SlackError("too_many_users")
        problems: list[dict[str, Any]] = []
        valid: list[str] = []
        for user_id in dict.fromkeys(users):
            if user_id == self.bot_user_id:
                error = "cant_invite_self"
            elif user_id not in self._users or self._users[user_id].get("deleted"):
                error = "user_not_found"
            elif user_id in chan.members:
                error = "already_in_channel"
            else:
                valid.append(user_id)
                continue
            problems.append({"user": user_id, "ok": False, "error": error})
        force = _flag(args.get("force", False))
        if problems and (not force or not valid):
            raise _SlackError(problems[0]["error"], extra={"errors": problems})
        chan.members.extend(valid)
        result: dict[str, Any] = {"channel": self._channel_info(chan)}
        if problems:
            result["errors"] = problems
        return result

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        info = self._channel_info(chan)
        if not _flag(args.get("include_num_members", False)):
            info.pop("num_members", None)
        return {"channel": info}

    def _conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        if chan.is_im or chan.is_mpim or chan.is_private:
            raise _SlackError("method_not_supported_for_channel_type")
        if chan.is_archived:
            raise _SlackError("is_archived")
        if self.bot_user_id in chan.members:
            return {
                "channel": self._channel_info(chan),
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        chan.members.append(self.bot_user_id)
        return {"channel": self._channel_info(chan)}

    def _conversations_set_topic(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._member_channel(args)
        topic = str(args.get("topic") or "")
        if len(topic) > 250:
            raise _SlackError("too_long")
        chan.topic = {"value": topic, "creator": self.bot_user_id, "last_set": int(time.time())}
        return {"channel": self._channel_info(chan)}

    def _history_channel(self, args: dict[str, Any]) -> _Channel:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        if not chan.is_im and self.bot_user_id not in chan.members:
            raise _SlackError("not_in_channel")
        return chan

    @staticmethod
    def _limit(args: dict[str, Any], default: int = 100) -> int:
        try:
            limit = int(args.get("limit") or default)
        except (TypeError, ValueError) as exc:
            raise _SlackError("invalid_limit") from exc
        return max(1, min(limit, 999))

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._history_channel(args)
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        inclusive = _flag(args.get("inclusive", False))

        def in_range(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        top_level = [
            m
            for m in chan.messages
            if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
            and in_range(float(m["ts"]))
        ]
        newest_first = list(reversed(top_level))
        limit = self._limit(args)
        page = newest_first[:limit]
        return {
            "messages": copy.deepcopy(page),
            "has_more": len(newest_first) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._history_channel(args)
        ts = _required(args, "ts", "thread_not_found")
        if self._find_message(chan, ts) is None:
            raise _SlackError("thread_not_found")
        thread = [m for m in chan.messages if m["ts"] == ts or m.get("thread_ts") == ts]
        limit = self._limit(args, 1000)
        return {
            "messages": copy.deepcopy(thread[:limit]),
            "has_more": len(thread) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        return {"members": list(chan.members), "response_metadata": {"next_cursor": ""}}

    def _conversations_archive(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        if chan.is_im or chan.is_mpim:
            raise _SlackError("method_not_supported_for_channel_type")
        if chan.is_archived:
            raise _SlackError("already_archived")
        if self.bot_user_id not in chan.members:
            raise _SlackError("not_in_channel")
        if chan.name == "general":
            raise _SlackError("cant_archive_general")
        chan.is_archived = True
        return {}

    def _conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """Public channels by default (`types`: public_channel, private_channel, im,
        mpim); private ones only where the bot is a member, as for Slack's bot tokens."""
        types = set(_id_list(args.get("types")) or ["public_channel"])
        exclude_archived = _flag(args.get("exclude_archived", False))
        limit = self._limit(args)
        found = []
        for chan in self._channels.values():
            kind = ("im" if chan.is_im else "mpim" if chan.is_mpim
                    else "private_channel" if chan.is_private else "public_channel")
            if kind not in types or (exclude_archived and chan.is_archived):
                continue
            if kind != "public_channel" and self.bot_user_id not in chan.members:
                continue
            found.append(self._channel_info(chan))
        try:
            start = int(_str_arg(args, "cursor") or 0)
        except ValueError as exc:
            raise _SlackError("invalid_cursor") from exc
        page = found[start:start + limit]
        more = start + limit < len(found)
        return {"channels": page,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _pins_add(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel_or_error(_str_arg(args, "channel"))
        ts = _str_arg(args, "timestamp")
        if ts is None:
            raise _SlackError("no_item_specified")
        if chan.is_archived:
            raise _SlackError("is_archived")
        if not chan.is_im and self.bot_user_id not in chan.members:
            raise _SlackError("not_in_channel")
        if self._find_message(chan, ts) is None:
            raise _SlackError("message_not_found")
        if any(pin["ts"] == ts for pin in chan.pins):
            raise _SlackError("already_pinned")
        if len(chan.pins) >= 100:
            raise _SlackError("too_many_pins")
        chan.pins.append({"ts": ts, "pinned_by": self.bot_user_id, "at": int(time.time())})
        return {}

    def _pins_list(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._history_channel(args)
        items = [{"type": "message", "channel": chan.id, "created": pin["at"],
                  "created_by": pin["pinned_by"],
                  "message": copy.deepcopy(self._find_message(chan, pin["ts"]) or {})}
                 for pin in chan.pins]
        return {"items": items}

    def _bookmark_channel(self, args: dict[str, Any]) -> _Channel:
        channel_id = _str_arg(args, "channel_id")
        if channel_id is None:
            raise _SlackError("invalid_arguments", extra={"response_metadata": {
                "messages": ["[ERROR] missing required field: channel_id"]}})
        chan = self._channel_or_error(channel_id)
        if chan.is_archived:
            raise _SlackError("is_archived")
        if not chan.is_im and self.bot_user_id not in chan.members:
            raise _SlackError("not_in_channel")
        return chan

    def _bookmarks_add(self, args: dict[str, Any]) -> dict[str, Any]:
        """Only `type=link` (all Slack accepts), with a title and an http(s) link; at
        most 100 bookmarks a channel."""
        chan = self._bookmark_channel(args)
        title = _required(args, "title")
        kind = _required(args, "type")
        if kind != "link":
            raise _SlackError("invalid_bookmark_type")
        link = _str_arg(args, "link")
        if link is None or not re.match(r"^https?://[^\s/]+", link):
            raise _SlackError("invalid_link")
        if len(chan.bookmarks) >= 100:
            raise _SlackError("too_many_bookmarks")
        bookmark = {"id": self._new_id("Bk"), "channel_id": chan.id, "title": title,
                    "link": link, "emoji": _str_arg(args, "emoji"), "type": "link",
                    "date_created": int(time.time()), "date_updated": 0,
                    "last_updated_by_user_id": self.bot_user_id, "app_id": self.app_id}
        chan.bookmarks.append(bookmark)
        return {"bookmark": copy.deepcopy(bookmark)}

    def _bookmarks_list(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self._bookmark_channel(args)
        return {"bookmarks": copy.deepcopy(chan.bookmarks)}
