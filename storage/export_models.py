"""The exports table (bot.domain.export_jobs.Export), beside storage.models' tables and
with its column types; storage.store imports it, so it is part of the one metadata."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Dialect, Index, Integer, String, Text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from bot.domain.export_archive import DatabaseDump
from bot.domain.export_jobs import ExportState, ExportStep, dump_as_json, dump_from_json
from storage.models import EnumText, JsonObject, JsonTuple, UTCDateTime


class DumpList(TypeDecorator[tuple[DatabaseDump, ...]]):
    """The databases an export has dumped so far, as a JSON list."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not all(isinstance(item, DatabaseDump) for item in value):
            raise TypeError("expected a sequence of DatabaseDump")
        return json.dumps([dump_as_json(item) for item in value], ensure_ascii=False)

    def process_result_value(self, value: str | None, dialect: Dialect
                             ) -> tuple[DatabaseDump, ...] | None:
        return None if value is None else tuple(dump_from_json(item)
                                                for item in json.loads(value))


def _text(name: str, *, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(name, Text(), nullable=nullable))


def _string(name: str) -> Any:
    return Field(default=None, sa_column=Column(name, String()))


def _instant(name: str) -> Any:
    return Field(default=None, sa_column=Column(name, UTCDateTime()))


class ExportRow(SQLModel, table=True):
    """An export, plus the work lease of the worker moving it forward."""

    __tablename__ = "exports"
    __table_args__ = (
        Index("ix_exports_state", "state"),
        Index("ix_exports_created_at", "created_at"),
    )

    id: str = Field(sa_column=Column("id", String(), primary_key=True))
    version: int = Field(sa_column=Column("version", Integer(), nullable=False))
    state: ExportState = Field(sa_column=Column("state", EnumText(ExportState),
                                                nullable=False))
    step: ExportStep = Field(sa_column=Column("step", EnumText(ExportStep), nullable=False))
    requested_by: str = Field(sa_column=Column("requested_by", String(), nullable=False))
    reason: str = Field(sa_column=Column("reason", Text(), nullable=False))
    folder: str = Field(sa_column=Column("folder", Text(), nullable=False, unique=True))
    branch_name: str = Field(sa_column=Column("branch_name", String(), nullable=False,
                                              unique=True))
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column("updated_at", UTCDateTime(), nullable=False))
    source_backup: str | None = _string("source_backup")
    source_branch_id: str | None = _string("source_branch_id")
    source_branch_name: str | None = _string("source_branch_name")
    branch_id: str | None = _string("branch_id")
    operation_ids: tuple[str, ...] = Field(default=(), sa_column=Column(
        "operation_ids", JsonTuple(), nullable=False))
    folder_claimed: bool = Field(default=False, sa_column=Column(
        "folder_claimed", Boolean(), nullable=False))
    databases: tuple[str, ...] = Field(default=(), sa_column=Column(
        "databases", JsonTuple(), nullable=False))
    dumps: tuple[DatabaseDump, ...] = Field(default=(), sa_column=Column(
        "dumps", DumpList(), nullable=False))
    dumps_finished_at: datetime | None = _instant("dumps_finished_at")
    checked_at: datetime | None = _instant("checked_at")
    check_passed: bool | None = Field(default=None, sa_column=Column("check_passed",
                                                                     Boolean()))
    archive_read: bool = Field(default=False, sa_column=Column("archive_read", Boolean(),
                                                               nullable=False))
    check_problems: tuple[str, ...] = Field(default=(), sa_column=Column(
        "check_problems", JsonTuple(), nullable=False))
    error: str | None = _text("error")
    failed_step: str | None = _string("failed_step")
    cleanup_error: str | None = _text("cleanup_error")
    objects_removed: int | None = Field(default=None, sa_column=Column("objects_removed",
                                                                       BigInteger()))
    branch_deleted: bool = Field(default=False, sa_column=Column(
        "branch_deleted", Boolean(), nullable=False))
    finished_at: datetime | None = _instant("finished_at")
    deleted_by: str | None = _string("deleted_by")
    channel_id: str | None = _string("channel_id")
    response_url: str | None = _text("response_url")
    card_channel: str | None = _string("card_channel")
    card_ts: str | None = _string("card_ts")
    step_started_at: datetime | None = _instant("step_started_at")
    step_timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(
        "step_timings", JsonObject(), nullable=False))
    lease_owner: str | None = _string("lease_owner")
    lease_until: datetime | None = _instant("lease_until")


exports = ExportRow.__table__  # type: ignore[attr-defined]
