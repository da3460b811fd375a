"""The incident tables (bot.domain.incidents.Incident and its timeline's lines), beside
storage.models' tables and with its column types; storage.incident_records imports it, so
it is part of the one metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.domain.incidents import IncidentState, IncidentStatus, IncidentStep
from storage.models import EnumText, JsonObject, JsonTuple, UTCDateTime, seq_type


class IncidentRow(SQLModel, table=True):
    """An incident (bot.domain.incidents.Incident) plus the work lease of the worker
    opening or closing it.

    `open_request` is the request an incident was opened from while the incident is
    live, NULL otherwise: its UNIQUE constraint makes two clicks on one request's button
    (on two replicas, at once) lead to one incident. `channel_id` is unique too: one
    incident per channel. `links`, `invited` and `bookmarked` are JSON lists,
    `not_invited`, `extra` and `step_timings` JSON objects.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("open_request", name="uq_incidents_open_request"),
        UniqueConstraint("channel_id", name="uq_incidents_channel_id"),
        Index("ix_incidents_state", "state"),
        Index("ix_incidents_created_at", "created_at"),
    )

    id: str = Field(sa_column=Column("id", String(), primary_key=True))
    version: int = Field(sa_column=Column("version", Integer(), nullable=False))
    title: str = Field(sa_column=Column("title", Text(), nullable=False))
    state: IncidentState = Field(sa_column=Column("state", EnumText(IncidentState),
                                                  nullable=False))
    status: IncidentStatus = Field(sa_column=Column("status", EnumText(IncidentStatus),
                                                    nullable=False))
    opened_by: str = Field(sa_column=Column("opened_by", String(), nullable=False))
    lead: str = Field(sa_column=Column("lead", String(), nullable=False))
    day: str = Field(sa_column=Column("day", String(), nullable=False))
    slug: str = Field(sa_column=Column("slug", String(), nullable=False))
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column("updated_at", UTCDateTime(), nullable=False))
    step: IncidentStep | None = Field(default=None, sa_column=Column(
        "step", EnumText(IncidentStep)))
    channel_name: str | None = Field(default=None, sa_column=Column("channel_name", String()))
    channel_id: str | None = Field(default=None, sa_column=Column("channel_id", String()))
    request_id: str | None = Field(default=None, sa_column=Column("request_id", String()))
    links: tuple[str, ...] = Field(default=(), sa_column=Column("links", JsonTuple(),
                                                                nullable=False))
    invited: tuple[str, ...] = Field(default=(), sa_column=Column("invited", JsonTuple(),
                                                                  nullable=False))
    not_invited: dict[str, Any] = Field(default_factory=dict, sa_column=Column(
        "not_invited", JsonObject(), nullable=False))
    bookmarked: tuple[str, ...] = Field(default=(), sa_column=Column(
        "bookmarked", JsonTuple(), nullable=False))
    card_channel: str | None = Field(default=None, sa_column=Column("card_channel", String()))
    card_ts: str | None = Field(default=None, sa_column=Column("card_ts", String()))
    announced_ts: str | None = Field(default=None, sa_column=Column("announced_ts", String()))
    opener_channel: str | None = Field(default=None,
                                       sa_column=Column("opener_channel", String()))
    response_url: str | None = Field(default=None, sa_column=Column("response_url", Text()))
    summary: str = Field(sa_column=Column("summary", Text(), nullable=False))
    closed_by: str | None = Field(default=None, sa_column=Column("closed_by", String()))
    closing_at: datetime | None = Field(default=None,
                                        sa_column=Column("closing_at", UTCDateTime()))
    closed_at: datetime | None = Field(default=None,
                                       sa_column=Column("closed_at", UTCDateTime()))
    error: str | None = Field(default=None, sa_column=Column("error", Text()))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(
        "extra", JsonObject(), nullable=False))
    step_started_at: datetime | None = Field(default=None,
                                             sa_column=Column("step_started_at", UTCDateTime()))
    step_timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(
        "step_timings", JsonObject(), nullable=False))
    open_request: str | None = Field(default=None, sa_column=Column("open_request", String()))
    lease_owner: str | None = Field(default=None, sa_column=Column("lease_owner", String()))
    lease_until: datetime | None = Field(default=None,
                                         sa_column=Column("lease_until", UTCDateTime()))


class IncidentEntryRow(SQLModel, table=True):
    """One line of an incident's timeline (bot.domain.incident_timeline.TimelineEntry).
    UNIQUE(incident_id, key): each milestone is kept once, whoever records it first, so
    the line is posted in the channel once too: whoever claims it (`claimed_*`, a
    compare-and-set) posts it; a claim runs out at `claimed_until`."""

    __tablename__ = "incident_entries"
    __table_args__ = (
        UniqueConstraint("incident_id", "key", name="uq_incident_entries_key"),
        Index("ix_incident_entries_incident_id", "incident_id"),
    )

    seq: int = Field(sa_column=Column("seq", seq_type(), primary_key=True,
                                      autoincrement=True))
    incident_id: str = Field(sa_column=Column("incident_id", String(), nullable=False))
    key: str = Field(sa_column=Column("key", String(), nullable=False))
    at: datetime = Field(sa_column=Column("at", UTCDateTime(), nullable=False))
    actor: str = Field(sa_column=Column("actor", String(), nullable=False))
    text: str = Field(sa_column=Column("text", Text(), nullable=False))
    posted_ts: str | None = Field(default=None, sa_column=Column("posted_ts", String()))
    claimed_by: str | None = Field(default=None, sa_column=Column("claimed_by", String()))
    claimed_at: datetime | None = Field(default=None,
                                        sa_column=Column("claimed_at", UTCDateTime()))
    claimed_until: datetime | None = Field(default=None,
                                           sa_column=Column("claimed_until", UTCDateTime()))


incidents = IncidentRow.__table__  # type: ignore[attr-defined]
incident_entries = IncidentEntryRow.__table__  # type: ignore[attr-defined]
