"""Lifeguard's tables, as SQLModel classes (the exports' and the incidents' are in
storage/export_models.py and storage/incident_models.py, with these column types).

The schema itself is created by the Alembic migrations in `storage/migrations`, never by
`create_all`; a test checks that the migrations and these classes agree.

Each column's type converts between the domain's value and what the database holds, so
a row reads back as a domain entity field for field (storage.store maps them whole):

- `UTCDateTime`: written only from timezone-aware datetimes, stored as UTC (`timestamptz`
  on PostgreSQL, naive UTC text on SQLite), always read back timezone-aware in UTC;
- `EnumText`: a StrEnum of bot.domain, stored as its value;
- `JsonTuple`, `JsonObject`, `ApprovalList`: JSON text of a tuple of strings, a mapping of
  plain JSON data, and a request's approvals;
- `TableCopyJson`: a table restore's TableCopy (bot.domain.table_restores), as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

from bot.domain.backups import BackupStatus
from bot.domain.drills import DrillState, DrillStep
from bot.domain.requests import Approval, RequestAction, RequestState, Step
from bot.domain.table_restores import TableCopy

HASH_LENGTH = 64


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime. Naive datetimes are refused on write."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(f"refusing naive datetime {value.isoformat()}: give it a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnumText(TypeDecorator[StrEnum]):
    """A StrEnum of the domain, stored as its value and read back as the member."""

    impl = String()
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


class JsonTuple(TypeDecorator[tuple[str, ...]]):
    """A tuple of strings (such as Neon operation ids), as a JSON list."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise TypeError(f"expected a sequence of strings, got {type(value).__name__}")
        items = list(value)
        if not all(isinstance(item, str) for item in items):
            raise TypeError("expected a sequence of strings")
        return json.dumps(items)

    def process_result_value(self, value: str | None, dialect: Dialect
                             ) -> tuple[str, ...] | None:
        return None if value is None else tuple(json.loads(value))


class JsonObject(TypeDecorator[dict[str, Any]]):
    """A mapping of plain JSON data (a verification report, step timings), as JSON text."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {type(value).__name__}")
        try:
            return json.dumps(dict(value), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"expected plain JSON data: {exc}") from exc

    def process_result_value(self, value: str | None, dialect: Dialect
                             ) -> dict[str, Any] | None:
        return None if value is None else json.loads(value)


class TableCopyJson(TypeDecorator[TableCopy]):
    """What a table restore copies (the plan's `table_copy`), as JSON text; NULL for the
    other requests."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, TableCopy):
            raise TypeError(f"expected a TableCopy, got {type(value).__name__}")
        return json.dumps(value.to_dict(), ensure_ascii=False)

    def process_result_value(self, value: str | None, dialect: Dialect) -> TableCopy | None:
        return None if value is None else TableCopy.from_dict(json.loads(value))


class ApprovalList(TypeDecorator[tuple[Approval, ...]]):
    """A request's approvals in the order given: JSON [{"user_id", "at" (RFC 3339, UTC)}]."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, str | Mapping | Approval) or not isinstance(value, Iterable):
            raise TypeError("approvals must be a sequence of Approval")
        items = []
        for approval in value:
            if not isinstance(approval, Approval) or not isinstance(approval.user_id, str):
                raise TypeError(f"approvals must be Approval, got {type(approval).__name__}")
            at = UTCDateTime().process_bind_param(approval.at, dialect)
            assert at is not None
            items.append({"user_id": approval.user_id,
                          "at": at.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        return json.dumps(items, ensure_ascii=False)

    def process_result_value(self, value: str | None, dialect: Dialect
                             ) -> tuple[Approval, ...]:
        return tuple(Approval(user_id=item["user_id"],
                              at=datetime.fromisoformat(item["at"]).astimezone(UTC))
                     for item in json.loads(value or "[]"))


def seq_type() -> TypeEngine[int]:
    # INTEGER PRIMARY KEY is SQLite's rowid; BIGINT elsewhere.
    return BigInteger().with_variant(Integer(), "sqlite")


class AuditEntryRow(SQLModel, table=True):
    """One link of the append-only, hash-chained audit trail (see bot.domain.audit).

    `seq` is assigned by the appender (last + 1, under a lock), never by the database.
    UNIQUE(prev_hash) means two entries can never follow the same one: the chain cannot
    fork. Triggers created by the migration refuse UPDATE and DELETE (and TRUNCATE on
    PostgreSQL).
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_audit_entries_prev_hash"),
        UniqueConstraint("hash", name="uq_audit_entries_hash"),
        Index("ix_audit_entries_created_at", "created_at"),
        Index("ix_audit_entries_subject", "subject"),
    )

    seq: int = Field(sa_column=Column("seq", seq_type(), primary_key=True,
                                      autoincrement=False))
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))
    actor: str = Field(sa_column=Column("actor", String(), nullable=False))
    action: str = Field(sa_column=Column("action", String(), nullable=False))
    subject: str = Field(sa_column=Column("subject", String(), nullable=False))
    details: str = Field(sa_column=Column("details", Text(), nullable=False))  # JSON text
    prev_hash: str = Field(sa_column=Column("prev_hash", String(HASH_LENGTH), nullable=False))
    hash: str = Field(sa_column=Column("hash", String(HASH_LENGTH), nullable=False))


