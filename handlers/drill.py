"""`/drill` and the reminder's "Start drill" button: parse, call the drill service,
render. The report card lives in ALERTS_CHANNEL and is updated in place.

Listeners are handed the drill service (`drills`) and the person who asked (`asker`)
through Bolt's context (handlers.wiring); whatever they raise is told privately to that
person by the one error handler.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain.drills import (
    Drill,
    DrillHelp,
    DrillHistory,
    DrillStart,
    DrillStatusCommand,
    parse_drill_command,
)
from bot.domain.errors import InvalidInput
from bot.services.drills import DrillService
from bot.services.ports import MessageRef
from handlers import drill_blocks as cards
from handlers import ids
from handlers.answers import Asker
from handlers.blocks import Message
from handlers.cards import show_card
from handlers.payloads import click, slash_command

NO_NEW_DRILL = "no new drill was started"


def register(app: App) -> None:
    app.command(ids.DRILL_COMMAND)(handle_drill_command)
    app.action(ids.DRILL_START)(handle_drill_start)


def handle_drill_command(ack: Ack, command: dict[str, Any], respond: Respond,
                         drills: DrillService, asker: Asker, alerts_channel: str) -> None:
    asked = slash_command(command)
    try:
        parsed = parse_drill_command(asked.text)
    except InvalidInput as problem:
        ack(**cards.drill_help(str(problem)))
        return
    if isinstance(parsed, DrillHelp):
        ack(**cards.drill_help())
    elif isinstance(parsed, DrillStart):
        asker.unchanged = NO_NEW_DRILL
        ack(**_begin(drills, asked.user_id, asked.channel_id, asker, alerts_channel))
    elif isinstance(parsed, DrillStatusCommand):
        ack()
        asker.later(lambda: respond(**cards.drill_status(drills.status(), datetime.now(UTC))),
                    "drill status")
    elif isinstance(parsed, DrillHistory):
        ack()
        asker.later(lambda: respond(**cards.drill_history(drills.history())), "drill history")


def handle_drill_start(ack: Ack, body: dict[str, Any], respond: Respond,
                       drills: DrillService, asker: Asker, alerts_channel: str) -> None:
    clicked = click(body)
    asker.unchanged = NO_NEW_DRILL
    answer = _begin(drills, clicked.user_id, clicked.channel_id, asker, alerts_channel)
    ack()
    respond(**{**answer, "replace_original": False})


def _begin(drills: DrillService, user_id: str, channel_id: str | None, asker: Asker,
           alerts_channel: str) -> Message:
    """Record the drill (durably, audited) and hand it to a worker; the answer for the
    person who asked, to send with the acknowledgement."""
    drill = drills.start(user_id, channel_id)
    asker.later(lambda: drills.advance(drill.id), f"drill {drill.id}",
                unchanged=(f"the drill is recorded, and Lifeguard goes on with it by itself "
                           f"once it can; its report in <#{alerts_channel}> shows where it "
                           "stands"))
    return cards.drill_started(drill, alerts_channel)


def post_drill_reminder(client: WebClient, channel_id: str, drills: DrillService) -> None:
    """The scheduled reminder, with its "Start drill" button, in `channel_id`."""
    client.chat_postMessage(channel=channel_id,
                            **cards.drill_reminder(drills.last_success(), now=datetime.now(UTC)))


class SlackDrillNotifier:
    """The drill's report card in ALERTS_CHANNEL: posted once, updated in place."""

    def __init__(self, client: WebClient, alerts_channel: str) -> None:
        self.client = client
        self.alerts_channel = alerts_channel

    def drill_changed(self, drill: Drill) -> MessageRef | None:
        return show_card(self.client, drill.card_channel or self.alerts_channel, drill.card_ts,
                         f"drill:{drill.id}", drill.created_at, cards.drill_card(drill))
