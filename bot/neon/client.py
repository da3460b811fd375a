"""The Neon API v2 for one project: the calls Lifeguard needs, each answer parsed by
pydantic into `bot.neon.models` (envelopes in `bot.neon.answers`), and waiting for
operations. Sending, retrying and error typing are `bot.neon.sender`'s.

A create whose answer was lost is not sent twice: `create_branch` looks the branch up by
name first, and returns it with no operations when it exists (use `wait_for_branch_ready`).
The other POSTs (restore, create endpoint) are not resent after a lost answer:
`NeonUnreachable` with `outcome_unknown` says so, and the caller reconciles.

Errors carry facts (`bot.neon.errors`); `bot.services.neon_errors` words them for people.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from bot.neon.answers import (
    BranchesCountResponse,
    BranchesResponse,
    BranchResponse,
    ConnectionURIResponse,
    DatabaseOperations,
    DatabasesResponse,
    EndpointOperations,
    EndpointsResponse,
    OperationResponse,
    OperationsResponse,
    ProjectResponse,
    RolesResponse,
)
from bot.neon.errors import NeonNotFound, NeonOperationFailed, NeonOperationTimeout
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
from bot.neon.sender import Observer, Request, Sender

DEFAULT_BASE_URL = "https://console.neon.tech/api/v2"
OPERATIONS_PAGE_SIZE = 1000
FIRST_POLL_SECONDS = 0.1
QUICK_POLL_CEILING = 0.5
QUICK_POLL_SECONDS = 10.0

logger = logging.getLogger("lifeguard.neon")

T = TypeVar("T")
Item = TypeVar("Item")


def _version() -> str:
    try:
        return metadata.version("lifeguard")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"lifeguard/{_version()}"


def format_datetime(value: datetime, *, whole_seconds: bool = False) -> str:
    """RFC 3339 in UTC with a `Z`: `2026-01-13T14:25:00Z` (fraction only when non-zero)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone; pass a timezone-aware datetime")
    value = value.astimezone(UTC)
    if whole_seconds or value.microsecond == 0:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Page(Protocol[Item]):
    @property
    def items(self) -> list[Item]: ...
    @property
    def next_cursor(self) -> str | None: ...