class BackupRow(SQLModel, table=True):
    """A backup branch (bot.domain.backups.Backup) plus the work lease of the worker
    moving it forward."""

    __tablename__ = "backups"
    __table_args__ = (
        UniqueConstraint("branch_name", name="uq_backups_branch_name"),
        Index("ix_backups_status", "status"),
        Index("ix_backups_created_at", "created_at"),
    )

    id: str = Field(sa_column=Column("id", String(), primary_key=True))
    branch_name: str = Field(sa_column=Column("branch_name", String(), nullable=False))
    version: int = Field(sa_column=Column("version", Integer(), nullable=False))
    status: BackupStatus = Field(sa_column=Column("status", EnumText(BackupStatus),
                                                  nullable=False))
    requested_by: str = Field(sa_column=Column("requested_by", String(), nullable=False))
    reason: str = Field(sa_column=Column("reason", Text(), nullable=False))
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column("expires_at", UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column("updated_at", UTCDateTime(), nullable=False))
    branch_id: str | None = Field(default=None, sa_column=Column("branch_id", String()))
    parent_branch_id: str | None = Field(default=None,
                                         sa_column=Column("parent_branch_id", String()))
    operation_ids: tuple[str, ...] = Field(default=(), sa_column=Column(
        "operation_ids", JsonTuple(), nullable=False))
    error: str | None = Field(default=None, sa_column=Column("error", Text()))
    channel_id: str | None = Field(default=None, sa_column=Column("channel_id", String()))
    card_channel: str | None = Field(default=None, sa_column=Column("card_channel", String()))
    card_ts: str | None = Field(default=None, sa_column=Column("card_ts", String()))
    step_started_at: datetime | None = Field(default=None,
                                             sa_column=Column("step_started_at", UTCDateTime()))
    step_timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(
        "step_timings", JsonObject(), nullable=False))
    response_url: str | None = Field(default=None, sa_column=Column("response_url", Text()))
    deleted_by: str | None = Field(default=None, sa_column=Column("deleted_by", String()))
    logical_size: int | None = Field(default=None,
                                     sa_column=Column("logical_size", BigInteger()))
    lease_owner: str | None = Field(default=None, sa_column=Column("lease_owner", String()))
    lease_until: datetime | None = Field(default=None,
                                         sa_column=Column("lease_until", UTCDateTime()))


