"""Incidents and their timelines in the store.

An incident is an entity like a backup or a drill (storage.records): kept whole, saved by
compare-and-set on its version, with a work lease for the engine. Its `open_request`
column (the request it was opened from, while it is live) is UNIQUE, so one request leads
to one live incident however many clicks race.

Timeline entries are added once each: UNIQUE(incident_id, key). A line is posted in the
channel by whoever claims it (`claim`: a compare-and-set on the entry's claim columns, so
of two replicas, or the reconciler and a Slack listener, exactly one gets it); a claim runs
out, so a line whose poster died is taken over, never lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.domain.incident_timeline import LineClaim, TimelineEntry
from bot.domain.incidents import (
    LIVE_STATES,
    DuplicateIncident,
    Incident,
    check_incident_transition,
)
from storage.incident_models import incident_entries, incidents
from storage.records import EntityMap, Records, is_unique_violation, state_change

if TYPE_CHECKING:
    from storage.store import SqlStore

INCIDENTS = EntityMap(
    incidents, Incident, DuplicateIncident, state_column="state",
    kept=lambda incident: {"open_request": incident.request_id
                           if incident.request_id and incident.state in LIVE_STATES else None},
    check=state_change(check_incident_transition))


class IncidentRecords(Records[Incident]):
    def by_channel(self, channel_id: str) -> Incident | None:
        return self.find(channel_id=channel_id)

    def live_for_request(self, request_id: str) -> Incident | None:
        """The live incident opened from that request, if any."""
        return self.find(open_request=request_id)

    def live(self) -> list[Incident]:
        return self.list(LIVE_STATES, limit=200)


class IncidentEntries:
    """The timeline lines of incidents, oldest first."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def add(self, entry: TimelineEntry, reserved_until: datetime | None = None) -> bool:
        """Keep the entry; False (and nothing written) when its key is kept already.
        Until `reserved_until` the line is left to whoever recorded it: a claim that
        only takes overdue lines (the reconciler's) does not take it before."""
        def work(conn: Connection) -> bool:
            conn.execute(insert(incident_entries).values(
                incident_id=entry.incident_id, key=entry.key, at=entry.at,
                actor=entry.actor, text=entry.text, posted_ts=entry.posted_ts,
                claimed_until=reserved_until))
            return True

        try:
            return self._store.transaction(work, write=True)
        except IntegrityError as exc:
            if is_unique_violation(exc):
                return False
            raise

    def keys(self, incident_id: str) -> set[str]:
        query = select(incident_entries.c.key).where(
            incident_entries.c.incident_id == incident_id)
        rows = self._store.transaction(lambda conn: conn.execute(query).all(), write=False)
        return {row.key for row in rows}

    def of(self, incident_id: str) -> list[TimelineEntry]:
        query = (select(incident_entries)
                 .where(incident_entries.c.incident_id == incident_id)
                 .order_by(incident_entries.c.at, incident_entries.c.seq))
        rows = self._store.transaction(lambda conn: conn.execute(query).all(), write=False)
        return [TimelineEntry(incident_id=row.incident_id, key=row.key, at=row.at,
                              actor=row.actor, text=row.text, posted_ts=row.posted_ts)
                for row in rows]

    def _line(self, incident_id: str, key: str) -> ColumnElement[bool]:
        return and_(incident_entries.c.incident_id == incident_id,
                    incident_entries.c.key == key)

    def claim(self, incident_id: str, key: str, owner: str, now: datetime,
              lease: timedelta, *, overdue_only: bool = False) -> LineClaim | None:
        """The right to post the line until `now + lease`; None when it is posted already
        or another caller's claim still holds (or, `overdue_only`, while it is still
        reserved for whoever recorded it). Taken by compare-and-set on the claim read, so
        of callers racing for one line exactly one gets it."""
        def work(conn: Connection) -> LineClaim | None:
            c = incident_entries.c
            row = conn.execute(select(c.posted_ts, c.claimed_by, c.claimed_at,
                                      c.claimed_until)
                               .where(self._line(incident_id, key))).first()
            if row is None or row.posted_ts is not None:
                return None
            held = row.claimed_until is not None and row.claimed_until > now
            if held and (row.claimed_by is not None or overdue_only):
                return None
            unchanged = [c.posted_ts.is_(None)] + [
                column.is_(None) if value is None else column == value
                for column, value in ((c.claimed_by, row.claimed_by),
                                      (c.claimed_until, row.claimed_until))]
            taken = conn.execute(update(incident_entries)
                                 .where(self._line(incident_id, key), *unchanged)
                                 .values(claimed_by=owner, claimed_at=now,
                                         claimed_until=now + lease))
            if taken.rowcount != 1:
                return None
            earlier = None if row.claimed_by is None else (row.claimed_at or now - lease)
            return LineClaim(owner, now + lease, earlier)

        return self._store.transaction(work, write=True)

    def release(self, incident_id: str, key: str, owner: str, retry_at: datetime) -> None:
        """The owner could not post the line: the next claim may be had from `retry_at`
        (and searches the channel first, in case Slack took it after all)."""
        c = incident_entries.c
        self._store.transaction(lambda conn: conn.execute(
            update(incident_entries)
            .where(self._line(incident_id, key), c.claimed_by == owner, c.posted_ts.is_(None))
            .values(claimed_until=retry_at)), write=True)

    def mark_posted(self, incident_id: str, key: str, ts: str) -> str:
        """Record the line's message; returns the message recorded for it, which is
        another when someone whose claim had run out recorded theirs first."""
        def work(conn: Connection) -> str:
            c = incident_entries.c
            conn.execute(update(incident_entries)
                         .where(self._line(incident_id, key), c.posted_ts.is_(None))
                         .values(posted_ts=ts, claimed_until=None))
            kept = conn.execute(select(c.posted_ts)
                                .where(self._line(incident_id, key))).scalar_one_or_none()
            return str(kept or ts)

        return self._store.transaction(work, write=True)
