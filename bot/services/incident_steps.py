"""The steps of opening and closing an incident, on the engine for long work
(bot.services.work). Each step is idempotent, so a crash, a retry or a second click goes
on where it stopped:

- create_channel: `inc-YYYYMMDD-<slug>`, then `-2`, `-3`… while Slack says name_taken; a
  taken name that is a channel this bot made for no other incident (a create whose answer
  was lost) is adopted instead;
- invite: the opener, INCIDENT_RESPONDERS (groups expanded) and, for a linked request, its
  requester and approvers; who cannot be invited is kept with Slack's reason and shown;
- topic, status card (found again by its metadata), pin (already pinned is fine),
  bookmarks (one at a time, each remembered), the announcement in ALERTS_CHANNEL;
- closing: the summary, the timeline as Markdown, the warning, the archive.

A step that fails leaves the incident `stalled` at that step with the reason; Slack's
rate limits (after the client's own retries, which honour Retry-After) are retried by the
engine with backoff first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.domain.backups import Backup
from bot.domain.drills import Drill
from bot.domain.errors import NotAllowed
from bot.domain.incident_summary import IncidentSummary, summarize
from bot.domain.incident_timeline import TimelineEntry, timeline_markdown
from bot.domain.incidents import (
    MAX_SUFFIX,
    STEP_WORDS,
    Incident,
    IncidentState,
    IncidentStep,
    channel_name,
    name_attempt,
    next_step,
    topic_text,
)
from bot.domain.requests import ChangeRequest
from bot.services.incident_lines import LineRoom
from bot.services.ports import MessageRef, Records
from bot.services.work import Change, Kind, Wait

log = logging.getLogger("lifeguard.incidents")

NEON_CONSOLE = "https://console.neon.tech/app/projects/{project_id}"


class ChannelNameTaken(Exception):
    """Slack answered name_taken."""


class SlackBusy(Exception):
    """Slack kept rate limiting (or was unreachable) after the client's own retries."""


class IncidentRoom(LineRoom, Protocol):
    """Slack, as an incident needs it. Slack refusing something raises an
    ExternalServiceError whose text names Slack's error; rate limits raise SlackBusy."""

    def create_channel(self, name: str) -> str:
        """The new public channel's id; ChannelNameTaken when the name is taken."""
        ...

    def own_channel(self, name: str) -> str | None:
        """The id of a live channel of that name that this bot created, if any."""
        ...

    def group_members(self, group_id: str) -> list[str] | None:
        """The user group's members; None when Slack cannot say."""
        ...

    def invite(self, channel_id: str, users: list[str]) -> dict[str, str]:
        """Invite them all that can be; returns who could not be, with Slack's error
        (already being a member is no error)."""
        ...

    def set_topic(self, channel_id: str, topic: str) -> None: ...

    def show_card(self, incident: Incident) -> MessageRef | None:
        """Post the status card (once: found again by its metadata) or update it;
        returns where it is when it was (re)placed."""
        ...

    def pin(self, channel_id: str, ts: str) -> None:
        """Pin it; already pinned is fine."""
        ...

    def bookmark(self, channel_id: str, title: str, link: str) -> None: ...

    def announce(self, incident: Incident) -> str:
        """Post (once) or update the announcement in ALERTS_CHANNEL; returns its ts."""
        ...

    def post_summary(self, incident: Incident, summary: IncidentSummary) -> None: ...

    def post_timeline(self, incident: Incident, markdown: str) -> None: ...

    def warn_and_archive(self, incident: Incident) -> None:
        """Say that the channel is archived now (once), then archive it (already archived
        is fine)."""
        ...

    def names(self, user_ids: set[str]) -> dict[str, str]:
        """Display names by user id, as far as Slack says."""
        ...

    def tell_opener(self, incident: Incident) -> None:
        """Tell whoever opened it (privately, through the response_url it was opened
        with) that the opening ended: open, or stalled and why. Never raises."""
        ...


class IncidentStore(Protocol):
    incidents: Records[Incident]
    requests: Records[ChangeRequest]
    backups: Records[Backup]
    drills: Records[Drill]


class Entries(Protocol):
    def of(self, incident_id: str) -> list[TimelineEntry]: ...


@dataclass(frozen=True)
class Settings:
    project_id: str
    responders: tuple[str, ...]
    runbook_url: str | None


def step_of(incident: Incident) -> str | None:
    if incident.state in (IncidentState.OPENING, IncidentState.CLOSING):
        return incident.step.value if incident.step else None
    return None


