"""Incidents and their timelines in the store.

An incident is an entity like a backup or a drill (storage.records): kept whole, saved by
compare-and-set on its version, with a work lease for the engine. Its `open_request`
column (the request it was opened from, while it is live) is UNIQUE, so one request leads
to one live incident however many clicks race.

Timeline entries are added once each: UNIQUE(incident_id, key), and `add` answers whether
this call added it, so whoever added a line is the one who posts it in the channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.domain.incident_timeline import TimelineEntry
from bot.domain.incidents import (
    LIVE_STATES,
    DuplicateIncident,
    Incident,
    check_incident_transition,
)
from storage.models import incident_entries, incidents
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

    def add(self, entry: TimelineEntry) -> bool:
        """Keep the entry; False (and nothing written) when its key is kept already."""
        def work(conn: Connection) -> bool:
            conn.execute(insert(incident_entries).values(
                incident_id=entry.incident_id, key=entry.key, at=entry.at,
                actor=entry.actor, text=entry.text, posted_ts=entry.posted_ts))
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

    def mark_posted(self, incident_id: str, key: str, ts: str) -> None:
        self._store.transaction(lambda conn: conn.execute(
            update(incident_entries)
            .where(and_(incident_entries.c.incident_id == incident_id,
                        incident_entries.c.key == key))
            .values(posted_ts=ts)), write=True)
