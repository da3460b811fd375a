"""Incidents: a data incident coordinated in a Slack channel of its own.

    opening ──▶ open ──▶ closing ──▶ closed
       └──▶ stalled ◀──────┘        (a step failed: retried by a person, or reported)

An incident is long work on the engine (bot.services.work): opening runs the steps of
OPENING_STEPS one at a time, closing those of CLOSING_STEPS; each is idempotent, so a
crash, a retry or a second click goes on where it stopped. A step that fails leaves the
incident `stalled` at that step with the reason: the person who opened it is told, and
opening again (the same request's button, or the same title) finishes it.

Channel names follow Slack's rules: lowercase letters, digits, `-` and `_`, at most 80
characters. An incident's channel is `inc-YYYYMMDD-<slug>` (UTC day of opening), the slug
made from the title, with `-2`, `-3`… when the name is taken.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.domain.echo import echo
from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.text import escape

CHANNEL_NAME_LIMIT = 80  # Slack's limit for a channel name
CHANNEL_NAME = re.compile(r"\A[a-z0-9_-]{1,80}\Z")
MAX_SUFFIX = 20  # `-2` … `-20`: past that, something else is wrong
SUFFIX_ROOM = len(f"-{MAX_SUFFIX}")
TITLE_LIMIT = 120
NOTE_LIMIT = 2000
TOPIC_LIMIT = 250  # Slack's limit for a channel topic
INCIDENT_ID = re.compile(r"\A[0-9a-f]{8}\Z")


class DuplicateIncident(Exception):
    """Raised by the store: that id, channel or live request's incident is recorded."""


class IncidentStatus(StrEnum):
    """What responders say about the incident (the status card and the topic)."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class IncidentState(StrEnum):
    """Where Lifeguard's own work on the incident is."""

    OPENING = "opening"
    OPEN = "open"
    STALLED = "stalled"
    CLOSING = "closing"
    CLOSED = "closed"


LIVE_STATES = (IncidentState.OPENING, IncidentState.OPEN, IncidentState.STALLED,
               IncidentState.CLOSING)

ALLOWED_TRANSITIONS: dict[IncidentState, frozenset[IncidentState]] = {
    IncidentState.OPENING: frozenset({IncidentState.OPEN, IncidentState.STALLED}),
    IncidentState.OPEN: frozenset({IncidentState.CLOSING}),
    IncidentState.STALLED: frozenset({IncidentState.OPENING, IncidentState.CLOSING}),
    IncidentState.CLOSING: frozenset({IncidentState.CLOSED, IncidentState.STALLED}),
}


def check_incident_transition(current: IncidentState, new: IncidentState) -> None:
    if new not in ALLOWED_TRANSITIONS.get(current, frozenset()):
        raise ValueError(f"an incident cannot go from {current.value} to {new.value}")


class IncidentStep(StrEnum):
    CREATE_CHANNEL = "create_channel"
    INVITE = "invite"
    TOPIC = "topic"
    STATUS_CARD = "status_card"  # post it, then pin it
    PIN = "pin"
    BOOKMARKS = "bookmarks"
    ANNOUNCE = "announce"  # in ALERTS_CHANNEL, with a link
    SUMMARY = "summary"
    TIMELINE = "timeline"
    ARCHIVE = "archive"  # after the warning


OPENING_STEPS = (IncidentStep.CREATE_CHANNEL, IncidentStep.INVITE, IncidentStep.TOPIC,
                 IncidentStep.STATUS_CARD, IncidentStep.PIN, IncidentStep.BOOKMARKS,
                 IncidentStep.ANNOUNCE)
CLOSING_STEPS = (IncidentStep.SUMMARY, IncidentStep.TIMELINE, IncidentStep.ARCHIVE)

STEP_WORDS = {
    IncidentStep.CREATE_CHANNEL: "creating the channel",
    IncidentStep.INVITE: "inviting the responders",
    IncidentStep.TOPIC: "setting the channel's topic",
    IncidentStep.STATUS_CARD: "posting the status card",
    IncidentStep.PIN: "pinning the status card",
    IncidentStep.BOOKMARKS: "bookmarking the runbook and the Neon project",
    IncidentStep.ANNOUNCE: "announcing the channel in the alerts channel",
    IncidentStep.SUMMARY: "posting the summary",
    IncidentStep.TIMELINE: "posting the timeline",
    IncidentStep.ARCHIVE: "archiving the channel",
}


