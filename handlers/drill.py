"""`/drill` and the reminder's "Start drill" button: parse, call the drill service,
render. The report card lives in ALERTS_CHANNEL and is updated in place."""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from bot.domain.errors import InvalidInput, LifeguardError
from bot.services.drills import DrillService
from bot.services.ports import MessageRef
from handlers import blocks
from handlers import drill_blocks as cards
from handlers.cards import show_card

log = logging.getLogger("lifeguard.handlers.drill")

RunLater = Callable[[Callable[[], object], str], object]
STORE_DOWN = ("Lifeguard could not record the drill: its own store did not answer. "
              "Nothing was started; try again in a minute.")


def register_drill_handlers(app: App, drills: DrillService, run_later: RunLater,
                            alerts_channel: str) -> None:
    def begin(user_id: str, channel_id: str | None) -> dict[str, Any]:
        """Record the drill (durably, audited) and hand it to a worker; the answer for the
        person who asked, to send with the acknowledgement."""
        try:
            drill = drills.start(user_id, channel_id)
        except LifeguardError as problem:
            return blocks.error_message(f"{problem} No new drill was started.")
        except Exception:
            log.exception("could not record a drill")
            return blocks.error_message(STORE_DOWN)
        run_later(lambda: drills.advance(drill.id), f"drill {drill.id}")
        return cards.drill_started(drill, alerts_channel)

    @app.command("/drill")
    def drill_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        user_id = command["user_id"]
        try:
            parsed = parse_drill_command(command.get("text") or "")
        except InvalidInput as problem:
            ack(**cards.drill_help(str(problem)))
            return
        if isinstance(parsed, DrillHelp):
            ack(**cards.drill_help())
        elif isinstance(parsed, DrillStart):
            ack(**begin(user_id, command.get("channel_id")))
        elif isinstance(parsed, DrillStatusCommand):
            ack()
            run_later(lambda: respond(**cards.drill_status(drills.status(), datetime.now(UTC))),
                      "drill status")
        elif isinstance(parsed, DrillHistory):
            ack()
            run_later(lambda: respond(**cards.drill_history(drills.history())), "drill history")

    @app.action(cards.START)
    def start_clicked(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        channel_id = (body.get("channel") or {}).get("id")
        answer = begin(body["user"]["id"], channel_id)
        ack()
        respond(**{**answer, "replace_original": False})


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
