"""A small, typed client for the Neon API v2 (only the calls Lifeguard needs).

Retries (tenacity, exponential backoff with jitter, at most `max_attempts` sends):

* 423, 429 and 503 are retried for every request: Neon did not act on it. A
  `Retry-After` header (seconds or an HTTP date) is honoured, capped at
  `MAX_RETRY_AFTER` seconds.
* A failure before the request could have left (`httpx.ConnectError`,
  `ConnectTimeout`, `PoolTimeout`) is retried for every request.
* Other 5xx, timeouts and dropped connections mean the answer was lost and Neon may
  have acted. GET, PATCH and DELETE are resent. `create_branch` first looks the branch
  up by name and returns it if it exists (operations unknown: an empty tuple; use
  `wait_for_branch_ready`), and only sends the create again if it does not. The other
  POSTs (restore, set as default, create endpoint) are not resent: `NeonUnreachable`
  says the outcome is unknown and the caller reconciles.

Secrets (the API key, role passwords, connection URIs) never go into a message or a
log line.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from bot.neon.errors import (
    NeonAuthError,
    NeonConflict,
    NeonError,
    NeonLocked,
    NeonNotFound,
    NeonOperationFailed,
    NeonOperationTimeout,
    NeonPermissionError,
    NeonRateLimited,
    NeonRequestRejected,
    NeonServerError,
    NeonUnreachable,
)
from bot.neon.models import (
    FAILURE_STATUSES,
    Branch,
    BranchChange,
    Database,
    Endpoint,
    Operation,
    Project,
    Role,
)

DEFAULT_BASE_URL = "https://console.neon.tech/api/v2"
MAX_RETRY_AFTER = 60.0
FIRST_POLL_SECONDS = 0.1
QUICK_POLL_CEILING = 0.5
QUICK_POLL_SECONDS = 10.0
"""Longest wait, in seconds, that a `Retry-After` header can impose between two sends."""

RETRY_ALWAYS_STATUSES = frozenset({423, 429, 503})
OPERATIONS_PAGE_SIZE = 1000

logger = logging.getLogger("lifeguard.neon")

_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_URI_WITH_PASSWORD = re.compile(r"(?i)\b(postgres(?:ql)?://)[^@\s/]*@")


def _version() -> str:
    try:
        return metadata.version("lifeguard")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"lifeguard/{_version()}"


# --------------------------------------------------------------------------- helpers


def format_datetime(value: datetime, *, whole_seconds: bool = False) -> str:
    """RFC 3339 in UTC with a `Z`: `2026-01-13T14:25:00Z` (fraction only when non-zero)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone; pass a timezone-aware datetime")
    value = value.astimezone(UTC)
    if whole_seconds or value.microsecond == 0:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(value: Any) -> datetime | None:
    """An RFC 3339 string as a timezone-aware UTC datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _seg(value: str) -> str:
    """One path segment, percent-encoded."""
    if not value:
        raise ValueError("an identifier in a Neon API path may not be empty")
    return quote(value, safe="")


class _Malformed(Exception):
    pass


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{what} is not a list")
    return [_obj(item, f"an item of {what}") for item in value]


def _req_str(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        raise _Malformed(f"{what} has no {key}")
    return str(value)


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None or value == "" else str(value)


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _req_int(data: dict[str, Any], key: str, what: str) -> int:
    value = _opt_int(data, key)
    if value is None:
        raise _Malformed(f"{what} has no {key}")
    return value


def _req_dt(data: dict[str, Any], key: str, what: str) -> datetime:
    value = parse_datetime(data.get(key))
    if value is None:
        raise _Malformed(f"{what} has no readable {key}")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    return data.get(key) is True


# --------------------------------------------------------------------------- parsing


def parse_project(data: dict[str, Any]) -> Project:
    what = "the project"
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    quota = settings.get("quota") if isinstance(settings.get("quota"), dict) else {}
    owner = data.get("owner") if isinstance(data.get("owner"), dict) else {}
    return Project(
        id=_req_str(data, "id", what),
        name=str(data.get("name") or data.get("id")),
        region_id=_req_str(data, "region_id", what),
        pg_version=_req_int(data, "pg_version", what),
        history_retention_seconds=_req_int(data, "history_retention_seconds", what),
        created_at=_req_dt(data, "created_at", what),
        branch_logical_size_limit_bytes=_opt_int(data, "branch_logical_size_limit_bytes"),
        synthetic_storage_size=_opt_int(data, "synthetic_storage_size"),
        quota=dict(quota),
        branches_limit=_opt_int(owner, "branches_limit"),
    )


def parse_branch(data: dict[str, Any], project_id: str = "") -> Branch:
    what = "a branch"
    branch_id = _req_str(data, "id", what)
    what = f"branch {branch_id}"
    created_by = data.get("created_by") if isinstance(data.get("created_by"), dict) else {}
    created_at = _req_dt(data, "created_at", what)
    return Branch(
        id=branch_id,
        project_id=_opt_str(data, "project_id") or project_id,
        name=_req_str(data, "name", what),
        current_state=_req_str(data, "current_state", what),
        default=_bool(data, "default") or _bool(data, "primary"),
        protected=_bool(data, "protected"),
        created_at=created_at,
        updated_at=parse_datetime(data.get("updated_at")) or created_at,
        parent_id=_opt_str(data, "parent_id"),
        parent_timestamp=parse_datetime(data.get("parent_timestamp")),
        parent_lsn=_opt_str(data, "parent_lsn"),
        logical_size=_opt_int(data, "logical_size"),
        expires_at=parse_datetime(data.get("expires_at")),
        created_by_name=_opt_str(created_by, "name"),
        restored_from=_opt_str(data, "restored_from"),
        restored_as=_opt_str(data, "restored_as"),
    )


def parse_operation(data: dict[str, Any]) -> Operation:
    what = "an operation"
    op_id = _req_str(data, "id", what)
    what = f"operation {op_id}"
    created_at = _req_dt(data, "created_at", what)
    return Operation(
        id=op_id,
        action=_req_str(data, "action", what),
        status=_req_str(data, "status", what),
        created_at=created_at,
        updated_at=parse_datetime(data.get("updated_at")) or created_at,
        branch_id=_opt_str(data, "branch_id"),
        endpoint_id=_opt_str(data, "endpoint_id"),
        error=_opt_str(data, "error"),
        failures_count=_opt_int(data, "failures_count") or 0,
        total_duration_ms=_opt_int(data, "total_duration_ms"),
    )


def parse_endpoint(data: dict[str, Any]) -> Endpoint:
    what = "an endpoint"
    endpoint_id = _req_str(data, "id", what)
    what = f"endpoint {endpoint_id}"
    return Endpoint(
        id=endpoint_id,
        branch_id=_req_str(data, "branch_id", what),
        type=_req_str(data, "type", what),
        host=_req_str(data, "host", what),
        current_state=_req_str(data, "current_state", what),
    )


def parse_database(data: dict[str, Any]) -> Database:
    return Database(name=_req_str(data, "name", "a database"),
                    owner_name=_opt_str(data, "owner_name") or "")


def parse_role(data: dict[str, Any]) -> Role:
    return Role(name=_req_str(data, "name", "a role"))


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Call:
    method: str
    path: str  # relative to the base URL, already encoded
    doing: str  # "create branch 'x'": completes "could not …"
    subject: str  # what a 404 means is missing: "branch br-x"
    idempotent: bool
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None


class _Transient(Exception):
    """One failed attempt that may be retried."""

    def __init__(self, *, response: httpx.Response | None = None,
                 reason: str | None = None, cause: BaseException | None = None,
                 retry_after: float | None = None, outcome_unknown: bool = False) -> None:
        super().__init__(reason or (f"HTTP {response.status_code}" if response else "failed"))
        self.response = response
        self.reason = reason
        self.cause = cause
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


@dataclass(frozen=True)
class _Recovered:
    value: BranchChange


def _transport_reason(exc: httpx.TransportError, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection timed out after {timeout:g}s"
    if isinstance(exc, httpx.PoolTimeout):
        return "no free connection in the pool"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, httpx.RemoteProtocolError):
        detail = str(exc)
        return f"the connection closed before an answer ({detail})" if detail else \
            "the connection closed before an answer"
    detail = str(exc).strip()
    return detail or type(exc).__name__


class NeonClient:
    """The Neon API v2 for one project. Thread-safe as far as httpx.Client is."""

    def __init__(self, api_key: str, project_id: str, *, base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 30.0, max_attempts: int = 6, operation_timeout: float = 300.0,
                 poll_interval: float = 1.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 backoff_initial: float = 0.5, backoff_max: float = 15.0) -> None:
        if not api_key:
            raise ValueError("a Neon API key is required")
        if not project_id:
            raise ValueError("a Neon project id is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.project_id = project_id
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.operation_timeout = operation_timeout
        self.poll_interval = poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._api_key = api_key
        self._sleep_fn = sleep
        self._slept = 0.0
        self._host = httpx.URL(self.base_url).netloc.decode("ascii", "replace")
        self._backoff = (wait_exponential(multiplier=backoff_initial, max=backoff_max)
                         + wait_random(0, backoff_initial))
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"NeonClient(project_id={self.project_id!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NeonClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ project

    def get_project(self) -> Project:
        call = self._get(f"projects/{_seg(self.project_id)}", "read the project",
                         f"project {self.project_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return parse_project(_obj(body.get("project"), "project"))

    # ------------------------------------------------------------------ branches

    def list_branches(self, search: str | None = None) -> list[Branch]:
        """Every branch (matching `search`, a partial name or id), following pagination."""
        branches: dict[str, Branch] = {}
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, str] = {"sort_by": "created_at", "sort_order": "desc"}
            if search:
                params["search"] = search
            if cursor:
                params["cursor"] = cursor
            call = self._get(self._project_path("branches"), "list branches",
                             f"project {self.project_id}", params)
            body = self._json(call, self._send(call))
            with self._reading(call):
                page = [parse_branch(item, self.project_id)
                        for item in _list(body.get("branches"), "branches")]
            for branch in page:
                branches.setdefault(branch.id, branch)
            pagination = body.get("pagination")
            cursor = None
            if isinstance(pagination, dict):
                cursor = _opt_str(pagination, "next")
            if not page or not cursor or cursor in seen:
                return list(branches.values())
            seen.add(cursor)

    def count_branches(self) -> int:
        call = self._get(self._project_path("branches", "count"), "count branches",
                         f"project {self.project_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return _req_int(body, "count", "the answer")

    def get_branch(self, branch_id: str) -> Branch:
        call = self._get(self._project_path("branches", branch_id), f"read branch {branch_id}",
                         f"branch {branch_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return parse_branch(_obj(body.get("branch"), "branch"), self.project_id)

    def find_branch_by_name(self, name: str) -> Branch | None:
        """The branch named exactly `name`, or None."""
        for branch in self.list_branches(search=name):
            if branch.name == name:
                return branch
        return None

    def default_branch(self) -> Branch:
        for branch in self.list_branches():
            if branch.default:
                return branch
        raise NeonNotFound(f"Neon lists no default branch in project {self.project_id}.",
                           status=None)

    def create_branch(self, name: str, *, parent_id: str | None = None,
                      parent_timestamp: datetime | None = None,
                      expires_at: datetime | None = None, protected: bool = False,
                      with_endpoint: bool = False) -> BranchChange:
        """Create `name` (from the default branch unless `parent_id`). If Neon's answer is
        lost and a branch with that name exists, that branch is returned with no
        operations: wait for it with `wait_for_branch_ready`."""
        if not name:
            raise ValueError("a branch name is required")
        branch: dict[str, Any] = {"name": name}
        if parent_id:
            branch["parent_id"] = parent_id
        if parent_timestamp is not None:
            branch["parent_timestamp"] = format_datetime(parent_timestamp)
        if expires_at is not None:
            branch["expires_at"] = format_datetime(expires_at, whole_seconds=True)
        if protected:
            branch["protected"] = True
        body: dict[str, Any] = {"branch": branch}
        if with_endpoint:
            body["endpoints"] = [{"type": "read_write"}]
        call = _Call("POST", self._project_path("branches"), f"create branch '{name}'",
                     f"parent branch {parent_id}" if parent_id else f"project {self.project_id}",
                     idempotent=False, body=body)

        def recover() -> BranchChange | None:
            found = self.find_branch_by_name(name)
            if found is None:
                logger.info("Neon's answer to creating branch %r was lost and no such branch "
                            "exists: sending the create again", name)
                return None
            logger.info("Neon's answer to creating branch %r was lost, but branch %s exists: "
                        "not sending the create again", name, found.id)
            return BranchChange(branch=found)

        result = self._send(call, recover=recover)
        if isinstance(result, _Recovered):
            return result.value
        return self._branch_change(call, self._json(call, result))

    def update_branch(self, branch_id: str, *, name: str | None = None,
                      protected: bool | None = None,
                      expires_at: datetime | None = None) -> BranchChange:
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if protected is not None:
            changes["protected"] = protected
        if expires_at is not None:
            changes["expires_at"] = format_datetime(expires_at, whole_seconds=True)
        if not changes:
            raise ValueError("update_branch needs at least one of name, protected, expires_at")
        call = _Call("PATCH", self._project_path("branches", branch_id),
                     f"update branch {branch_id}", f"branch {branch_id}", idempotent=True,
                     body={"branch": changes})
        return self._branch_change(call, self._json(call, self._send(call)))

    def delete_branch(self, branch_id: str) -> BranchChange:
        """Delete a branch. NeonNotFound (status 404 or 204) when it does not exist or is
        already deleted, which is also what a resent delete whose first answer was lost
        sees: callers deleting on purpose may treat it as done."""
        call = _Call("DELETE", self._project_path("branches", branch_id),
                     f"delete branch {branch_id}", f"branch {branch_id}", idempotent=True)
        response = self._send(call)
        assert isinstance(response, httpx.Response)
        if response.status_code == 204:
            raise NeonNotFound(
                f"Neon has no branch {branch_id} in project {self.project_id} "
                "(it does not exist or is already deleted).",
                status=204, request_id=self._request_id(response))
        return self._branch_change(call, self._json(call, response))

    def restore_branch(self, branch_id: str, *, source_branch_id: str,
                       source_timestamp: datetime | None = None,
                       preserve_under_name: str | None = None) -> BranchChange:
        """Replace `branch_id`'s data with `source_branch_id`'s state (at `source_timestamp`,
        or its head). `preserve_under_name` keeps the replaced state as a new branch."""
        body: dict[str, Any] = {"source_branch_id": source_branch_id}
        if source_timestamp is not None:
            body["source_timestamp"] = format_datetime(source_timestamp)
        if preserve_under_name:
            body["preserve_under_name"] = preserve_under_name
        call = _Call("POST", self._project_path("branches", branch_id, "restore"),
                     f"restore branch {branch_id} from {source_branch_id}",
                     f"branch {branch_id} or {source_branch_id}", idempotent=False, body=body)
        return self._branch_change(call, self._json(call, self._send(call)))

    def set_default_branch(self, branch_id: str) -> BranchChange:
        call = _Call("POST", self._project_path("branches", branch_id, "set_as_default"),
                     f"make branch {branch_id} the default", f"branch {branch_id}",
                     idempotent=False)
        return self._branch_change(call, self._json(call, self._send(call)))

    def wait_for_branch_ready(self, branch_id: str, timeout: float | None = None) -> Branch:
        """Poll the branch (quickly at first, then every `poll_interval`) until its
        current_state is `ready`."""
        limit = self.operation_timeout if timeout is None else timeout
        started, slept = time.monotonic(), self._slept
        delays = self._poll_delays()
        while True:
            branch = self.get_branch(branch_id)
            if branch.current_state == "ready":
                return branch
            remaining = limit - max(time.monotonic() - started, self._slept - slept)
            if remaining <= 0:
                raise NeonOperationTimeout(
                    f"Branch {branch.name} ({branch.id}) is still {branch.current_state} after "
                    f"{limit:g}s; Neon may still be working on it.")
            self._sleep(min(next(delays), remaining))

    # ------------------------------------------------------------------ databases, roles

    def list_databases(self, branch_id: str) -> list[Database]:
        call = self._get(self._project_path("branches", branch_id, "databases"),
                         f"list the databases of branch {branch_id}", f"branch {branch_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return [parse_database(item) for item in _list(body.get("databases"), "databases")]

    def list_roles(self, branch_id: str) -> list[Role]:
        call = self._get(self._project_path("branches", branch_id, "roles"),
                         f"list the roles of branch {branch_id}", f"branch {branch_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return [parse_role(item) for item in _list(body.get("roles"), "roles")]

    def reveal_role_password(self, branch_id: str, role_name: str) -> str:
        """The role's password. A secret: never log it."""
        call = self._get(self._project_path("branches", branch_id, "roles", role_name,
                                            "reveal_password"),
                         f"reveal the password of role {role_name} on branch {branch_id}",
                         f"role {role_name} on branch {branch_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return _req_str(body, "password", "the answer")

    # ------------------------------------------------------------------ endpoints

    def list_endpoints(self) -> list[Endpoint]:
        call = self._get(self._project_path("endpoints"), "list compute endpoints",
                         f"project {self.project_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return [parse_endpoint(item) for item in _list(body.get("endpoints"), "endpoints")]

    def create_endpoint(self, branch_id: str,
                        type: str = "read_write") -> tuple[Endpoint, tuple[Operation, ...]]:
        call = _Call("POST", self._project_path("endpoints"),
                     f"add a {type} compute to branch {branch_id}", f"branch {branch_id}",
                     idempotent=False, body={"endpoint": {"branch_id": branch_id, "type": type}})
        body = self._json(call, self._send(call))
        with self._reading(call):
            return (
                parse_endpoint(_obj(body.get("endpoint"), "endpoint")),
                tuple(parse_operation(item)
                      for item in _list(body.get("operations"), "operations")),
            )

    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str:
        """A postgresql:// URI with the password in it. A secret: never log it.
        `endpoint_id` picks a compute; without it Neon uses the branch's read-write one."""
        params = {"branch_id": branch_id, "database_name": database_name,
                  "role_name": role_name, "pooled": "true" if pooled else "false"}
        if endpoint_id is not None:
            params["endpoint_id"] = endpoint_id
        call = self._get(self._project_path("connection_uri"),
                         f"give a connection URI for database {database_name} on branch "
                         f"{branch_id}", f"database {database_name} or role {role_name} on "
                         f"branch {branch_id}", params)
        body = self._json(call, self._send(call))
        with self._reading(call):
            return _req_str(body, "uri", "the answer")

    # ------------------------------------------------------------------ operations

    def get_operation(self, operation_id: str) -> Operation:
        call = self._get(self._project_path("operations", operation_id),
                         f"read operation {operation_id}", f"operation {operation_id}")
        body = self._json(call, self._send(call))
        with self._reading(call):
            return parse_operation(_obj(body.get("operation"), "operation"))

    def list_operations(self, limit: int | None = None) -> list[Operation]:
        """The project's operations, newest first: all of them, or the first `limit`."""
        if limit is not None and limit < 1:
            return []
        operations: dict[str, Operation] = {}
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            wanted = OPERATIONS_PAGE_SIZE if limit is None else \
                min(OPERATIONS_PAGE_SIZE, limit - len(operations))
            params = {"limit": str(wanted)}
            if cursor:
                params["cursor"] = cursor
            call = self._get(self._project_path("operations"), "list operations",
                             f"project {self.project_id}", params)
            body = self._json(call, self._send(call))
            with self._reading(call):
                page = [parse_operation(item)
                        for item in _list(body.get("operations"), "operations")]
            for operation in page:
                operations.setdefault(operation.id, operation)
                if limit is not None and len(operations) >= limit:
                    return list(operations.values())
            pagination = body.get("pagination")
            cursor = _opt_str(pagination, "cursor") if isinstance(pagination, dict) else None
            if not page or not cursor or cursor in seen:
                return list(operations.values())
            seen.add(cursor)

    def wait_for_operations(self, operations: Iterable[Operation | str], *,
                            timeout: float | None = None) -> list[Operation]:
        """Poll each unfinished operation every `poll_interval` until all are finished or
        skipped; returns them in the order given. NeonOperationFailed as soon as one ended
        failed, error or cancelled; NeonOperationTimeout when `timeout` (default
        `operation_timeout`) seconds pass first."""
        order: list[str] = []
        state: dict[str, Operation | None] = {}
        for item in operations:
            op_id = item if isinstance(item, str) else item.id
            if op_id not in state:
                order.append(op_id)
            if isinstance(item, Operation) and (state.get(op_id) is None or item.done):
                state[op_id] = item
            else:
                state.setdefault(op_id, None)
        limit = self.operation_timeout if timeout is None else timeout
        started, slept = time.monotonic(), self._slept
        delays = self._poll_delays()
        while True:
            for op_id in order:
                current = state[op_id]
                if current is None or not current.done:
                    state[op_id] = self.get_operation(op_id)
            known = [op for op in (state[op_id] for op_id in order) if op is not None]
            failed = [op for op in known if op.status in FAILURE_STATUSES]
            if failed:
                raise self._operation_failed(failed)
            if len(known) == len(order) and all(op.succeeded for op in known):
                return known
            remaining = limit - max(time.monotonic() - started, self._slept - slept)
            if remaining <= 0:
                running = ", ".join(f"{op.action} {op.id} ({op.status})"
                                    for op in known if not op.done)
                raise NeonOperationTimeout(
                    f"Neon operations still unfinished after {limit:g}s: {running}. They may "
                    "still complete; check again later.")
            self._sleep(min(next(delays), remaining))

    def _poll_delays(self) -> Iterator[float]:
        """Most operations take a second or two: poll quickly at first (0.1 s, doubling to
        at most 0.5 s) for QUICK_POLL_SECONDS, so a finished operation is noticed within a
        fraction of a second, then every `poll_interval` (about once a second, as Neon asks)."""
        delay, waited = min(FIRST_POLL_SECONDS, self.poll_interval), 0.0
        while True:
            yield delay
            waited += delay
            ceiling = QUICK_POLL_CEILING if waited < QUICK_POLL_SECONDS else self.poll_interval
            delay = min(delay * 2, ceiling, self.poll_interval)

    # ------------------------------------------------------------------ internals

    def _project_path(self, *segments: str) -> str:
        return "/".join(["projects", _seg(self.project_id), *(_seg(s) for s in segments)])

    def _get(self, path: str, doing: str, subject: str,
             params: dict[str, str] | None = None) -> _Call:
        return _Call("GET", path, doing, subject, idempotent=True, params=params)

    def _sleep(self, seconds: float) -> None:
        self._slept += seconds
        self._sleep_fn(seconds)

    def _wait(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER)
        return float(self._backoff(retry_state))

    def _send(self, call: _Call,
              recover: Callable[[], BranchChange | None] | None = None
              ) -> httpx.Response | _Recovered:
        """Send `call` with retries; the successful response, or what `recover` found."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda rs: logger.debug(
                "Neon %s %s: retrying in %.2fs", call.method, call.path,
                rs.next_action.sleep if rs.next_action else 0.0),
        )
        lost_before = [False]
        result: httpx.Response | _Recovered | None = None
        try:
            for attempt in retrying:
                with attempt:
                    result = self._attempt(call, attempt.retry_state.attempt_number,
                                           recover, lost_before)
        except _Transient as failure:
            self._raise_final(call, failure, lost_before=lost_before[0])
        assert result is not None
        return result

    def _attempt(self, call: _Call, number: int,
                 recover: Callable[[], BranchChange | None] | None,
                 lost_before: list[bool]) -> httpx.Response | _Recovered:
        local_id = str(uuid.uuid4())
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.body,
                headers={"X-Request-ID": local_id})
        except httpx.TransportError as exc:
            reason = _transport_reason(exc, self.timeout)
            logger.debug("Neon %s %s -> %s (request id %s, attempt %d/%d)", call.method,
                         call.path, self._redact(reason), local_id, number, self.max_attempts)
            if isinstance(exc, _NOT_SENT_ERRORS) or call.idempotent:
                raise _Transient(reason=reason, cause=exc) from exc
            lost_before[0] = True
            return self._answer_lost(call, reason, exc, recover, local_id=local_id)

        status = response.status_code
        request_id = self._request_id(response)
        if request_id is None and status >= 400:
            request_id = self._error_details(response).get("request_id")
        request_id = request_id or local_id
        logger.debug("Neon %s %s -> %d (request id %s, attempt %d/%d)", call.method,
                     call.path, status, request_id, number, self.max_attempts)
        if status < 400:
            return response
        if status in RETRY_ALWAYS_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _Transient(response=response, retry_after=retry_after)
        if status >= 500:
            if call.idempotent:
                raise _Transient(response=response)
            lost_before[0] = True
            return self._answer_lost(call, f"Neon answered {status}", None, recover,
                                     response=response, local_id=request_id)
        if status == 409 and lost_before[0] and recover is not None:
            # An earlier send whose answer was lost may have taken the name after all.
            found = recover()
            if found is not None:
                return _Recovered(found)
        self._raise_for(call, response)

    def _answer_lost(self, call: _Call, reason: str, cause: BaseException | None,
                     recover: Callable[[], BranchChange | None] | None,
                     response: httpx.Response | None = None,
                     local_id: str | None = None) -> _Recovered:
        """A non-idempotent request may have been carried out but its answer is lost."""
        if recover is not None:
            found = recover()
            if found is not None:
                return _Recovered(found)
            raise _Transient(reason=reason, cause=cause, response=response,
                             outcome_unknown=True)
        details = self._error_details(response) if response is not None else {}
        neon_says = f" Neon said: {details['message']}" if details.get("message") else ""
        raise NeonUnreachable(
            self._redact(
                f"Lost Neon's answer while trying to {call.doing} at {self._host} ({reason}); "
                "the outcome is unknown, so the request was not sent again. Check the "
                f"project's state before retrying.{neon_says}"),
            status=response.status_code if response is not None else None,
            code=details.get("code"), request_id=details.get("request_id") or local_id,
        ) from cause

    def _raise_final(self, call: _Call, failure: _Transient, *, lost_before: bool) -> NoReturn:
        attempts = f"after {self.max_attempts} attempt{'s' if self.max_attempts != 1 else ''}"
        response = failure.response
        if lost_before and not failure.outcome_unknown:
            attempts += ("; the answer to an earlier attempt was lost, so it may still have "
                         "been carried out")
        if response is None or failure.outcome_unknown:
            reason = failure.reason or (f"Neon answered {response.status_code}"
                                        if response is not None else "no answer")
            message = f"Could not reach Neon at {self._host}: {reason} ({attempts})."
            if failure.outcome_unknown:
                message += (f" The last attempt to {call.doing} may have been carried out; "
                            "the outcome is unknown.")
            raise NeonUnreachable(self._redact(message),
                                  status=response.status_code if response is not None else None
                                  ) from failure.cause
        status = response.status_code
        details = self._error_details(response)
        neon_says = f" Neon said: {details['message']}" if details.get("message") else ""
        kwargs: dict[str, Any] = {"status": status, "code": details.get("code"),
                                  "request_id": details.get("request_id")}
        if status == 423:
            raise NeonLocked(self._redact(
                "Neon is still busy with another operation on this project, so it could not "
                f"{call.doing} (423, {attempts}). Try again in a minute.{neon_says}"), **kwargs)
        if status == 429:
            raise NeonRateLimited(self._redact(
                f"Neon is limiting the rate of requests and would not {call.doing} "
                f"(429, {attempts}). Try again in a minute.{neon_says}"), **kwargs)
        raise NeonServerError(self._redact(
            f"Neon had a server error and could not {call.doing} ({status}, {attempts})."
            f"{neon_says}"), **kwargs)

    def _raise_for(self, call: _Call, response: httpx.Response) -> NoReturn:
        status = response.status_code
        details = self._error_details(response)
        neon_says = f" Neon said: {details['message']}" if details.get("message") else ""
        kwargs: dict[str, Any] = {"status": status, "code": details.get("code"),
                                  "request_id": details.get("request_id")}
        cls: type[NeonError]
        if status == 401:
            cls, message = NeonAuthError, (
                "Neon refused the API key (401). Check NEON_API_KEY: it may be revoked or "
                "mistyped.")
        elif status == 403:
            cls, message = NeonPermissionError, (
                f"The Neon API key may not {call.doing} in this project ({self.project_id}) "
                "(403). Use a key that can manage the project's branches.")
        elif status == 404 and call.subject == f"project {self.project_id}":
            cls, message = NeonNotFound, (
                f"Neon found no project {self.project_id} (404), so it could not "
                f"{call.doing}. Check NEON_PROJECT_ID, and that the API key can see the "
                "project.")
        elif status == 404:
            cls, message = NeonNotFound, (
                f"Neon found no {call.subject} in project {self.project_id} (404), so it "
                f"could not {call.doing}.")
        elif status == 409:
            cls, message = NeonConflict, (
                f"Neon could not {call.doing}: it conflicts with the project's current state "
                "(409).")
        elif status == 423:
            cls, message = NeonLocked, (
                "Neon is still busy with another operation on this project, so it could not "
                f"{call.doing} (423).")
        elif status == 429:
            cls, message = NeonRateLimited, (
                f"Neon is limiting the rate of requests and would not {call.doing} (429).")
        elif status >= 500:
            cls, message = NeonServerError, (
                f"Neon had a server error and could not {call.doing} ({status}).")
        else:
            cls, message = NeonRequestRejected, f"Neon refused to {call.doing} ({status})."
        raise cls(self._redact(message + neon_says), **kwargs)

    def _request_id(self, response: httpx.Response) -> str | None:
        for header in ("x-neon-ret-request-id", "x-request-id"):
            value = response.headers.get(header)
            if value:
                return value
        return None

    def _error_details(self, response: httpx.Response) -> dict[str, str]:
        details: dict[str, str] = {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("code", "message", "request_id"):
                value = body.get(key)
                if value not in (None, ""):
                    details[key] = self._redact(str(value))
        if "request_id" not in details:
            request_id = self._request_id(response)
            if request_id:
                details["request_id"] = request_id
        return details

    def _json(self, call: _Call, response: httpx.Response | _Recovered) -> dict[str, Any]:
        assert isinstance(response, httpx.Response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise NeonServerError(
                f"Neon's answer to the request to {call.doing} is not a JSON object "
                f"({response.status_code}).", status=response.status_code,
                request_id=self._request_id(response))
        return body

    @contextmanager
    def _reading(self, call: _Call) -> Iterator[None]:
        """Turn a malformed answer into a NeonServerError naming the request."""
        try:
            yield
        except _Malformed as exc:
            raise NeonServerError(
                f"Neon's answer to the request to {call.doing} could not be read: {exc}.",
            ) from None

    def _branch_change(self, call: _Call, body: dict[str, Any]) -> BranchChange:
        with self._reading(call):
            return BranchChange(
                branch=parse_branch(_obj(body.get("branch"), "branch"), self.project_id),
                operations=tuple(parse_operation(item)
                                 for item in _list(body.get("operations"), "operations")),
                endpoints=tuple(parse_endpoint(item)
                                for item in _list(body.get("endpoints"), "endpoints")),
            )

    def _operation_failed(self, failed: list[Operation]) -> NeonOperationFailed:
        first = failed[0]
        where = f" on branch {first.branch_id}" if first.branch_id else ""
        error = f": {first.error}" if first.error else " (Neon gave no error message)"
        more = f" ({len(failed) - 1} more operation(s) failed too)" if len(failed) > 1 else ""
        return NeonOperationFailed(self._redact(
            f"Neon operation {first.action}{where} ended {first.status}{error}{more} "
            f"[operation {first.id}]."))

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return _URI_WITH_PASSWORD.sub(r"\1***@", text)
