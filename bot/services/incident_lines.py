"""Posting an incident's timeline lines in its channel, each exactly once.

A line is kept in the store once (UNIQUE per incident and key) and may be posted by any
of several callers at once: the listener that recorded it, an echo of linked work, the
reconciler, on any replica. Posting therefore claims the line first, by compare-and-set
in the store (storage.incident_records), and only the claimant posts. A claim runs out
(`LINE_LEASE`): a poster that died between claiming and recording the message is taken
over, so no line is lost. Whoever takes over a claim first looks for the earlier poster's
message in the channel (each line carries metadata naming it), since Slack may have taken
it before that poster died. And a poster that finds another message recorded for its
line (its own claim ran out while Slack was slow) deletes its own copy.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.domain.incident_timeline import LineClaim, TimelineEntry
from bot.domain.incidents import Incident, IncidentState

log = logging.getLogger("lifeguard.incidents")

# How long a claim to post a line holds: longer than one post takes, rate limits waited
# out included; a poster that died is taken over this long after it claimed.
LINE_LEASE = timedelta(minutes=2)
# A line Slack did not take is tried again (at the latest by the reconciler) after this,
# and a line recorded but never claimed (its recorder died first) is posted by then.
LINE_RETRY = timedelta(seconds=30)


class TimelineEntries(Protocol):
    def add(self, entry: TimelineEntry, reserved_until: datetime | None = None) -> bool: ...

    def of(self, incident_id: str) -> list[TimelineEntry]: ...

    def claim(self, incident_id: str, key: str, owner: str, now: datetime,
              lease: timedelta, *, overdue_only: bool = False) -> LineClaim | None: ...

    def release(self, incident_id: str, key: str, owner: str, retry_at: datetime) -> None: ...

    def mark_posted(self, incident_id: str, key: str, ts: str) -> str: ...


class LineRoom(Protocol):
    """The incident's channel, as its timeline needs it."""

    def post_entry(self, incident: Incident, entry: TimelineEntry) -> str:
        """One timeline line in the incident's channel, marked as that line; its ts."""
        ...

    def find_entry(self, incident: Incident, entry: TimelineEntry,
                   since: datetime) -> str | None:
        """The ts of the line's message posted since `since`, if there is one."""
        ...

    def delete_entry(self, incident: Incident, ts: str) -> None: ...


class TimelinePoster:
    def __init__(self, entries: TimelineEntries, room: LineRoom, *, worker_id: str,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 lease: timedelta = LINE_LEASE) -> None:
        self.entries = entries
        self.room = room
        self.worker_id = worker_id
        self.now = now
        self.lease = lease

    def add(self, entry: TimelineEntry) -> bool:
        """Record the line (False when it was recorded already), reserved for a while
        for this caller to post: the reconciler posting it meanwhile could put it
        before a line this caller is still posting."""
        return self.entries.add(entry, self.now() + LINE_RETRY)

    def post(self, incident: Incident, entry: TimelineEntry, *,
             overdue_only: bool = False) -> None:
        """Post the line unless it is posted already or another caller is posting it
        (`overdue_only`: unless its recorder may still post it). Never raises for
        Slack: a line Slack refused waits for the next try."""
        if not incident.channel_id or incident.state == IncidentState.CLOSED:
            return
        # One owner per call, not per process: two threads must not share a claim.
        owner = f"{self.worker_id}/{uuid.uuid4().hex[:8]}"
        claim = self.entries.claim(incident.id, entry.key, owner, self.now(), self.lease,
                                   overdue_only=overdue_only)
        if claim is None:
            return
        try:
            found = (self.room.find_entry(incident, entry, claim.earlier_since)
                     if claim.earlier_since is not None else None)
            ts = found or self.room.post_entry(incident, entry)
        except Exception:
            log.exception("could not post a timeline line of incident %s", incident.id)
            self.entries.release(incident.id, entry.key, owner, self.now() + LINE_RETRY)
            return
        kept = self.entries.mark_posted(incident.id, entry.key, ts)
        if kept != ts and found is None:
            try:
                self.room.delete_entry(incident, ts)
            except Exception:
                log.exception("could not delete a second copy of a line of incident %s",
                              incident.id)

    def post_pending(self, incident: Incident, *, overdue_only: bool = False) -> None:
        """Post every line of the incident not posted yet, oldest first."""
        for entry in self.entries.of(incident.id):
            if entry.posted_ts is None:
                self.post(incident, entry, overdue_only=overdue_only)
