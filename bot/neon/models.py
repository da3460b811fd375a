"""Typed results of the Neon API v2, as the client returns them. Field names follow the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SUCCESS_STATUSES = frozenset({"finished", "skipped"})
FAILURE_STATUSES = frozenset({"failed", "error", "cancelled"})


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    region_id: str
    pg_version: int
    history_retention_seconds: int
    created_at: datetime
    branch_logical_size_limit_bytes: int | None = None
    synthetic_storage_size: int | None = None
    quota: dict[str, Any] = field(default_factory=dict)  # settings.quota, as Neon sends it
    branches_limit: int | None = None  # owner.branches_limit: the plan's branch limit


@dataclass(frozen=True)
class Branch:
    id: str
    project_id: str
    name: str
    current_state: str
    default: bool
    protected: bool
    created_at: datetime
    updated_at: datetime
    parent_id: str | None = None
    parent_timestamp: datetime | None = None
    parent_lsn: str | None = None
    logical_size: int | None = None
    expires_at: datetime | None = None
    created_by_name: str | None = None
    restored_from: str | None = None
    restored_as: str | None = None


@dataclass(frozen=True)
class Operation:
    id: str
    action: str
    status: str
    created_at: datetime
    updated_at: datetime
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