class NeonClient:
    """The Neon API v2 for one project. Thread-safe as far as httpx.Client is."""

    def __init__(self, api_key: str, project_id: str, *, base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 30.0, max_attempts: int = 6, operation_timeout: float = 300.0,
                 poll_interval: float = 1.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 backoff_initial: float = 0.5, backoff_max: float = 15.0,
                 observe: Observer | None = None) -> None:
        if not api_key:
            raise ValueError("a Neon API key is required")
        if not project_id:
            raise ValueError("a Neon project id is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.project_id = project_id
        self.base_url = base_url.rstrip("/")
        self.operation_timeout = operation_timeout
        self.poll_interval = poll_interval
        self._sender = Sender(api_key, base_url=self.base_url, timeout=timeout,
                              max_attempts=max_attempts, transport=transport, sleep=sleep,
                              backoff_initial=backoff_initial, backoff_max=backoff_max,
                              user_agent=USER_AGENT, observe=observe)

    def __repr__(self) -> str:
        return f"NeonClient(project_id={self.project_id!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> NeonClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ project

    def get_project(self) -> Project:
        """GET /projects/{project_id}"""
        return self._get(ProjectResponse).project

    # ------------------------------------------------------------------ branches

    def list_branches(self, search: str | None = None) -> list[Branch]:
        """GET /projects/{project_id}/branches: every branch (matching `search`, a partial
        name or id), newest first, following pagination."""
        params = {"sort_by": "created_at", "sort_order": "desc"}
        if search:
            params["search"] = search
        branches: dict[str, Branch] = {}
        for page in self._pages(BranchesResponse, "branches", params=params):
            for branch in page.items:
                branches.setdefault(branch.id, branch)
        return list(branches.values())

    def count_branches(self) -> int:
        """GET /projects/{project_id}/branches/count"""
        return self._get(BranchesCountResponse, "branches", "count").count

    def get_branch(self, branch_id: str) -> Branch:
        """GET /projects/{project_id}/branches/{branch_id}"""
        return self._get(BranchResponse, "branches", branch_id).branch

    def find_branch_by_name(self, name: str) -> Branch | None:
        """The branch named exactly `name`, or None."""
        return next((b for b in self.list_branches(search=name) if b.name == name), None)

    def default_branch(self) -> Branch:
        for branch in self.list_branches():
            if branch.default:
                return branch
        raise NeonNotFound("the project lists no default branch",
                           request=f"GET {self._path('branches')}")

    def create_branch(self, name: str, *, parent_id: str | None = None,
                      parent_timestamp: datetime | None = None,
                      expires_at: datetime | None = None, protected: bool = False,
                      with_endpoint: bool = False) -> BranchChange:
        """POST /projects/{project_id}/branches: `name`, from the default branch unless
        `parent_id`. If Neon's answer is lost and a branch with that name exists, that
        branch is returned with no operations: wait for it with `wait_for_branch_ready`."""
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

        def find_made() -> BranchChange | None:
            found = self.find_branch_by_name(name)
            if found is None:
                logger.info("Neon's answer to creating branch %r was lost and no such branch "
                            "exists: sending the create again", name)
                return None
            logger.info("Neon's answer to creating branch %r was lost, but branch %s exists: "
                        "not sending the create again", name, found.id)
            return BranchChange(branch=found)

        return self._change(Request("POST", self._path("branches"), resend_safe=False,
                                    body=body, find_made=find_made))

    def delete_branch(self, branch_id: str) -> BranchChange:
        """DELETE /projects/{project_id}/branches/{branch_id}. NeonNotFound (status 404 or
        204) when it does not exist or is already deleted, which is also what a resent
        delete whose first answer was lost sees: callers deleting on purpose may treat it
        as done."""
        request = Request("DELETE", self._path("branches", branch_id), resend_safe=True)
        response = self._sender.answer(request)
        if response.status_code == 204:
            raise NeonNotFound("the branch does not exist or is already deleted", status=204,
                               request=str(request),
                               request_id=self._sender.request_id(response))
        return self._sender.read(request, response, BranchChange)

    def restore_branch(self, branch_id: str, *, source_branch_id: str,
                       source_timestamp: datetime | None = None,
                       preserve_under_name: str | None = None) -> BranchChange:
        """POST /projects/{project_id}/branches/{branch_id}/restore: replace `branch_id`'s
        data with `source_branch_id`'s state (at `source_timestamp`, or its head).
        `preserve_under_name` keeps the replaced state as a new branch."""
        body: dict[str, Any] = {"source_branch_id": source_branch_id}
        if source_timestamp is not None:
            body["source_timestamp"] = format_datetime(source_timestamp)
        if preserve_under_name:
            body["preserve_under_name"] = preserve_under_name
        return self._change(Request("POST", self._path("branches", branch_id, "restore"),
                                    resend_safe=False, body=body))

    def wait_for_branch_ready(self, branch_id: str, timeout: float | None = None) -> Branch:
        """Poll the branch (quickly at first, then every `poll_interval`) until its
        current_state is `ready`."""
        limit = self.operation_timeout if timeout is None else timeout
        started, slept = time.monotonic(), self._sender.slept
        delays = self._poll_delays()
        while True:
            branch = self.get_branch(branch_id)
            if branch.current_state == "ready":
                return branch
            remaining = self._remaining(limit, started, slept)
            if remaining <= 0:
                raise NeonOperationTimeout(
                    f"branch {branch.id} ({branch.name}) still {branch.current_state} "
                    f"after {limit:g}s")
            self._sender.sleep(min(next(delays), remaining))

    # ------------------------------------------------------------------ databases, roles

    def list_databases(self, branch_id: str) -> list[Database]:
        """GET /projects/{project_id}/branches/{branch_id}/databases"""
        return self._get(DatabasesResponse, "branches", branch_id, "databases").databases

    def create_database(self, branch_id: str, name: str,
                        owner_name: str) -> tuple[Database, tuple[Operation, ...]]:
        """POST /projects/{project_id}/branches/{branch_id}/databases: an empty database
        owned by `owner_name`. Not resent after a lost answer: look it up in
        `list_databases` before asking again (409 when it exists)."""
        request = Request("POST", self._path("branches", branch_id, "databases"),
                          resend_safe=False,
                          body={"database": {"name": name, "owner_name": owner_name}})
        created = self._sender.read(request, self._sender.answer(request), DatabaseOperations)
        return created.database, created.operations

    def delete_database(self, branch_id: str, name: str) -> tuple[Operation, ...]:
        """DELETE /projects/{project_id}/branches/{branch_id}/databases/{database_name}:
        the database and all it holds. A database that does not exist (404, or 204 as the
        document allows) is deleted already: no operations."""
        request = Request("DELETE", self._path("branches", branch_id, "databases", name),
                          resend_safe=True)
        try:
            response = self._sender.answer(request)
        except NeonNotFound:
            return ()
        if response.status_code == 204:
            return ()
        return self._sender.read(request, response, DatabaseOperations).operations

    def list_roles(self, branch_id: str) -> list[Role]:
        """GET /projects/{project_id}/branches/{branch_id}/roles"""
        return self._get(RolesResponse, "branches", branch_id, "roles").roles

    # ------------------------------------------------------------------ endpoints

    def list_endpoints(self) -> list[Endpoint]:
        """GET /projects/{project_id}/endpoints"""
        return self._get(EndpointsResponse, "endpoints").endpoints

    def create_endpoint(self, branch_id: str,
                        type: str = "read_write") -> tuple[Endpoint, tuple[Operation, ...]]:
        """POST /projects/{project_id}/endpoints: a compute of `type` for the branch."""
        request = Request("POST", self._path("endpoints"), resend_safe=False,
                          body={"endpoint": {"branch_id": branch_id, "type": type}})
        created = self._sender.read(request, self._sender.answer(request), EndpointOperations)
        return created.endpoint, created.operations

    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str:
        """GET /projects/{project_id}/connection_uri: a postgresql:// URI with the password
        in it. A secret: never log it. `endpoint_id` picks a compute; without it Neon uses
        the branch's read-write one."""
        params = {"branch_id": branch_id, "database_name": database_name,
                  "role_name": role_name, "pooled": "true" if pooled else "false"}
        if endpoint_id is not None:
            params["endpoint_id"] = endpoint_id
        return self._get(ConnectionURIResponse, "connection_uri", params=params).uri

    # ------------------------------------------------------------------ operations

    def get_operation(self, operation_id: str) -> Operation:
        """GET /projects/{project_id}/operations/{operation_id}"""
        return self._get(OperationResponse, "operations", operation_id).operation

    def list_operations(self, limit: int | None = None) -> list[Operation]:
        """GET /projects/{project_id}/operations: newest first, all of them or the first
        `limit`, following pagination."""
        if limit is not None and limit < 1:
            return []
        page_size = OPERATIONS_PAGE_SIZE if limit is None else min(OPERATIONS_PAGE_SIZE, limit)
        operations: dict[str, Operation] = {}
        for page in self._pages(OperationsResponse, "operations",
                                params={"limit": str(page_size)}):
            for operation in page.items:
                operations.setdefault(operation.id, operation)
                if limit is not None and len(operations) >= limit:
                    return list(operations.values())
        return list(operations.values())

    def wait_for_operations(self, operations: Iterable[Operation | str], *,
                            timeout: float | None = None) -> list[Operation]:
        """Poll each unfinished operation (quickly at first, then every `poll_interval`)
        until all are finished or skipped; returns them in the order given.
        NeonOperationFailed as soon as one ended failed, error or cancelled;
        NeonOperationTimeout when `timeout` (default `operation_timeout`) seconds pass."""
        latest: dict[str, Operation | None] = {}  # in the order given
        for item in operations:
            op_id = item if isinstance(item, str) else item.id
            if isinstance(item, Operation) and (latest.get(op_id) is None or item.done):
                latest[op_id] = item
            else:
                latest.setdefault(op_id, None)
        limit = self.operation_timeout if timeout is None else timeout
        started, slept = time.monotonic(), self._sender.slept
        delays = self._poll_delays()
        while True:
            for op_id, operation in latest.items():
                if operation is None or not operation.done:
                    latest[op_id] = self.get_operation(op_id)
            known = [op for op in latest.values() if op is not None]
            failed = [op for op in known if op.status in FAILURE_STATUSES]
            if failed:
                raise NeonOperationFailed(failed[0])
            if all(op.succeeded for op in known):
                return known
            remaining = self._remaining(limit, started, slept)
            if remaining <= 0:
                running = ", ".join(f"{op.action} {op.id} ({op.status})"
                                    for op in known if not op.done)
                raise NeonOperationTimeout(f"still unfinished after {limit:g}s: {running}")
            self._sender.sleep(min(next(delays), remaining))

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

    # ------------------------------------------------------------------ requests

    def _path(self, *segments: str) -> str:
        """`projects/{project_id}/…`, each segment percent-encoded."""
        for segment in segments:
            if not segment:
                raise ValueError("an identifier in a Neon API path may not be empty")
        return "/".join(quote(s, safe="") for s in ("projects", self.project_id, *segments))

    def _get(self, answer: type[T], *segments: str, params: dict[str, str] | None = None
             ) -> T:
        request = Request("GET", self._path(*segments), resend_safe=True, params=params)
        return self._sender.read(request, self._sender.answer(request), answer)

    def _change(self, request: Request) -> BranchChange:
        """The branch and operations a mutating request answers with."""
        answer = self._sender.send(request)
        if isinstance(answer, BranchChange):  # a lost create's branch, found by name
            return answer
        return self._sender.read(request, answer, BranchChange)

    def _pages(self, answer: type[_Page[Item]], *segments: str, params: dict[str, str]
               ) -> Iterator[_Page[Item]]:
        """Each page of a listing, until one is empty, has no cursor or repeats one."""
        seen: set[str] = set()
        while True:
            page = self._get(answer, *segments, params=params)
            yield page
            cursor = page.next_cursor
            if not page.items or not cursor or cursor in seen:
                return
            seen.add(cursor)
            params = {**params, "cursor": cursor}

    def _remaining(self, limit: float, started: float, slept: float) -> float:
        """Seconds left of a wait of `limit` begun at `started` (monotonic) when `slept`
        seconds had been slept: sleeps count even when the clock does not move (tests)."""
        return limit - max(time.monotonic() - started, self._sender.slept - slept)