class ChangeRequestRow(SQLModel, table=True):
    """A change request (bot.domain.requests.ChangeRequest), its plan flattened into
    columns, plus the work lease of the worker moving it forward.

    `version` is the compare-and-set token: every change bumps it (leases do not).
    `approvals` is JSON text, a list of {"user_id", "at" (RFC 3339, UTC)} in the order
    given; `operation_ids`, `verification` and `extra` are JSON text too.
    """

    __tablename__ = "change_requests"
    __table_args__ = (
        Index("ix_change_requests_state", "state"),
        Index("ix_change_requests_created_at", "created_at"),
    )

    id: str = Field(sa_column=Column("id", String(), primary_key=True))
    version: int = Field(sa_column=Column("version", Integer(), nullable=False))
    state: RequestState = Field(sa_column=Column("state", EnumText(RequestState),
                                                 nullable=False))
    action: RequestAction = Field(sa_column=Column("action", EnumText(RequestAction),
                                                   nullable=False))
    project_id: str = Field(sa_column=Column("project_id", String(), nullable=False))
    requester: str = Field(sa_column=Column("requester", String(), nullable=False))
    source_branch_id: str = Field(sa_column=Column("source_branch_id", String(),
                                                   nullable=False))
    source_branch_name: str = Field(sa_column=Column("source_branch_name", String(),
                                                     nullable=False))
    target_branch_name: str = Field(sa_column=Column("target_branch_name", String(),
                                                     nullable=False))
    target_branch_id: str | None = Field(default=None,
                                         sa_column=Column("target_branch_id", String()))
    instant: datetime | None = Field(default=None, sa_column=Column("instant", UTCDateTime()))
    preserve_under_name: str | None = Field(
        default=None, sa_column=Column("preserve_under_name", String()))
    branches: tuple[str, ...] = Field(default=(), sa_column=Column(
        "branches", JsonTuple(), nullable=False))
    export_id: str | None = Field(default=None, sa_column=Column("export_id", String()))
    export_digest: str | None = Field(default=None,
                                      sa_column=Column("export_digest", String()))
    table_copy: TableCopy | None = Field(default=None, sa_column=Column("table_copy",
                                                                       TableCopyJson()))
    plan_hash: str = Field(sa_column=Column("plan_hash", String(HASH_LENGTH), nullable=False))
    reason: str = Field(sa_column=Column("reason", Text(), nullable=False))
    required_approvals: int = Field(sa_column=Column("required_approvals", Integer(),
                                                     nullable=False))
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column("expires_at", UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column("updated_at", UTCDateTime(), nullable=False))
    approvals: tuple[Approval, ...] = Field(default=(), sa_column=Column(
        "approvals", ApprovalList(), nullable=False))
    decided_by: str | None = Field(default=None, sa_column=Column("decided_by", String()))
    step: Step | None = Field(default=None, sa_column=Column("step", EnumText(Step)))
    branch_id: str | None = Field(default=None, sa_column=Column("branch_id", String()))
    operation_ids: tuple[str, ...] = Field(default=(), sa_column=Column(
        "operation_ids", JsonTuple(), nullable=False))
    error: str | None = Field(default=None, sa_column=Column("error", Text()))
    verification: dict[str, Any] | None = Field(default=None, sa_column=Column(
        "verification", JsonObject()))
    step_started_at: datetime | None = Field(default=None,
                                             sa_column=Column("step_started_at", UTCDateTime()))
    step_timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(
        "step_timings", JsonObject(), nullable=False))
    card_channel: str | None = Field(default=None, sa_column=Column("card_channel", String()))
    card_ts: str | None = Field(default=None, sa_column=Column("card_ts", String()))
    requester_channel: str | None = Field(default=None,
                                          sa_column=Column("requester_channel", String()))
    response_url: str | None = Field(default=None, sa_column=Column("response_url", Text()))
    finished_at: datetime | None = Field(default=None,
                                         sa_column=Column("finished_at", UTCDateTime()))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(
        "extra", JsonObject(), nullable=False))
    lease_owner: str | None = Field(default=None, sa_column=Column("lease_owner", String()))
    lease_until: datetime | None = Field(default=None,
                                         sa_column=Column("lease_until", UTCDateTime()))