def next_step(step: IncidentStep) -> IncidentStep | None:
    """The step after `step` in its phase; None after the last."""
    for steps in (OPENING_STEPS, CLOSING_STEPS):
        if step in steps:
            position = steps.index(step)
            return steps[position + 1] if position + 1 < len(steps) else None
    return None


@dataclass(frozen=True)
class Incident:
    id: str
    title: str
    state: IncidentState
    status: IncidentStatus
    opened_by: str
    lead: str  # who leads: the person who opened it
    day: str  # YYYYMMDD (UTC) of the opening: part of the channel's name
    slug: str
    created_at: datetime
    updated_at: datetime
    version: int = 1
    step: IncidentStep | None = None
    channel_name: str | None = None  # the name chosen (stable once the channel exists)
    channel_id: str | None = None
    request_id: str | None = None  # the change request it was opened from, if any
    links: tuple[str, ...] = ()  # linked work, "request:<id>", "backup:<id>", "drill:<id>"
    invited: tuple[str, ...] = ()  # invited (or found in the channel already)
    not_invited: dict[str, str] = field(default_factory=dict)  # user or group -> why not
    bookmarked: tuple[str, ...] = ()  # links bookmarked so far
    card_channel: str | None = None  # the pinned status card
    card_ts: str | None = None
    announced_ts: str | None = None
    opener_channel: str | None = None  # where it was asked, to answer the opener
    response_url: str | None = None
    summary: str = ""  # what the person closing it wrote
    closed_by: str | None = None
    closing_at: datetime | None = None  # when `/incident close` was typed
    closed_at: datetime | None = None
    error: str | None = None  # why it stalled
    extra: dict[str, Any] = field(default_factory=dict)
    step_started_at: datetime | None = None
    step_timings: dict[str, float] = field(default_factory=dict)

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def request_ids(self) -> tuple[str, ...]:
        return tuple(link.split(":", 1)[1] for link in self.links
                     if link.startswith("request:"))

    def resume_state(self) -> IncidentState:
        """Where a stalled incident goes on: the phase of the step it stalled at."""
        return IncidentState.CLOSING if self.step in CLOSING_STEPS else IncidentState.OPENING


def link_of(kind: str, work_id: str) -> str:
    return f"{kind}:{work_id}"


# --- names ---------------------------------------------------------------------------------


def slugify(title: str) -> str:
    """The title in the letters Slack allows in a channel name: accents dropped, lowercase
    a-z and 0-9, everything else one `-`; short enough for `inc-YYYYMMDD-<slug>-NN` to fit
    in 80 characters. Empty when the title has no such letter at all."""
    plain = unicodedata.normalize("NFKD", title)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")
    room = CHANNEL_NAME_LIMIT - len("inc-YYYYMMDD-") - SUFFIX_ROOM
    return slug[:room].rstrip("-")


def channel_name(day: str, slug: str, attempt: int = 1) -> str:
    """`inc-YYYYMMDD-<slug>`, and `-2`, `-3`… for later attempts (the name was taken)."""
    name = f"inc-{day}-{slug}" + (f"-{attempt}" if attempt > 1 else "")
    if not CHANNEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a channel name Slack accepts")
    return name


def name_attempt(name: str, day: str, slug: str) -> int:
    """Which attempt `name` is (1 for the plain name), so the next try adds one."""
    base = f"inc-{day}-{slug}"
    if name == base:
        return 1
    suffix = name.removeprefix(base + "-")
    return int(suffix) if suffix.isdigit() else 1


def day_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d")


def check_title(title: str) -> str:
    """The title, stripped; InvalidInput when it is empty, too long or slugs to nothing."""
    title = " ".join(title.split())
    if not title:
        raise InvalidInput("An incident needs a title, such as `/incident open orders table "
                           f"emptied`.\n{INCIDENT_USAGE}")
    if len(title) > TITLE_LIMIT:
        raise InvalidInput(f"The title is {len(title)} characters long; at most {TITLE_LIMIT} "
                           "fit on the status card. Say more with `/incident note` once the "
                           "channel is open.")
    if not slugify(title):
        raise InvalidInput(
            f"`{echo(title)}` has no letter or digit Slack allows in a channel name (a-z, "
            "0-9, accents dropped), so no channel can be named after it. Write the title "
            "with some, such as `/incident open orders table emptied`.")
    return title