class IncidentSteps:
    def __init__(self, store: IncidentStore, entries: Entries, room: IncidentRoom,
                 settings: Settings, *, on_opened: Callable[[Incident], None],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.entries = entries
        self.room = room
        self.settings = settings
        self.on_opened = on_opened
        self.now = now

    def kind(self) -> Kind[Incident]:
        return Kind(name="incident", step_of=step_of, steps=self._steps(), failed=self.failed,
                    show=self.show, retried=frozenset(s.value for s in IncidentStep),
                    retry_for=timedelta(minutes=2), transient=(SlackBusy,))

    def _steps(self) -> dict[str, Callable[[Incident], Change[Incident] | Wait]]:
        return {
            IncidentStep.CREATE_CHANNEL: self._create_channel,
            IncidentStep.INVITE: self._invite,
            IncidentStep.TOPIC: self._topic,
            IncidentStep.STATUS_CARD: self._status_card,
            IncidentStep.PIN: self._pin,
            IncidentStep.BOOKMARKS: self._bookmarks,
            IncidentStep.ANNOUNCE: self._announce,
            IncidentStep.SUMMARY: self._summary,
            IncidentStep.TIMELINE: self._timeline,
            IncidentStep.ARCHIVE: self._archive,
        }

    def _next(self, incident: Incident, **changes: object) -> Incident:
        assert incident.step is not None
        return replace(incident, step=next_step(incident.step), **changes)  # type: ignore[arg-type]

    # --- opening ------------------------------------------------------------------------

    def _create_channel(self, incident: Incident) -> Change[Incident]:
        if incident.channel_id:
            return Change(self._next(incident))
        name = incident.channel_name or channel_name(incident.day, incident.slug)
        attempt = name_attempt(name, incident.day, incident.slug)
        while True:
            try:
                channel_id = self.room.create_channel(name)
                break
            except ChannelNameTaken:
                own = self.room.own_channel(name)
                if own is not None and self._free(own, incident):
                    channel_id = own  # made for this incident before a crash
                    break
            attempt += 1
            if attempt > MAX_SUFFIX:
                raise NotAllowed(f"Every name from `{channel_name(incident.day, incident.slug)}` "
                                 f"to `-{MAX_SUFFIX}` is taken in Slack; open the incident "
                                 "with another title.")
            name = channel_name(incident.day, incident.slug, attempt)
        return Change(self._next(incident, channel_id=channel_id, channel_name=name,
                                 card_channel=channel_id),
                      "incident.channel_created", {"channel": channel_id, "name": name},
                      actor=incident.opened_by)

    def _free(self, channel_id: str, incident: Incident) -> bool:
        taken = self.store.incidents.list(None, limit=500)
        return not any(i.channel_id == channel_id and i.id != incident.id for i in taken)

    def invitees(self, incident: Incident) -> tuple[list[str], dict[str, str]]:
        """Who is to be in the channel, and the groups whose members cannot be read."""
        people = [incident.opened_by]
        unreadable: dict[str, str] = {}
        for responder in self.settings.responders:
            if responder.startswith("S"):
                members = self.room.group_members(responder)
                if members is None:
                    unreadable[responder] = "its members could not be read from Slack"
                people += members or []
            else:
                people.append(responder)
        if incident.request_id:
            request = self.store.requests.get(incident.request_id)
            if request is not None:
                people += [request.requester, *request.approvers]
        return list(dict.fromkeys(people)), unreadable

    def _invite(self, incident: Incident) -> Change[Incident]:
        assert incident.channel_id is not None
        people, unreadable = self.invitees(incident)
        wanted = [p for p in people if p not in incident.invited]
        refused = self.room.invite(incident.channel_id, wanted) if wanted else {}
        invited = (*incident.invited, *[p for p in wanted if p not in refused])
        not_invited = {**incident.not_invited, **unreadable, **refused}
        for person in invited:
            not_invited.pop(person, None)
        return Change(self._next(incident, invited=invited, not_invited=not_invited),
                      "incident.invited", {"invited": list(invited),
                                           "not_invited": not_invited})

    def _topic(self, incident: Incident) -> Change[Incident]:
        assert incident.channel_id is not None
        self.room.set_topic(incident.channel_id, topic_text(incident))
        return Change(self._next(incident))

    def _status_card(self, incident: Incident) -> Change[Incident]:
        placed = self.room.show_card(incident)
        if placed is None:
            return Change(self._next(incident))
        return Change(self._next(incident, card_channel=placed.channel_id, card_ts=placed.ts),
                      "incident.card_posted", {"ts": placed.ts})

    def _pin(self, incident: Incident) -> Change[Incident]:
        assert incident.channel_id is not None and incident.card_ts is not None
        self.room.pin(incident.channel_id, incident.card_ts)
        return Change(self._next(incident), "incident.card_pinned", {"ts": incident.card_ts})

    def bookmarks(self) -> list[tuple[str, str]]:
        found = [("Neon project", NEON_CONSOLE.format(project_id=self.settings.project_id))]
        if self.settings.runbook_url:
            found.insert(0, ("Runbook", self.settings.runbook_url))
        return found

    def _bookmarks(self, incident: Incident) -> Change[Incident]:
        assert incident.channel_id is not None
        for title, link in self.bookmarks():
            if link in incident.bookmarked:
                continue
            self.room.bookmark(incident.channel_id, title, link)
            return Change(replace(incident, bookmarked=(*incident.bookmarked, link)),
                          "incident.bookmarked", {"title": title, "link": link})
        return Change(self._next(incident))

    def _announce(self, incident: Incident) -> Change[Incident]:
        opened = replace(incident, state=IncidentState.OPEN, step=None, error=None)
        ts = self.room.announce(opened)
        try:
            self.on_opened(opened)
        except Exception:  # the timeline's catch-up; never stops the opening
            log.exception("could not echo the linked work of incident %s", incident.id)
        return Change(replace(opened, announced_ts=ts), "incident.opened", {
            "channel": incident.channel_id, "name": incident.channel_name,
            "invited": list(incident.invited), "not_invited": incident.not_invited,
            "request": incident.request_id})

    # --- closing ------------------------------------------------------------------------

    def summary_of(self, incident: Incident) -> IncidentSummary:
        requests = [r for r in (self.store.requests.get(i) for i in incident.request_ids) if r]
        backups = [b for b in (self.store.backups.get(link.split(":", 1)[1])
                               for link in incident.links if link.startswith("backup:")) if b]
        drills = [d for d in (self.store.drills.get(link.split(":", 1)[1])
                              for link in incident.links if link.startswith("drill:")) if d]
        return summarize(incident, incident.summary, self.settings.project_id, requests,
                         backups, drills, incident.closing_at or self.now())

    def _summary(self, incident: Incident) -> Change[Incident]:
        summary = self.summary_of(incident)
        self.room.post_summary(incident, summary)
        return Change(self._next(incident), "incident.summary_posted", {
            "requests": [r.id for r in summary.requests],
            "restored_after_seconds": (None if summary.restored_after is None
                                       else int(summary.restored_after.total_seconds())),
            "operation_ids": list(summary.support.operation_ids)})

    def timeline_text(self, incident: Incident) -> str:
        entries = self.entries.of(incident.id)
        actors = {e.actor for e in entries if e.actor.startswith(("U", "W"))}
        return timeline_markdown(incident.title, incident.channel_name or incident.id,
                                 entries, self.room.names(actors))

    def _timeline(self, incident: Incident) -> Change[Incident]:
        self.room.post_timeline(incident, self.timeline_text(incident))
        return Change(self._next(incident))

    def _archive(self, incident: Incident) -> Change[Incident]:
        closed = replace(incident, state=IncidentState.CLOSED, step=None,
                         closed_at=self.now(), error=None)
        for update in (self.room.show_card, self.room.announce):  # say so before archiving
            try:
                update(closed)
            except Exception:
                log.exception("could not show incident %s as closed", incident.id)
        self.room.warn_and_archive(closed)
        return Change(closed, "incident.closed", {"channel": incident.channel_id,
                                                  "name": incident.channel_name},
                      actor=incident.closed_by or incident.opened_by)

    # --- failing and showing ------------------------------------------------------------

    def failed(self, incident: Incident, reason: str) -> Change[Incident]:
        step = incident.step or IncidentStep.CREATE_CHANNEL
        said = (f"Lifeguard stopped while {STEP_WORDS[step]}: {reason}")
        return Change(replace(incident, state=IncidentState.STALLED, error=said),
                      "incident.stalled", {"step": step.value})

    def show(self, incident: Incident) -> MessageRef | None:
        """Keep the status card up to date once it exists (never after archiving), and
        tell the opener when the opening ended, whichever worker ended it: after a crash
        the worker that answered "Opening…" is gone."""
        opening_ended = incident.state == IncidentState.OPEN or (
            incident.state == IncidentState.STALLED and incident.closing_at is None)
        if opening_ended:
            self.room.tell_opener(incident)
        if incident.card_ts and incident.state != IncidentState.CLOSED:
            self.room.show_card(incident)
        return None
