"""`SlackIncidentRoom`: the incident's Slack calls (bot.services.incident_steps.IncidentRoom)
over slack_sdk's WebClient, whose retry handlers already wait out a rate limit as long as
Slack's Retry-After says (three times). What Slack still refuses becomes words a person
understands, naming Slack's error; a rate limit or an unreachable Slack that outlasts
the client's retries is SlackBusy, which the engine retries with backoff."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.domain.errors import ExternalServiceError
from bot.domain.incident_summary import IncidentSummary
from bot.domain.incident_timeline import TimelineEntry
from bot.domain.incidents import Incident
from bot.domain.text import escape
from bot.services.incident_steps import ChannelNameTaken, SlackBusy
from bot.services.ports import MessageRef
from handlers import incident_blocks as blocks
from handlers.answers import RESPONSE_URL_TIMEOUT_SECONDS
from handlers.cards import show_card

log = logging.getLogger("lifeguard.handlers.incidents")

T = TypeVar("T")
INVITE_BATCH = 1000  # Slack's limit of users in one conversations.invite
LIST_PAGES = 20  # conversations.list pages looked through for a channel of our own
HISTORY_PAGES = 5  # conversations.history pages looked through for a line posted before
LINE_EVENT = "lifeguard_timeline_line"  # the metadata naming a timeline line's message
NAME_RULES = ("channel names may have only lowercase letters, digits, `-` and `_`, and at "
              "most 80 characters")
WHY = {
    "invalid_name_specials": NAME_RULES,
    "invalid_name_maxlength": NAME_RULES,
    "invalid_name_required": NAME_RULES,
    "invalid_name_punctuation": "a channel name needs a letter or a digit",
    "restricted_action": "the workspace's settings do not let apps do this",
    "missing_scope": "the Slack app lacks a scope it needs: reinstall it from manifest.yml",
    "not_in_channel": "Lifeguard is not a member of the channel",
    "channel_not_found": "the channel no longer exists",
    "is_archived": "the channel is archived",
}
BUSY = {"ratelimited", "internal_error", "fatal_error", "service_unavailable"}


def _refusal(what: str, error: str) -> ExternalServiceError:
    why = WHY.get(error)
    return ExternalServiceError(f"Slack refused {what} (`{escape(error)}`"
                                + (f": {why})." if why else ")."))


class SlackIncidentRoom:
    def __init__(self, client: WebClient, alerts_channel: str) -> None:
        self.client = client
        self.alerts_channel = alerts_channel
        self._lock = threading.Lock()
        self._bot_user: str | None = None
        self._names: dict[str, str] = {}

    def _call(self, what: str, call: Callable[[], T], fine: tuple[str, ...] = ()) -> T | None:
        """Run one Web API call; `fine` errors (such as already_pinned) are no failure."""
        try:
            return call()
        except SlackApiError as failure:
            error = str(failure.response.get("error") or "error")
            if error in fine:
                return None
            if error in BUSY or failure.response.status_code == 429:
                raise SlackBusy(f"Slack kept answering `{error}` while Lifeguard was {what}; "
                                "it tries again by itself for a while.") from None
            raise _refusal(what, error) from None
        except OSError as failure:  # unreachable, timed out
            raise SlackBusy(f"Slack could not be reached while Lifeguard was {what} "
                            f"({type(failure).__name__}).") from None

    # --- the channel -------------------------------------------------------------------

    def create_channel(self, name: str) -> str:
        try:
            created = self.client.conversations_create(name=name, is_private=False)
        except SlackApiError as failure:
            if failure.response.get("error") == "name_taken":
                raise ChannelNameTaken(name) from None
            refused = failure
        else:
            return str(created["channel"]["id"])
        self._call(f"the channel name `{escape(name)}`", lambda: _reraise(refused))
        raise AssertionError("unreachable")  # _call raised

    def _bot_user_id(self) -> str:
        with self._lock:
            if self._bot_user is None:
                answer = self._call("asking who it is", self.client.auth_test)
                self._bot_user = str(answer["user_id"]) if answer else ""
            return self._bot_user

    def own_channel(self, name: str) -> str | None:
        bot, cursor = self._bot_user_id(), None
        for _ in range(LIST_PAGES):
            page = self._call("looking for the incident's channel", lambda c=cursor:
                              self.client.conversations_list(types="public_channel",
                                                             exclude_archived=True,
                                                             limit=200, cursor=c))
            if page is None:
                return None
            for channel in page.get("channels", []):
                if channel.get("name") == name and channel.get("creator") == bot:
                    return str(channel["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def group_members(self, group_id: str) -> list[str] | None:
        try:
            return [str(u) for u in self.client.usergroups_users_list(
                usergroup=group_id)["users"]]
        except Exception as failure:
            log.warning("usergroups.users.list failed for %s: %s", group_id, failure)
            return None

    def invite(self, channel_id: str, users: list[str]) -> dict[str, str]:
        refused: dict[str, str] = {}
        for start in range(0, len(users), INVITE_BATCH):
            batch = users[start:start + INVITE_BATCH]
            try:
                answer: Any = self.client.conversations_invite(
                    channel=channel_id, users=",".join(batch), force=True)
                problems = answer.get("errors") or []
            except SlackApiError as failure:
                problems = failure.response.get("errors") or []
                if not problems:  # the call itself failed, not one of the people
                    self._call("inviting the responders", lambda f=failure: _reraise(f))
            for problem in problems:
                error = str(problem.get("error"))
                if error != "already_in_channel":
                    refused[str(problem.get("user"))] = error
        return refused

    def set_topic(self, channel_id: str, topic: str) -> None:
        self._call("setting the channel's topic",
                   lambda: self.client.conversations_setTopic(channel=channel_id, topic=topic))

    def show_card(self, incident: Incident) -> MessageRef | None:
        assert incident.channel_id is not None
        return self._call("posting the status card", lambda: show_card(
            self.client, incident.card_channel or incident.channel_id, incident.card_ts,
            f"incident:{incident.id}", incident.created_at, blocks.status_card(incident)))

    def pin(self, channel_id: str, ts: str) -> None:
        self._call("pinning the status card",
                   lambda: self.client.pins_add(channel=channel_id, timestamp=ts),
                   fine=("already_pinned",))

    def bookmark(self, channel_id: str, title: str, link: str) -> None:
        self._call(f"bookmarking {title}", lambda: self.client.bookmarks_add(
            channel_id=channel_id, title=title, type="link", link=link))

    def announce(self, incident: Incident) -> str:
        placed = self._call("announcing the channel", lambda: show_card(
            self.client, self.alerts_channel, incident.announced_ts,
            f"incident-announce:{incident.id}", incident.created_at,
            blocks.announcement(incident)))
        return placed.ts if placed else str(incident.announced_ts)

    # --- what is posted in the channel -----------------------------------------------

    def post_entry(self, incident: Incident, entry: TimelineEntry) -> str:
        posted = self._call("posting a timeline line", lambda: self.client.chat_postMessage(
            channel=incident.channel_id, metadata=_line_metadata(entry),
            **blocks.entry_message(entry)))
        return str(posted["ts"]) if posted else ""

    def find_entry(self, incident: Incident, entry: TimelineEntry,
                   since: datetime) -> str | None:
        """The line's message, by its metadata. Slack busy raises (the line is tried
        again later); a history Slack will not show is searched no further (the line is
        posted: better twice than never)."""
        wanted, cursor = _line_metadata(entry)["event_payload"], None
        for _ in range(HISTORY_PAGES):
            try:
                page = self._call("looking for a timeline line", lambda c=cursor:
                                  self.client.conversations_history(
                                      channel=incident.channel_id, cursor=c, limit=200,
                                      oldest=f"{since.timestamp() - 60:.6f}",
                                      include_all_metadata=True))
            except ExternalServiceError as refused:
                log.info("cannot look for an earlier line in %s: %s", incident.channel_id,
                         refused)
                return None
            for message in (page or {}).get("messages", []):
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == LINE_EVENT \
                        and metadata.get("event_payload") == wanted:
                    return str(message["ts"])
            cursor = ((page or {}).get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def delete_entry(self, incident: Incident, ts: str) -> None:
        self._call("deleting a second copy of a timeline line",
                   lambda: self.client.chat_delete(channel=incident.channel_id, ts=ts),
                   fine=("message_not_found",))

    def _once(self, incident: Incident, key: str, message: dict[str, Any], what: str) -> None:
        assert incident.channel_id is not None
        self._call(what, lambda: show_card(self.client, incident.channel_id, None,
                                           f"{key}:{incident.id}", incident.created_at,
                                           message))

    def post_summary(self, incident: Incident, summary: IncidentSummary) -> None:
        self._once(incident, "incident-summary", blocks.summary_message(summary),
                   "posting the summary")

    def post_timeline(self, incident: Incident, markdown: str) -> None:
        for n, message in enumerate(blocks.timeline_messages(incident, markdown)):
            self._once(incident, f"incident-timeline-{n}", message, "posting the timeline")

    def warn_and_archive(self, incident: Incident) -> None:
        self._once(incident, "incident-warning", blocks.archive_warning(incident),
                   "posting the warning")
        self._call("archiving the channel",
                   lambda: self.client.conversations_archive(channel=incident.channel_id),
                   fine=("already_archived",))

    def tell_opener(self, incident: Incident) -> None:
        if not incident.response_url:
            return
        try:
            sent = WebhookClient(incident.response_url, timeout=RESPONSE_URL_TIMEOUT_SECONDS
                                 ).send_dict({**blocks.opened(incident),
                                              "replace_original": False})
            if sent.status_code != 200:
                log.warning("the opener of incident %s could not be told (%s)", incident.id,
                            sent.status_code)
        except Exception:
            log.exception("could not tell the opener of incident %s", incident.id)

    def names(self, user_ids: set[str]) -> dict[str, str]:
        for user_id in user_ids - set(self._names):
            try:
                user = self.client.users_info(user=user_id)["user"]
                profile = user.get("profile") or {}
                self._names[user_id] = str(profile.get("display_name") or user.get("name")
                                           or user_id)
            except Exception:
                log.info("no name for %s", user_id)
        return {u: self._names[u] for u in user_ids if u in self._names}


def _line_metadata(entry: TimelineEntry) -> dict[str, Any]:
    return {"event_type": LINE_EVENT,
            "event_payload": {"incident": entry.incident_id, "key": entry.key}}


def _reraise(failure: Exception) -> Any:
    raise failure