class DrillRow(SQLModel, table=True):
    """A restore drill (bot.domain.drills.Drill) plus the work lease of the worker moving
    it forward.

    `version` is the compare-and-set token, as for change requests. `open_slot` is "open"
    while the drill is requested or running and NULL once it ended: its UNIQUE constraint
    lets at most one drill be open at a time, whatever races (NULLs never collide).
    `operation_ids`, `step_timings` and `verification` are JSON text.
    """

    __tablename__ = "drills"
    __table_args__ = (
        UniqueConstraint("branch_name", name="uq_drills_branch_name"),
        UniqueConstraint("open_slot", name="uq_drills_open_slot"),
        Index("ix_drills_state", "state"),
        Index("ix_drills_created_at", "created_at"),
    )

    id: str = Field(sa_column=Column("id", String(), primary_key=True))
    version: int = Field(sa_column=Column("version", Integer(), nullable=False))
    state: DrillState = Field(sa_column=Column("state", EnumText(DrillState), nullable=False))
    step: DrillStep = Field(sa_column=Column("step", EnumText(DrillStep), nullable=False))
    started_by: str = Field(sa_column=Column("started_by", String(), nullable=False))
    target_instant: datetime = Field(sa_column=Column("target_instant", UTCDateTime(),
                                                      nullable=False))
    branch_name: str = Field(sa_column=Column("branch_name", String(), nullable=False))
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column("updated_at", UTCDateTime(), nullable=False))
    channel_id: str | None = Field(default=None, sa_column=Column("channel_id", String()))
    source_branch_id: str | None = Field(default=None,
                                         sa_column=Column("source_branch_id", String()))
    source_branch_name: str | None = Field(default=None,
                                           sa_column=Column("source_branch_name", String()))
    branch_id: str | None = Field(default=None, sa_column=Column("branch_id", String()))
    operation_ids: tuple[str, ...] = Field(default=(), sa_column=Column(
        "operation_ids", JsonTuple(), nullable=False))
    started_at: datetime | None = Field(default=None,
                                        sa_column=Column("started_at", UTCDateTime()))
    step_started_at: datetime | None = Field(default=None,
                                             sa_column=Column("step_started_at", UTCDateTime()))
    step_timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(
        "step_timings", JsonObject(), nullable=False))
    rto_seconds: float | None = Field(default=None, sa_column=Column("rto_seconds", Float()))
    rpo_seconds: float | None = Field(default=None, sa_column=Column("rpo_seconds", Float()))
    newest_restored_at: datetime | None = Field(
        default=None, sa_column=Column("newest_restored_at", UTCDateTime()))
    verification: dict[str, Any] | None = Field(default=None, sa_column=Column(
        "verification", JsonObject()))
    summary: str | None = Field(default=None, sa_column=Column("summary", Text()))
    error: str | None = Field(default=None, sa_column=Column("error", Text()))
    failed_step: DrillStep | None = Field(default=None, sa_column=Column(
        "failed_step", EnumText(DrillStep)))
    next_step: str | None = Field(default=None, sa_column=Column("next_step", Text()))
    cleanup_error: str | None = Field(default=None, sa_column=Column("cleanup_error", Text()))
    branch_deleted: bool = Field(default=False, sa_column=Column("branch_deleted", Boolean(),
                                                                 nullable=False))
    finished_at: datetime | None = Field(default=None,
                                         sa_column=Column("finished_at", UTCDateTime()))
    card_channel: str | None = Field(default=None, sa_column=Column("card_channel", String()))
    card_ts: str | None = Field(default=None, sa_column=Column("card_ts", String()))
    open_slot: str | None = Field(default=None, sa_column=Column("open_slot", String()))
    lease_owner: str | None = Field(default=None, sa_column=Column("lease_owner", String()))
    lease_until: datetime | None = Field(default=None,
                                         sa_column=Column("lease_until", UTCDateTime()))


audit_entries = AuditEntryRow.__table__  # type: ignore[attr-defined]
backups = BackupRow.__table__  # type: ignore[attr-defined]
change_requests = ChangeRequestRow.__table__  # type: ignore[attr-defined]
drills = DrillRow.__table__  # type: ignore[attr-defined]
metadata = SQLModel.metadata
