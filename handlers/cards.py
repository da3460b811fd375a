"""Status cards: one Slack message per piece of work, posted once and updated in place.

Each card carries message metadata naming its work, so after a crash between posting a
card and storing its ts, the card is found again in the channel's history instead of a
second one being posted.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.services.ports import MessageRef

log = logging.getLogger("lifeguard.cards")

STATUS_CARD_EVENT = "lifeguard_status_card"
# Slack errors that mean "the bot cannot post in that channel".
CANNOT_POST_HERE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


def status_card_metadata(work_id: str) -> dict[str, Any]:
    return {"event_type": STATUS_CARD_EVENT, "event_payload": {"id": work_id}}


def find_status_card(client: WebClient, channel_id: str, work_id: str,
                     since: datetime) -> str | None:
    """The ts of the card already posted for `work_id`, if any. None when there is none or
    the history cannot be read (a new card is posted then: better two than none)."""
    try:
        history = client.conversations_history(
            channel=channel_id, oldest=f"{since.timestamp() - 60:.6f}",
            include_all_metadata=True, limit=200)
    except SlackApiError as error:
        log.info("cannot look for an earlier card in %s: %s", channel_id,
                 error.response.get("error"))
        return None
    for message in history.get("messages", []):
        metadata = message.get("metadata") or {}
        if (metadata.get("event_type") == STATUS_CARD_EVENT
                and (metadata.get("event_payload") or {}).get("id") == work_id):
            return str(message["ts"])
    return None


def show_card(client: WebClient, channel_id: str, ts: str | None, work_id: str,
              since: datetime, card: dict[str, Any]) -> MessageRef | None:
    """Update the card at `ts`, or post it (once). Returns where a card was newly placed."""
    if ts:
        client.chat_update(channel=channel_id, ts=ts, **card)
        return None
    posted_before = find_status_card(client, channel_id, work_id, since)
    if posted_before is not None:
        client.chat_update(channel=channel_id, ts=posted_before, **card)
        return MessageRef(channel_id=channel_id, ts=posted_before)
    posted = client.chat_postMessage(channel=channel_id, metadata=status_card_metadata(work_id),
                                     **card)
    return MessageRef(channel_id=str(posted["channel"]), ts=str(posted["ts"]))
