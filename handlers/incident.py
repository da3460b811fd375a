"""`/incident` and the `incident.open` button: parse, call the incident service, render.

What changes the incident (opening, a note, a status, closing) is recorded before Slack
is acknowledged; the Slack work after it runs on the worker pool, and its outcome is told
privately to the person who asked. Everything but `open` and `help` works only in an
incident's own channel; elsewhere the person is told so, privately.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain.errors import InvalidInput
from bot.domain.incidents import (
    IncidentClose,
    IncidentHelp,
    IncidentNote,
    IncidentOpen,
    IncidentSetStatus,
    IncidentState,
    IncidentTimeline,
    parse_incident_command,
)
from bot.domain.restores import REQUEST_ID
from bot.services.incidents import IncidentService
from handlers import ids
from handlers import incident_blocks as cards
from handlers.answers import Asker
from handlers.payloads import MalformedPayload, click, slash_command

# The button's value: a request id, or empty (an alert about no request).
OPEN_VALUE = re.compile(r"\A(?:[0-9a-f]{8})?\Z")
MARKUP = re.compile(r"<[^>]*>|:[a-z0-9_+-]+:|[*_`~]")
NOT_OPENED = "no incident channel was made yet"


def register(app: App) -> None:
    app.command(ids.INCIDENT_COMMAND)(handle_incident_command)
    app.action(ids.INCIDENT_OPEN)(handle_incident_open)


def handle_incident_command(ack: Ack, command: dict[str, Any], respond: Respond,
                            client: WebClient, incidents: IncidentService,
                            asker: Asker) -> None:
    asked = slash_command(command)
    try:
        parsed = parse_incident_command(asked.text)
    except InvalidInput as problem:
        ack(**cards.incident_help(str(problem)))
        return
    if isinstance(parsed, IncidentHelp):
        ack(**cards.incident_help())
    elif isinstance(parsed, IncidentOpen):
        asker.unchanged = NOT_OPENED
        incident = incidents.open(asked.user_id, parsed.title, channel_id=asked.channel_id,
                                  response_url=asked.response_url)  # before the ack
        ack(**cards.opening(incident.title))
        asker.later(lambda: _answer_opening(incidents, incident.id, asked.response_url,
                                            respond), f"open incident {incident.id}")
    elif isinstance(parsed, IncidentNote):
        entry = incidents.note(asked.user_id, asked.channel_id, parsed.text)
        ack(**cards.noted())
        asker.later(lambda: incidents.post_entry(entry.incident_id, entry), "incident note")
    elif isinstance(parsed, IncidentSetStatus):
        incident = incidents.set_status(asked.user_id, asked.channel_id, parsed.status)
        ack(**cards.status_set(incident))
        asker.later(lambda: incidents.show_status(incident), "incident status")
    elif isinstance(parsed, IncidentTimeline):
        incident, markdown = incidents.timeline(asked.channel_id)
        ack()

        def post() -> None:
            for message in cards.timeline_messages(incident, markdown):
                client.chat_postMessage(channel=incident.channel_id, **message)

        asker.later(post, "incident timeline")
    elif isinstance(parsed, IncidentClose):
        incident = incidents.close(asked.user_id, asked.channel_id, parsed.summary)
        ack(**cards.closing(incident))
        asker.later(lambda: respond(**cards.closed(incidents.settle(incident.id))),
                    f"close incident {incident.id}")


def handle_incident_open(ack: Ack, body: dict[str, Any], respond: Respond,
                         incidents: IncidentService, asker: Asker) -> None:
    """The button on request cards (value: the request id) and failure alerts (value: the
    request id, or empty)."""
    clicked = click(body, OPEN_VALUE, "a request id or nothing")
    asker.unchanged = NOT_OPENED
    request_id = clicked.value or None
    if request_id is not None and not REQUEST_ID.match(request_id):
        raise MalformedPayload("the button's value is not a request id")
    title = None if request_id else _title_of_alert(body)
    incident = incidents.open(clicked.user_id, title, request_id=request_id,
                              channel_id=clicked.channel_id,
                              response_url=asker.response_url)  # before the ack
    ack()
    respond(**{**cards.opening(incident.title), "replace_original": False})
    asker.later(lambda: _answer_opening(incidents, incident.id, asker.response_url,
                                        lambda **answer: respond(
                                            **{**answer, "replace_original": False})),
                f"open incident {incident.id}")


def _answer_opening(incidents: IncidentService, incident_id: str, response_url: str | None,
                    respond: Callable[..., object]) -> None:
    """Move the opening on (or wait for whoever does). Its end is told through the
    response_url the incident keeps, by whichever worker ends it, a restarted one too;
    anyone else (a second click, an incident open already) is answered here."""
    settled = incidents.settle(incident_id)
    if settled.state == IncidentState.OPENING or settled.response_url != response_url:
        respond(**cards.opened(settled))


def _title_of_alert(body: dict[str, Any]) -> str:
    """An alert's first line, without its markup, as the incident's title."""
    message = body.get("message")
    text = message.get("text") if isinstance(message, dict) else None
    if not isinstance(text, str):
        return "Data incident"
    line = MARKUP.sub("", text.split("\n", 1)[0]).split(": ", 1)[0]
    line = line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    words = " ".join(line.split())[:100]
    return words if re.search(r"[A-Za-z0-9]", words) else "Data incident"