def topic_text(incident: Incident) -> str:
    """The channel's topic: title, status and who leads, within Slack's 250 characters."""
    tail = f" · status: {incident.status.value} · lead: <@{incident.lead}>"
    title = escape(incident.title)
    room = TOPIC_LIMIT - len(tail)
    if len(title) > room:
        title = escape(incident.title[: room - 1]).rstrip() + "…"
        title = title[:room]
    return title + tail


# --- the command ---------------------------------------------------------------------------

INCIDENT_USAGE = escape(
    "`/incident open <title>` opens a channel `inc-YYYYMMDD-<title>` for a data incident, "
    "invites the responders, pins a status card and bookmarks the runbook and the Neon "
    "project\n"
    "`/incident note <text>` adds a line to the timeline (in the incident's channel)\n"
    "`/incident status investigating|identified|monitoring|resolved` updates the status "
    "card and the topic\n"
    "`/incident timeline` posts the whole timeline as Markdown\n"
    "`/incident close [summary]` posts the summary and the timeline, then archives the "
    "channel (a bot cannot unarchive: a later incident gets a new channel)\n"
    "`/incident help` this help\n"
    "A `/restore`, `/backup` or `/drill` typed in an incident's channel is linked to it, "
    "and each of its steps appears in the channel as it happens; so do the steps of the "
    "request whose *Open incident* button was clicked."
)


@dataclass(frozen=True)
class IncidentOpen:
    title: str


@dataclass(frozen=True)
class IncidentNote:
    text: str


@dataclass(frozen=True)
class IncidentSetStatus:
    status: IncidentStatus


@dataclass(frozen=True)
class IncidentTimeline:
    pass


@dataclass(frozen=True)
class IncidentClose:
    summary: str


@dataclass(frozen=True)
class IncidentHelp:
    pass


IncidentCommand = (IncidentOpen | IncidentNote | IncidentSetStatus | IncidentTimeline
                   | IncidentClose | IncidentHelp)
_SUBCOMMANDS = ("open", "note", "status", "timeline", "close", "help")


def _words(text: str, what: str) -> str:
    text = text.strip()
    if len(text) > NOTE_LIMIT:
        raise InvalidInput(f"The {what} is {len(text)} characters long; at most {NOTE_LIMIT} "
                           "are kept.")
    return text


def parse_incident_command(text: str) -> IncidentCommand:
    """Read the text after `/incident`; InvalidInput says what is accepted."""
    words = text.split(maxsplit=1)
    if not words:
        return IncidentHelp()
    sub, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
    if sub == "help":
        return IncidentHelp()
    if sub == "open":
        return IncidentOpen(check_title(rest))
    if sub == "note":
        note = _words(rest, "note")
        if not note:
            raise InvalidInput("`/incident note` needs the text to add, such as "
                               "`/incident note orders stopped at 14:02`.")
        return IncidentNote(note)
    if sub == "status":
        wanted = rest.strip().lower()
        try:
            return IncidentSetStatus(IncidentStatus(wanted))
        except ValueError:
            shown = f"`{echo(rest.strip())}` is not" if wanted else "Give"
            raise InvalidInput(f"{shown} an incident status: "
                               + ", ".join(s.value for s in IncidentStatus)
                               + ", such as `/incident status identified`.") from None
    if sub == "timeline":
        if rest.strip():
            raise InvalidInput("`/incident timeline` takes nothing after it.")
        return IncidentTimeline()
    if sub == "close":
        return IncidentClose(_words(rest, "summary"))
    raise InvalidInput(f"`{echo(words[0])}` is not an /incident command "
                       f"({', '.join(_SUBCOMMANDS)}).\n{INCIDENT_USAGE}")


def check_in_incident(incident: Incident | None, command: str) -> Incident:
    """The incident of the channel a command was typed in; NotAllowed elsewhere."""
    if incident is None:
        raise NotAllowed(f"`/incident {command}` "
                         + escape("works only in an incident's own channel (`inc-…`), and "
                                  "this is not one. `/incident open <title>` opens one; the "
                                  "App Home lists the open incidents with links."))
    if incident.state == IncidentState.CLOSED or incident.closing_at is not None:
        raise NotAllowed(f"Incident `{escape(incident.channel_name or incident.id)}` is "
                         + escape("closed or closing; nothing more is added to it. A new "
                                  "incident gets a new channel: `/incident open <title>`."))
    return incident
