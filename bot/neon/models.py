"""Typed results of the Neon API v2. Field names follow the API; pydantic reads them from
Neon's JSON (unknown fields are ignored) and refuses an answer that lacks a field the API
documents as always there.

They are pydantic dataclasses rather than BaseModels because callers (and their test
fakes) build, compare and hash them like the frozen dataclasses they replaced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AliasPath, ConfigDict, Field
from pydantic.dataclasses import dataclass

SUCCESS_STATUSES = frozenset({"finished", "skipped"})
FAILURE_STATUSES = frozenset({"failed", "error", "cancelled"})


def _in_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]
"""An RFC 3339 timestamp, always timezone-aware in UTC."""

# populate_by_name: a field read from a nested place in Neon's JSON (an AliasPath) can
# still be given by its own name when a caller builds the value.
_READ_FROM_NEON = ConfigDict(populate_by_name=True)


@dataclass(frozen=True, config=_READ_FROM_NEON)
class Project:
    id: str
    name: str
    region_id: str
    pg_version: int
    history_retention_seconds: int
    created_at: UtcDatetime
    branch_logical_size_limit_bytes: int | None = None
    synthetic_storage_size: int | None = None
    quota: dict[str, Any] = Field(default_factory=dict,
                                  validation_alias=AliasPath("settings", "quota"))
    branches_limit: int | None = Field(  # the plan's branch limit
        default=None, validation_alias=AliasPath("owner", "branches_limit"))


@dataclass(frozen=True, config=_READ_FROM_NEON)
class Branch:
    id: str
    project_id: str
    name: str
    current_state: str
    default: bool
    protected: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime
    parent_id: str | None = None
    parent_timestamp: UtcDatetime | None = None
    parent_lsn: str | None = None
    logical_size: int | None = None
    expires_at: UtcDatetime | None = None
    created_by_name: str | None = Field(default=None,
                                        validation_alias=AliasPath("created_by", "name"))
    restored_from: str | None = None
    restored_as: str | None = None


@dataclass(frozen=True)
class Operation:
    id: str
    action: str
    status: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    branch_id: str | None = None
    endpoint_id: str | None = None
    error: str | None = None
    failures_count: int = 0
    total_duration_ms: int | None = None

    @property
    def done(self) -> bool:
        return self.status in SUCCESS_STATUSES or self.status in FAILURE_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES


@dataclass(frozen=True)
class Endpoint:
    id: str
    branch_id: str
    type: str
    host: str
    current_state: str


@dataclass(frozen=True)
class Database:
    name: str
    owner_name: str


@dataclass(frozen=True)
class Role:
    name: str


@dataclass(frozen=True)
class BranchChange:
    """What a mutating branch call answers: the branch and the operations it started."""

    branch: Branch
    operations: tuple[Operation, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
