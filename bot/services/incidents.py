"""Incidents: opening a channel for a data incident, its timeline, closing it.

Opening and closing are long work on the one engine (bot.services.incident_steps). The
timeline is kept in the store (one line per milestone, each once) and echoed into the
channel as it happens: the incident's own events (opened, notes, status changes, closing)
and the milestones of the work linked to it. Work is linked when the incident is opened
from a request's button, or when it is asked for in the incident's channel (a `/restore`,
`/backup` or `/drill` typed there); `IncidentEcho` wraps the work's notifiers so every
change of a linked record reaches the timeline without the other services knowing.

Every decision is audited: `incident.*` entries under the incident's id, and
`incident.linked` under the linked request's id, so `/restore log` names the incident.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from bot.domain.audit import AuditEntry, AuditEvent
from bot.domain.backups import Backup
from bot.domain.drills import Drill
from bot.domain.errors import Conflict, NotAllowed, NotFound
from bot.domain.incident_timeline import (
    LIFEGUARD,
    Milestone,
    TimelineEntry,
    milestones_of_backup,
    milestones_of_drill,
    milestones_of_request,
)
from bot.domain.incidents import (
    DuplicateIncident,
    Incident,
    IncidentState,
    IncidentStatus,
    IncidentStep,
    check_in_incident,
    check_title,
    day_of,
    link_of,
    slugify,
    topic_text,
)
from bot.domain.requests import ACTION_TITLES, ChangeRequest
from bot.domain.text import escape
from bot.services.incident_lines import TimelineEntries, TimelinePoster
from bot.services.incident_steps import IncidentRoom, IncidentSteps, IncidentStore, Settings
from bot.services.ports import MessageRef
from bot.services.work import Engine

log = logging.getLogger("lifeguard.incidents")

SETTLE_SECONDS = 120.0


class IncidentRecords(Protocol):
    def by_channel(self, channel_id: str) -> Incident | None: ...

    def live_for_request(self, request_id: str) -> Incident | None: ...

    def live(self) -> list[Incident]: ...


class IncidentServiceStore(IncidentStore, Protocol):
    incident_entries: TimelineEntries

    def append(self, event: AuditEvent) -> AuditEntry: ...


class IncidentService:
    def __init__(self, store: IncidentServiceStore, room: IncidentRoom, settings: Settings, *,
                 worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.room = room
        self.settings = settings
        self.now = now
        self.steps = IncidentSteps(store, store.incident_entries, room, settings,
                                   on_opened=self.echo_linked, now=now)
        self.work = Engine(self.steps.kind(), store.incidents, worker_id=worker_id, now=now)
        self.lines = TimelinePoster(store.incident_entries, room,
                                    worker_id=self.work.worker_id, now=now)

    @property
    def _records(self) -> IncidentRecords:
        return self.store.incidents  # type: ignore[return-value]

    # --- opening ------------------------------------------------------------------------

    def open(self, user_id: str, title: str | None, *, request_id: str | None = None,
             channel_id: str | None = None, response_url: str | None = None) -> Incident:
        """Record the incident (durably, audited) to be opened step by step; for a
        request that has a live incident already, or a stalled opening of the same title
        by the same person, that incident (resumed when it had stalled)."""
        request = None
        if request_id:
            request = self.store.requests.get(request_id)
            if request is None:
                raise NotFound(f"There is no request `{request_id}` to open an incident "
                               "for.")
            existing = self._records.live_for_request(request_id)
            if existing is not None:
                return self._again(existing, user_id, response_url)
        title = check_title(title or f"{ACTION_TITLES[request.plan.action]} {request.id}"
                            if request else title or "")
        for stalled in self.store.incidents.list((IncidentState.STALLED,), limit=50):
            if stalled.title == title and stalled.opened_by == user_id \
                    and stalled.request_id is None and stalled.closing_at is None:
                return self._again(stalled, user_id, response_url)
        now = self.now()
        incident = Incident(
            id=secrets.token_hex(4), title=title, state=IncidentState.OPENING,
            status=IncidentStatus.INVESTIGATING, opened_by=user_id, lead=user_id,
            day=day_of(now), slug=slugify(title), created_at=now, updated_at=now,
            step=IncidentStep.CREATE_CHANNEL, request_id=request_id,
            links=(link_of("request", request_id),) if request_id else (),
            opener_channel=channel_id, response_url=response_url)
        event = AuditEvent(user_id, "incident.opening", incident.id,
                           {"title": title, "request": request_id})
        try:
            recorded = self.store.incidents.add(incident, event)
        except DuplicateIncident:  # another click on the same request got there first
            existing = self._records.live_for_request(request_id or "")
            if existing is None:
                raise Conflict("Two incidents got the same id; please open it again.") \
                    from None
            return self._again(existing, user_id, response_url)
        self._record(recorded, Milestone(f"incident:{recorded.id}:opened", user_id,
                                         f"opened the incident: {_quoted(title)}",
                                         recorded.created_at))
        return recorded

    def _again(self, incident: Incident, user_id: str, response_url: str | None) -> Incident:
        """Opening an incident that exists: a stalled one goes on where it stopped (and
        its end is told to the person asking now); the person asking is invited when the
        channel is there."""
        if incident.state == IncidentState.STALLED and incident.closing_at is None:
            resumed = self.store.incidents.save(
                replace(incident, state=IncidentState.OPENING, error=None,
                        response_url=response_url or incident.response_url),
                incident.version,
                AuditEvent(user_id, "incident.resumed", incident.id,
                           {"step": incident.step.value if incident.step else None}))
            incident = resumed or self.get(incident.id)
        if incident.channel_id and user_id not in incident.invited:
            try:
                self.room.invite(incident.channel_id, [user_id])
            except Exception:
                log.warning("could not invite %s to incident %s", user_id, incident.id)
        return incident

    def settle(self, incident_id: str, timeout: float = SETTLE_SECONDS) -> Incident:
        """Advance the opening or closing, or wait (bounded) for whoever holds it."""
        settled = self.work.settle(
            incident_id, timeout=timeout,
            is_open=lambda i: i.state in (IncidentState.OPENING, IncidentState.CLOSING))
        return settled or self.get(incident_id)

    def advance(self, incident_id: str) -> Incident | None:
        return self.work.advance(incident_id)

    def runnable(self) -> list[Incident]:
        return self.store.incidents.list((IncidentState.OPENING, IncidentState.CLOSING),
                                         limit=100)

    # --- in the incident's channel -------------------------------------------------------

    def in_channel(self, channel_id: str | None, command: str) -> Incident:
        incident = self._records.by_channel(channel_id) if channel_id else None
        return check_in_incident(incident, command)

    def note(self, user_id: str, channel_id: str | None, text: str) -> TimelineEntry:
        incident = self.in_channel(channel_id, "note")
        at = self.now()
        milestone = Milestone(f"note:{secrets.token_hex(6)}", user_id,
                              f"noted: {_quoted(text)}", at)
        self.store.append(AuditEvent(user_id, "incident.noted", incident.id, {"text": text}))
        return self._record(incident, milestone, post=False)

    def post_entry(self, incident_id: str, entry: TimelineEntry) -> None:
        """Post a line recorded before Slack was acknowledged."""
        self._post(self.get(incident_id), entry)

    def set_status(self, user_id: str, channel_id: str | None,
                   status: IncidentStatus) -> Incident:
        """Recorded (compare-and-set, audited) before Slack is acknowledged; the card, the
        topic and the timeline follow with `show_status`."""
        for _ in range(5):
            incident = self.in_channel(channel_id, "status")
            if incident.status == status:
                raise NotAllowed(f"The incident's status is {status.value} already.")
            saved = self.store.incidents.save(
                replace(incident, status=status), incident.version,
                AuditEvent(user_id, "incident.status_changed", incident.id,
                           {"from": incident.status.value, "to": status.value}))
            if saved is not None:
                self._record(saved, Milestone(f"status:{saved.version}", user_id,
                                              f"set the status to *{status.value}*"),
                             post=False)
                return saved
            time.sleep(0.05)
        raise Conflict("The incident is being changed right now; try again.")

    def show_status(self, incident: Incident) -> None:
        incident = self.get(incident.id)
        if incident.channel_id and incident.state != IncidentState.CLOSED:
            self.room.set_topic(incident.channel_id, topic_text(incident))
            if incident.card_ts:
                self.room.show_card(incident)
        self.post_pending(incident)

    def timeline(self, channel_id: str | None) -> tuple[Incident, str]:
        incident = self.in_channel(channel_id, "timeline")
        return incident, self.steps.timeline_text(incident)

    def close(self, user_id: str, channel_id: str | None, summary: str) -> Incident:
        """Recorded before Slack is acknowledged; the steps follow with `advance`."""
        incident = self._records.by_channel(channel_id) if channel_id else None
        if incident is not None and incident.state == IncidentState.STALLED \
                and incident.closing_at is not None:  # the closing stalled: go on
            resumed = self.store.incidents.save(
                replace(incident, state=IncidentState.CLOSING, error=None), incident.version,
                AuditEvent(user_id, "incident.resumed", incident.id,
                           {"step": incident.step.value if incident.step else None}))
            return resumed or self.get(incident.id)
        incident = check_in_incident(incident, "close")
        if incident.state != IncidentState.OPEN:
            raise NotAllowed("The incident is still being opened (or its opening stalled): "
                             "`/incident open` with the same title finishes it first.")
        now = self.now()
        closing = self.store.incidents.save(
            replace(incident, state=IncidentState.CLOSING, step=IncidentStep.SUMMARY,
                    summary=summary, closed_by=user_id, closing_at=now),
            incident.version,
            AuditEvent(user_id, "incident.closing", incident.id, {"summary": summary}))
        if closing is None:
            raise Conflict("The incident changed while it was being closed; try again.")
        self._record(closing, Milestone(f"incident:{closing.id}:closing", user_id,
                                        "closed the incident"
                                        + (f": {_quoted(summary)}" if summary else ""), now),
                     post=False)
        return closing

    # --- reading --------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        incident = self.store.incidents.get(incident_id)
        if incident is None:
            raise NotFound(f"There is no incident `{incident_id}`.")
        return incident

    def live(self) -> list[Incident]:
        return self._records.live()

    def entries(self, incident_id: str) -> list[TimelineEntry]:
        return self.store.incident_entries.of(incident_id)

    # --- the timeline -----------------------------------------------------------------------

    def _record(self, incident: Incident, milestone: Milestone, *,
                post: bool = True) -> TimelineEntry:
        entry = TimelineEntry(incident.id, milestone.key, milestone.at or self.now(),
                              milestone.actor, milestone.text)
        if self.lines.add(entry) and post:
            self._post(incident, entry)
        return entry

    def _post(self, incident: Incident, entry: TimelineEntry) -> None:
        self.lines.post(incident, entry)

    def post_pending(self, incident: Incident) -> None:
        """Post the lines recorded while the channel was not there yet, or not posted."""
        self.lines.post_pending(incident)

    def post_waiting(self) -> None:
        """The reconciler's round: the lines of open incidents that nobody posted (their
        poster died, or Slack refused them for a while) are posted now."""
        for incident in self._records.live():
            if incident.state == IncidentState.OPEN and incident.channel_id:
                try:
                    self.lines.post_pending(incident, overdue_only=True)
                except Exception:
                    log.exception("could not post the waiting lines of incident %s",
                                  incident.id)

    def echo_linked(self, incident: Incident) -> None:
        """Once the channel is open: what happened so far, and the linked work's
        milestones (a request opened from its card has a history already)."""
        self.post_pending(incident)
        if incident.request_id:  # opened from its card: its log names the incident
            self.store.append(AuditEvent(incident.opened_by, "incident.linked",
                                         incident.request_id,
                                         {"incident": incident.id,
                                          "channel": incident.channel_name,
                                          "kind": "request"}))
        for request_id in incident.request_ids:
            request = self.store.requests.get(request_id)
            if request is not None:
                self._echo(incident, milestones_of_request(request))

    def _echo(self, incident: Incident, milestones: list[Milestone]) -> None:
        for milestone in milestones:
            self._record(incident, milestone)

    def _incident_for(self, link: str, channel_id: str | None) -> Incident | None:
        """The live incident the work is linked to, or whose channel it was asked in."""
        live = [i for i in self._records.live() if i.state != IncidentState.CLOSED]
        for incident in live:
            if link in incident.links:
                return incident
        for incident in live:
            if channel_id and incident.channel_id == channel_id \
                    and incident.closing_at is None:
                return self._link(incident, link)
        return None

    def _link(self, incident: Incident, link: str) -> Incident:
        kind, work_id = link.split(":", 1)
        for _ in range(5):
            saved = self.store.incidents.save(
                replace(incident, links=(*incident.links, link)), incident.version,
                AuditEvent(SYSTEM_ACTOR, "incident.linked", work_id,
                           {"incident": incident.id, "channel": incident.channel_name,
                            "kind": kind}))
            if saved is not None:
                return saved
            fresh = self.store.incidents.get(incident.id)
            if fresh is None:
                break
            if link in fresh.links:
                return fresh
            incident = fresh
        return incident

    def work_changed(self, link: str, channel_id: str | None,
                     milestones: list[Milestone]) -> None:
        """A linked (or newly linkable) record changed: its new milestones join the
        timeline and the channel. Never raises: the work itself must go on."""
        try:
            incident = self._incident_for(link, channel_id)
            if incident is not None:
                self._echo(incident, milestones)
        except Exception:
            log.exception("could not echo %s into its incident", link)


SYSTEM_ACTOR = LIFEGUARD


def _quoted(text: str) -> str:
    return f"_{escape(text)}_"


class IncidentEcho:
    """Wraps the notifiers of requests, backups and drills: each change also reaches the
    incident the record is linked to. The wrapped notifier's answer is returned as it was."""

    def __init__(self, inner: object, incidents: IncidentService) -> None:
        self.inner = inner
        self.incidents = incidents

    def request_changed(self, request: ChangeRequest) -> MessageRef | None:
        try:
            return self.inner.request_changed(request)  # type: ignore[attr-defined,no-any-return]
        finally:
            self.incidents.work_changed(link_of("request", request.id),
                                        request.requester_channel,
                                        milestones_of_request(request))

    def ask_approvers(self, request: ChangeRequest) -> None:
        self.inner.ask_approvers(request)  # type: ignore[attr-defined]

    def backup_changed(self, backup: Backup) -> MessageRef | None:
        try:
            return self.inner.backup_changed(backup)  # type: ignore[attr-defined,no-any-return]
        finally:
            self.incidents.work_changed(link_of("backup", backup.id), backup.channel_id,
                                        milestones_of_backup(backup))

    def drill_changed(self, drill: Drill) -> MessageRef | None:
        try:
            return self.inner.drill_changed(drill)  # type: ignore[attr-defined,no-any-return]
        finally:
            self.incidents.work_changed(link_of("drill", drill.id), drill.channel_id,
                                        milestones_of_drill(drill))
