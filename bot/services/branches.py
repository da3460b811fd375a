"""Shared steps on Neon branches: the part of the Neon client backups and exports make and
delete branches through, reaching a branch to verify it (restores and drills), and making
audit details JSON-safe."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from bot.domain.errors import NotAllowed
from bot.neon.models import Branch, BranchChange, Database, Endpoint, Operation, Project

ENDPOINT_WAIT_SECONDS = 30.0


class BranchLifecycle(Protocol):
    """The part of the Neon client that makes a branch, waits for it and deletes it: what
    backups and exports both use."""

    def default_branch(self) -> Branch: ...
    def get_branch(self, branch_id: str) -> Branch: ...
    def find_branch_by_name(self, name: str) -> Branch | None: ...
    def create_branch(self, name: str, *, parent_id: str | None = None,
                      parent_timestamp: datetime | None = None,
                      expires_at: datetime | None = None, protected: bool = False,
                      with_endpoint: bool = False) -> BranchChange: ...
    def delete_branch(self, branch_id: str) -> BranchChange: ...
    def wait_for_operations(self, operations: Any, *,
                            timeout: float | None = None) -> list[Operation]: ...
    def wait_for_branch_ready(self, branch_id: str, timeout: float | None = None) -> Branch: ...


class BranchAccess(Protocol):
    """The part of the Neon client both restores and drills use."""

    def get_project(self) -> Project: ...
    def default_branch(self) -> Branch: ...
    def get_branch(self, branch_id: str) -> Branch: ...
    def find_branch_by_name(self, name: str) -> Branch | None: ...
    def create_branch(self, name: str, *, parent_id: str | None = None,
                      parent_timestamp: datetime | None = None,
                      expires_at: datetime | None = None, protected: bool = False,
                      with_endpoint: bool = False) -> BranchChange: ...
    def wait_for_branch_ready(self, branch_id: str, timeout: float | None = None) -> Branch: ...
    def list_endpoints(self) -> list[Endpoint]: ...
    def create_endpoint(self, branch_id: str,
                        type: str = "read_write") -> tuple[Endpoint, tuple[Operation, ...]]: ...
    def wait_for_operations(self, operations: Any, *,
                            timeout: float | None = None) -> list[Operation]: ...
    def list_databases(self, branch_id: str) -> list[Database]: ...
    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str: ...


def branch_connection_uri(neon: BranchAccess, branch_id: str) -> str:
    """The branch's first database, as its owner. Never logged or shown. A branch without
    compute (a backup) gets a read-only endpoint first, so it can be read but not changed;
    it is looked up before it is added, so a retry adds none twice."""
    endpoints = [e for e in neon.list_endpoints() if e.branch_id == branch_id]
    if endpoints:
        endpoint = min(endpoints, key=lambda e: e.type != "read_write")
    else:
        endpoint, operations = neon.create_endpoint(branch_id, "read_only")
        neon.wait_for_operations(list(operations), timeout=ENDPOINT_WAIT_SECONDS)
    databases = neon.list_databases(branch_id)
    if not databases:
        raise NotAllowed("The branch has no database to verify.")
    database = databases[0]
    return neon.connection_uri(branch_id, database.name, database.owner_name,
                               endpoint_id=endpoint.id)


def jsonable(value: Any) -> Any:
    """Audit details as JSON: datetimes as RFC 3339, enums as their values."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    return getattr(value, "value", value)
