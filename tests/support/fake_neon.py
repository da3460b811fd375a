"""A fake of Neon's API v2 that speaks real HTTP and keeps branches as real databases.

`FakeNeon(postgres).start()` serves `fake.url` (`http://127.0.0.1:PORT/api/v2`) for one
project. It follows Neon's published OpenAPI document (tests/contracts/neon-public-v2.yaml):
paths, status codes, JSON field names and required fields, `{code, message, request_id}`
error bodies, the `X-Neon-Ret-Request-Id` header (the client's `X-Request-ID` if it sent
one), asynchronous operations that move `scheduling` -> `running` -> `finished` (one after
the other, `operation_seconds` each), and 423 while any operation of the project runs.
tests/test_fake_neon.py checks every route against the document with openapi-core.

Each branch is one physical database on the PostgreSQL test server, named from the branch
id (`br-aged-salad-12345678` -> `br_aged_salad_12345678`); the API calls it `neondb`, owned
by role `neondb_owner` (created on the server, not a superuser). A new branch is
`CREATE DATABASE ... TEMPLATE <source>`, done while the request is answered, so it holds its
parent's data of that moment. The databases live in a tablespace under /dev/shm when the
server can use one (copies on disk are ten times slower); stop() removes it.

Point in time: `checkpoint()` copies a branch's current data into a template database and
records it as the branch's state at an instant; every branch also gets one at its creation,
and a restored branch one at the restore (its older checkpoints stay: "main at 10:00" is
still what main held at 10:00). `parent_timestamp` / `source_timestamp` use the newest
checkpoint at or before the instant, or the oldest one if the instant is older. Writes made
after the last checkpoint are not visible to point-in-time requests.

Choices where the document is silent (statuses are 4xx, `code` is "" unless noted):
- 409 duplicate branch name, second read_write endpoint; 422 `BRANCHES_LIMIT_EXCEEDED`;
  422 deleting the default, the root, a protected branch or one with children, and
  resetting a protected branch from its parent; 400 invalid input, instants in the future
  or outside `history_retention_seconds`, a restore that needs `preserve_under_name`;
  404 unknown project, branch, operation, role, or a branch without endpoint asked for its
  connection URI. Deleting a branch that does not exist (any more) answers 204, as the
  document says.
- PATCH and set_as_default schedule no operation (the document shows `operations: []`), so
  they are not refused with 423.
- Restore with `preserve_under_name`: the old data becomes that branch, which takes the
  target's place in the tree (its parent, its children) and becomes the target's parent,
  as Neon documents.

Known limitations (accepted for a test double):
- copying a database needs it to be idle, so creating a branch from a branch's head (or
  taking a checkpoint) terminates the other sessions on the source database; Neon does not
  drop connections then. Restore drops the target's sessions, as Neon does.
- `parent_lsn` / `source_lsn` resolve against the LSN recorded with each checkpoint (the
  test server's `pg_current_wal_lsn()` when it was taken).
- `expires_at` is stored and shown but branches do not expire by themselves.
- `init_source: schema-only`, snapshots, annotation values, pooled connections (the pooled
  URI is the direct one) and most project settings are not modelled.
- `host` fields say 127.0.0.1: use `connection_uri`, which carries the test server's port.
- Databases: `neondb` is the branch's own physical database; the databases API (create,
  delete) adds others as physical databases of their own (empty, owned by `neondb_owner`)
  and can delete `neondb` too. Only `neondb` is copied into child branches, checkpoints
  and restores; a branch whose `neondb` was deleted cannot be branched from or restored.
- time is the wall clock (`datetime.now`): a frozen clock freezes the operations too.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import psycopg
from psycopg import sql

from tests.support.postgres import PostgresServer

API_PREFIX = "/api/v2"
ROLE_NAME = "neondb_owner"
DATABASE_NAME = "neondb"
LOCKED_MESSAGE = (
    "project already has running conflicting operations, scheduling of new ones is prohibited"
)

Json = dict[str, Any]


# --------------------------------------------------------------------------- public records


@dataclass
class RecordedRequest:
    """One request as it arrived. `status` is what the fake answered (0: nothing was
    answered, or not yet); `answered` is False when the connection was dropped, including
    after the request was carried out (`drop_next(after_processing=True)`). Header names
    are lower case; `path` is the full URL path (`/api/v2/projects/...`)."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    headers: dict[str, str]
    status: int = 0
    answered: bool = True


# --------------------------------------------------------------------------- state


@dataclass
class _Checkpoint:
    at: datetime
    database: str  # a template database, never written after it is taken
    lsn: str


@dataclass
class _Branch:
    id: str
    name: str
    database: str
    created_at: datetime
    updated_at: datetime
    busy_until: datetime  # when its operations finish
    busy_state: str = "init"  # what current_state says until then: init or resetting
    parent_id: str | None = None
    parent_timestamp: datetime | None = None
    parent_lsn: str | None = None
    protected: bool = False
    expires_at: datetime | None = None
    last_reset_at: datetime | None = None
    history: list[_Checkpoint] = field(default_factory=list)
    # The databases API: `neondb` deleted (its physical database dropped), and databases
    # created besides it (API name -> physical database).
    primary_deleted: bool = False
    other_databases: dict[str, str] = field(default_factory=dict)


@dataclass
class _Endpoint:
    id: str
    branch_id: str
    type: str
    created_at: datetime
    updated_at: datetime
    ready_at: datetime


@dataclass
class _Operation:
    id: str
    seq: int
    action: str
    branch_id: str | None
    endpoint_id: str | None
    created_at: datetime
    runs_at: datetime
    finishes_at: datetime

    def status(self, now: datetime) -> str:
        if now >= self.finishes_at:
            return "finished"
        return "running" if now >= self.runs_at else "scheduling"


@dataclass
class _Fault:
    kind: Literal["fail", "drop", "delay"]
    times: int
    method: str | None
    path_contains: str | None
    status: int = 0
    retry_after: float | None = None
    code: str | None = None
    message: str | None = None
    after_processing: bool = False
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_contains is None or self.path_contains in path
        )


class _ApiError(Exception):
    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class _Call:
    params: dict[str, str]
    query: dict[str, str]
    body: Json


_Reply = tuple[int, Json | None]

# Routes: (method, path template relative to /api/v2, handler method). The templates are
# spelled as in the OpenAPI document, so the contract test can look each one up there.
_ROUTE_TABLE: tuple[tuple[str, str, str], ...] = (
    ("GET", "/projects/{project_id}", "_get_project"),
    ("GET", "/projects/{project_id}/branches", "_list_branches"),
    ("POST", "/projects/{project_id}/branches", "_create_branch"),
    ("GET", "/projects/{project_id}/branches/count", "_count_branches"),
    ("GET", "/projects/{project_id}/branches/{branch_id}", "_get_branch"),
    ("PATCH", "/projects/{project_id}/branches/{branch_id}", "_update_branch"),
    ("DELETE", "/projects/{project_id}/branches/{branch_id}", "_delete_branch"),
    ("POST", "/projects/{project_id}/branches/{branch_id}/restore", "_restore_branch"),
    ("POST", "/projects/{project_id}/branches/{branch_id}/set_as_default", "_set_default"),
    ("GET", "/projects/{project_id}/branches/{branch_id}/databases", "_list_databases"),
    ("POST", "/projects/{project_id}/branches/{branch_id}/databases", "_create_database"),
    (
        "DELETE",
        "/projects/{project_id}/branches/{branch_id}/databases/{database_name}",
        "_delete_database",
    ),
    ("GET", "/projects/{project_id}/branches/{branch_id}/roles", "_list_roles"),
    (
        "GET",
        "/projects/{project_id}/branches/{branch_id}/roles/{role_name}/reveal_password",
        "_reveal_password",
    ),
    ("GET", "/projects/{project_id}/branches/{branch_id}/endpoints", "_list_branch_endpoints"),
    ("GET", "/projects/{project_id}/endpoints", "_list_endpoints"),
    ("POST", "/projects/{project_id}/endpoints", "_create_endpoint"),
    ("GET", "/projects/{project_id}/connection_uri", "_connection_uri"),
    ("GET", "/projects/{project_id}/operations", "_list_operations"),
    ("GET", "/projects/{project_id}/operations/{operation_id}", "_get_operation"),
)

#: (method, path template) of every route the fake serves.
ROUTES: tuple[tuple[str, str], ...] = tuple((m, t) for m, t, _ in _ROUTE_TABLE)


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


_COMPILED = tuple((m, _compile(t), h) for m, t, h in _ROUTE_TABLE)

_ADJECTIVES = (
    "aged",
    "bold",
    "calm",
    "dry",
    "fancy",
    "gentle",
    "holy",
    "icy",
    "jolly",
    "lively",
    "misty",
    "noisy",
    "odd",
    "proud",
    "quiet",
    "rapid",
    "shy",
    "tiny",
    "wild",
    "young",
)
_NOUNS = (
    "bird",
    "cloud",
    "dawn",
    "field",
    "forest",
    "frost",
    "glade",
    "hill",
    "lake",
    "leaf",
    "moon",
    "night",
    "pine",
    "river",
    "salad",
    "sea",
    "snow",
    "star",
    "sun",
    "wind",
)


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(value: datetime) -> str:
    """Neon's rendering: UTC, whole seconds, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_instant(value: Any, field_name: str) -> datetime:
    if not isinstance(value, str):
        raise _ApiError(400, f"{field_name} must be an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _ApiError(400, f"{field_name} must be an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise _ApiError(400, f"{field_name} must carry a time zone (RFC 3339)")
    return parsed.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _lsn_value(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _encode_cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise _ApiError(400, "invalid cursor") from None


def _limit(query: dict[str, str], maximum: int) -> int | None:
    if "limit" not in query:
        return None
    try:
        limit = int(query["limit"])
    except ValueError:
        raise _ApiError(400, "limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise _ApiError(400, f"limit must be between 1 and {maximum}")
    return limit


def _optional_bool(container: Json, key: str) -> bool | None:
    value = container.get(key)
    if value is not None and not isinstance(value, bool):
        raise _ApiError(400, f"{key} must be a boolean")
    return value


# --------------------------------------------------------------------------- the fake


class FakeNeon:
    """A fake Neon API v2 for one project, backed by real databases. See the module doc."""

    def __init__(
        self,
        postgres: PostgresServer,
        *,
        api_key: str = "neon-test-key",
        project_id: str = "proj-lifeguard-test",
        history_retention_seconds: int = 7 * 86400,
        operation_seconds: float = 0.05,
        branch_limit: int = 10,
    ) -> None:
        self.postgres = postgres
        self.api_key = api_key
        self.project_id = project_id
        self.history_retention_seconds = history_retention_seconds
        self.operation_seconds = operation_seconds
        self.branch_limit = branch_limit
        self._initial = (api_key, history_retention_seconds, operation_seconds, branch_limit)
        self.url = ""
        self.unreachable = False
        self.requests: list[RecordedRequest] = []
        self.role_password = "npg_" + secrets.token_hex(8)
        self.project_created_at = _now()

        self._lock = threading.RLock()  # the state, and the admin connection
        self._log_lock = threading.Lock()  # requests and faults
        self._faults: list[_Fault] = []
        self._random = random.Random(secrets.randbits(64))
        self._admin_conn: psycopg.Connection[Any] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._server_version = 0
        self._pristine = ""  # the empty template database main starts from
        self._tablespace = ""  # in RAM when possible: copies on disk are ten times slower
        self._tablespace_dir: Path | None = None

        self._branches: dict[str, _Branch] = {}
        self._deleted_ids: set[str] = set()
        self._default_id = ""
        self._endpoints: dict[str, _Endpoint] = {}
        self._operations: list[_Operation] = []
        self._owned_databases: set[str] = set()
        self._ids = itertools.count(1)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeNeon:
        try:
            self._start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def _start(self) -> None:
        with self._lock:
            conn = self._admin()
            row = conn.execute("SHOW server_version_num").fetchone()
            self._server_version = int(row[0]) if row else 0
            self._ensure_role()
            self._create_tablespace()
            # One empty database for the fake's whole life: every reset() copies it.
            self._pristine = self._temporary_name("ck")
            self._run(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0{}").format(
                    sql.Identifier(self._pristine), sql.Identifier(ROLE_NAME), self._in_tablespace()
                )
            )
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}{API_PREFIX}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-neon",
            daemon=True,
        )
        self._thread.start()
        self.reset()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._log_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._drop_owned_databases()
            if self._pristine:
                self._drop_database(self._pristine)
                self._pristine = ""
            self._drop_tablespace()
            if self._admin_conn is not None:
                self._admin_conn.close()
                self._admin_conn = None

    def __enter__(self) -> FakeNeon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """A fresh project: only a default branch `main` (database `neondb`, role
        `neondb_owner`, a read_write endpoint), no faults, requests, checkpoints or
        operations; api_key, operation_seconds, history_retention_seconds and branch_limit
        go back to the constructor's values."""
        with self._log_lock:
            self._faults.clear()
            self.requests.clear()
            self.unreachable = False
        with self._lock:
            (
                self.api_key,
                self.history_retention_seconds,
                self.operation_seconds,
                self.branch_limit,
            ) = self._initial
            self._drop_owned_databases()
            self._branches.clear()
            self._deleted_ids.clear()
            self._endpoints.clear()
            self._operations.clear()
            now = _now()
            branch_id = self._new_id("br")
            database = branch_id.replace("-", "_")
            self._copy_database(self._pristine, database)
            main = _Branch(
                id=branch_id,
                name="main",
                database=database,
                created_at=now,
                updated_at=now,
                busy_until=now,
            )
            # Its state at creation: the empty template itself (templates are never written).
            main.history.append(_Checkpoint(now, self._pristine, self._current_lsn()))
            self._branches[branch_id] = main
            self._default_id = branch_id
            endpoint = _Endpoint(self._new_id("ep"), branch_id, "read_write", now, now, now)
            self._endpoints[endpoint.id] = endpoint

    # ----------------------------------------------------------------- state, for tests

    def branches(self) -> list[Json]:
        with self._lock:
            sizes = self._sizes(list(self._branches.values()))
            ordered = sorted(self._branches.values(), key=lambda b: b.created_at)
            return [self._render_branch(b, sizes) for b in ordered]

    def branch_by_name(self, name: str) -> Json | None:
        with self._lock:
            branch = self._by_name(name)
            return self._render_branch(branch) if branch else None

    def default_branch(self) -> Json:
        with self._lock:
            return self._render_branch(self._branches[self._default_id])

    def connect_url(self, branch_id_or_name: str, database: str = DATABASE_NAME) -> str:
        with self._lock:
            branch = self._lookup(branch_id_or_name)
            return self._uri(branch, physical=self._physical(branch, database))

    def database_names(self, branch_id_or_name: str) -> list[str]:
        """The databases the API lists for the branch."""
        with self._lock:
            return self._database_names(self._lookup(branch_id_or_name))

    def checkpoint(self, branch: str | None = None, at: datetime | None = None) -> datetime:
        """Record the branch's current data (default: the default branch) as its state at
        `at` (default: now, UTC) and return that instant."""
        with self._lock:
            target = self._lookup(branch) if branch else self._branches[self._default_id]
            instant = _as_utc(at) if at else _now()
            target.history.append(self._snapshot(target.database, instant))
            target.history.sort(key=lambda c: c.at)
            return instant

    def mutations(self) -> list[RecordedRequest]:
        with self._log_lock:
            return [
                r
                for r in self.requests
                if r.method in {"POST", "PATCH", "PUT", "DELETE"} and 200 <= r.status < 300
            ]

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: float | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` and Neon's error body,
        without carrying them out."""
        self._add_fault(
            _Fault(
                "fail",
                times,
                method,
                path_contains,
                status=status,
                retry_after=retry_after,
                code=code,
                message=message,
            )
        )

    def drop_next(
        self,
        times: int = 1,
        *,
        after_processing: bool = False,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Close the connection of the next `times` matching requests without an answer;
        with `after_processing` the request is carried out first (the answer is lost)."""
        self._add_fault(
            _Fault("drop", times, method, path_contains, after_processing=after_processing)
        )

    def delay_next(
        self,
        seconds: float,
        times: int = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Sleep `seconds` before carrying out and answering the next matching requests."""
        self._add_fault(_Fault("delay", times, method, path_contains, seconds=seconds))

    def _add_fault(self, fault: _Fault) -> None:
        with self._log_lock:
            self._faults.append(fault)

    def _take_faults(self, method: str, path: str) -> tuple[_Fault | None, _Fault | None]:
        """The delay and the fail-or-drop fault that apply to this request, consumed."""
        with self._log_lock:
            delay = next(
                (f for f in self._faults if f.kind == "delay" and f.matches(method, path)), None
            )
            other = next(
                (f for f in self._faults if f.kind != "delay" and f.matches(method, path)), None
            )
            for fault in (delay, other):
                if fault is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
            return delay, other

    def _record(self, request: RecordedRequest) -> None:
        with self._log_lock:
            self.requests.append(request)

    # ----------------------------------------------------------------- dispatch

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        headers: dict[str, str],
        request_id: str,
    ) -> _Reply:
        try:
            if headers.get("authorization") != f"Bearer {self.api_key}":
                raise _ApiError(401, "authentication failed")
            handler, params = self._route(method, path)
            body = self._parse_body(raw)
            if params["project_id"] != self.project_id:
                raise _ApiError(404, "project not found")
            with self._lock:
                return handler(_Call(params, query, body))
        except _ApiError as error:
            return error.status, {
                "code": error.code,
                "message": error.message,
                "request_id": request_id,
            }
        except Exception as error:  # a bug in the fake: say so loudly
            traceback.print_exc()
            return 500, {
                "code": "",
                "message": f"fake neon failed: {error!r}",
                "request_id": request_id,
            }

    def _route(self, method: str, path: str) -> tuple[Callable[[_Call], _Reply], dict[str, str]]:
        if not path.startswith(API_PREFIX + "/"):
            raise _ApiError(404, "not found")
        relative = path[len(API_PREFIX) :]
        path_known = False
        for route_method, pattern, handler_name in _COMPILED:
            match = pattern.match(relative)
            if match:
                path_known = True
                if route_method == method:
                    return getattr(self, handler_name), match.groupdict()
        if path_known:
            raise _ApiError(405, "method not allowed")
        raise _ApiError(404, "not found")

    @staticmethod
    def _parse_body(raw: bytes) -> Json:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise _ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "request body must be a JSON object")
        return body

    # ----------------------------------------------------------------- handlers: project

    def _get_project(self, call: _Call) -> _Reply:
        now = _now()
        period_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        period_end = (period_start + timedelta(days=32)).replace(day=1)
        project = {
            "id": self.project_id,
            "platform_id": "aws",
            "region_id": "aws-us-east-2",
            "name": self.project_id,
            "provisioner": "k8s-neonvm",
            "default_endpoint_settings": {
                "autoscaling_limit_min_cu": 0.25,
                "autoscaling_limit_max_cu": 2,
                "suspend_timeout_seconds": 0,
            },
            "settings": {
                "quota": {},
                "allowed_ips": {"ips": [], "protected_branches_only": False},
                "enable_logical_replication": False,
                "block_public_connections": False,
                "block_vpc_connections": False,
            },
            "pg_version": self._server_version // 10000,
            "proxy_host": "127.0.0.1",
            "branch_logical_size_limit": 10240,
            "branch_logical_size_limit_bytes": 10240 * 1024 * 1024,
            "store_passwords": True,
            "active_time_seconds": 0,
            "cpu_used_sec": 0,
            "compute_time_seconds": 0,
            "written_data_bytes": 0,
            "data_transfer_bytes": 0,
            "data_storage_bytes_hour": 0,
            "creation_source": "console",
            "history_retention_seconds": self.history_retention_seconds,
            "created_at": _rfc3339(self.project_created_at),
            "updated_at": _rfc3339(self.project_created_at),
            "consumption_period_start": _rfc3339(period_start),
            "consumption_period_end": _rfc3339(period_end),
            "owner_id": "lifeguard-test-owner",
            "owner": {
                "email": "lifeguard-tests@example.com",
                "name": "Lifeguard tests",
                "branches_limit": self.branch_limit,
                "subscription_type": "launch",
            },
        }
        return 200, {"project": project}

    # ----------------------------------------------------------------- handlers: branches

    def _list_branches(self, call: _Call) -> _Reply:
        query = call.query
        cursor = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        if cursor is not None and not (isinstance(cursor, dict) and "after" in cursor):
            raise _ApiError(400, "invalid cursor")
        sort_by = query.get("sort_by") or (cursor or {}).get("sort_by") or "updated_at"
        sort_order = query.get("sort_order") or (cursor or {}).get("sort_order") or "desc"
        if sort_by not in {"name", "created_at", "updated_at"}:
            raise _ApiError(400, "sort_by must be one of name, created_at, updated_at")
        if sort_order not in {"asc", "desc"}:
            raise _ApiError(400, "sort_order must be asc or desc")
        limit = _limit(query, 10000)

        def key(b: _Branch) -> list[str]:
            value = b.name if sort_by == "name" else getattr(b, sort_by).isoformat()
            return [value, b.id]

        found = self._search(query.get("search"))
        found.sort(key=key, reverse=sort_order == "desc")
        if cursor is not None:
            after = cursor["after"]
            descending = sort_order == "desc"
            found = [b for b in found if (key(b) < after if descending else key(b) > after)]
        page = found[:limit] if limit else found
        pagination: Json = {"sort_by": sort_by, "sort_order": sort_order}
        if len(page) < len(found):
            pagination["next"] = _encode_cursor(
                {"after": key(page[-1]), "sort_by": sort_by, "sort_order": sort_order}
            )
        sizes = self._sizes(page)
        return 200, {
            "branches": [self._render_branch(b, sizes) for b in page],
            "annotations": {},
            "pagination": pagination,
        }

    def _count_branches(self, call: _Call) -> _Reply:
        return 200, {"count": len(self._search(call.query.get("search")))}

    def _get_branch(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        return 200, {"branch": self._render_branch(branch), "annotation": self._annotation(branch)}

    def _create_branch(self, call: _Call) -> _Reply:
        spec = call.body.get("branch") or {}
        endpoint_specs = call.body.get("endpoints") or []
        if not isinstance(spec, dict) or not isinstance(endpoint_specs, list):
            raise _ApiError(400, "branch must be an object and endpoints a list")
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 256):
            raise _ApiError(400, "name must be a string of 1 to 256 characters")
        if name is not None and self._by_name(name):
            raise _ApiError(409, f"branch with name {name!r} already exists")
        if spec.get("init_source") not in (None, "parent-data"):
            raise _ApiError(400, "the fake supports only init_source parent-data")
        protected = bool(_optional_bool(spec, "protected"))
        expires_at = self._expiry(spec.get("expires_at"))
        parent = (
            self._branch(spec["parent_id"], what="parent branch")
            if spec.get("parent_id")
            else self._branches[self._default_id]
        )
        if parent.primary_deleted:
            raise _ApiError(400, "the fake copies only neondb, which this parent no longer has")
        types = [self._endpoint_type(e) for e in endpoint_specs]
        if types.count("read_write") > 1:
            raise _ApiError(400, "a branch can have only one read_write endpoint")
        source = self._point_in_time(
            parent, spec.get("parent_timestamp"), spec.get("parent_lsn"), "parent"
        )
        self._check_branch_limit()
        self._ensure_no_running_operations()

        now = _now()
        branch_id = self._new_id("br")
        database = branch_id.replace("-", "_")
        # The data is copied now, at request time, even though the operation runs a while.
        creation = source or self._snapshot(parent.database, now)
        self._copy_database(creation.database, database)
        if spec.get("parent_timestamp"):
            parent_timestamp = _parse_instant(spec["parent_timestamp"], "parent_timestamp")
        else:
            parent_timestamp = creation.at  # the head (now), or the checkpoint of parent_lsn
        branch = _Branch(
            id=branch_id,
            name=name or branch_id,
            database=database,
            created_at=now,
            updated_at=now,
            busy_until=now,
            parent_id=parent.id,
            parent_timestamp=parent_timestamp,
            parent_lsn=creation.lsn,
            protected=protected,
            expires_at=expires_at,
        )
        branch.history.append(_Checkpoint(now, creation.database, creation.lsn))
        self._branches[branch_id] = branch
        endpoints = [_Endpoint(self._new_id("ep"), branch_id, t, now, now, now) for t in types]
        for endpoint in endpoints:
            self._endpoints[endpoint.id] = endpoint
        operations = self._schedule(
            [("create_branch", branch_id, None)]
            + [("start_compute", branch_id, e.id) for e in endpoints]
        )
        branch.busy_until = operations[-1].finishes_at
        for endpoint, operation in zip(endpoints, operations[1:], strict=True):
            endpoint.ready_at = operation.finishes_at
        reply: Json = {
            "branch": self._render_branch(branch),
            "endpoints": [self._render_endpoint(e) for e in endpoints],
            "operations": [self._render_operation(o) for o in operations],
            "roles": [self._render_role(branch)],
            "databases": [self._render_database(branch)],
        }
        if endpoints:
            reply["connection_uris"] = [self._connection_details(branch, endpoints[0])]
        return 201, reply

    def _update_branch(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        spec = call.body.get("branch")
        if not isinstance(spec, dict):
            raise _ApiError(400, "branch is required")
        name = spec.get("name")
        if name is not None:
            if not isinstance(name, str) or not 1 <= len(name) <= 256:
                raise _ApiError(400, "name must be a string of 1 to 256 characters")
            other = self._by_name(name)
            if other and other.id != branch.id:
                raise _ApiError(409, f"branch with name {name!r} already exists")
        protected = _optional_bool(spec, "protected")
        expires_at = self._expiry(spec.get("expires_at")) if "expires_at" in spec else None
        if name is not None:
            branch.name = name
        if protected is not None:
            branch.protected = protected
        if "expires_at" in spec:
            branch.expires_at = expires_at
        branch.updated_at = _now()
        return 200, {"branch": self._render_branch(branch), "operations": []}

    def _delete_branch(self, call: _Call) -> _Reply:
        branch = self._branches.get(call.params["branch_id"])
        if branch is None:
            return 204, None  # the document: "the branch doesn't exist or has already been deleted"
        if branch.id == self._default_id:
            raise _ApiError(422, "cannot delete the project's default branch")
        if branch.parent_id is None:
            raise _ApiError(422, "cannot delete the project's root branch")
        if branch.protected:
            raise _ApiError(422, "cannot delete a protected branch")
        if self._children(branch):
            raise _ApiError(422, "cannot delete a branch that has child branches")
        self._ensure_no_running_operations()
        endpoints = self._endpoints_of(branch)
        operations = self._schedule(
            [("suspend_compute", branch.id, e.id) for e in endpoints]
            + [("delete_timeline", branch.id, None)]
        )
        rendered = self._render_branch(branch)
        for endpoint in endpoints:
            del self._endpoints[endpoint.id]
        del self._branches[branch.id]
        self._deleted_ids.add(branch.id)
        return 200, {
            "branch": rendered,
            "operations": [self._render_operation(o) for o in operations],
        }

    def _restore_branch(self, call: _Call) -> _Reply:
        target = self._branch(call.params["branch_id"])
        body = call.body
        source_id = body.get("source_branch_id")
        if not isinstance(source_id, str) or not source_id:
            raise _ApiError(400, "source_branch_id is required")
        source = self._branch(source_id, what="source branch")
        if source.primary_deleted or target.primary_deleted:
            raise _ApiError(400, "the fake restores only neondb, which a branch here no longer has")
        preserve = body.get("preserve_under_name") or None
        if preserve is not None and not isinstance(preserve, str):
            raise _ApiError(400, "preserve_under_name must be a string")
        timestamp, lsn = body.get("source_timestamp"), body.get("source_lsn")
        if source.id == target.id and not (timestamp or lsn):
            raise _ApiError(
                400,
                "source_timestamp or source_lsn is required to restore a branch "
                "from its own history",
            )
        if preserve is None and source.id == target.id:
            raise _ApiError(
                400, "preserve_under_name is required to restore a branch from its own history"
            )
        if preserve is None and self._children(target):
            raise _ApiError(
                400, "preserve_under_name is required to restore a branch that has children"
            )
        if target.protected and source.id == target.parent_id and not (timestamp or lsn):
            raise _ApiError(422, "cannot reset a protected branch from its parent")
        if preserve is not None and self._by_name(preserve):
            raise _ApiError(409, f"branch with name {preserve!r} already exists")
        point = self._point_in_time(source, timestamp, lsn, "source")
        if preserve is not None:
            self._check_branch_limit()
        self._ensure_no_running_operations()

        now = _now()
        # 1. the new data, copied now from the source's state
        state = point or self._snapshot(source.database, now)
        incoming = self._temporary_name("in")
        self._copy_database(state.database, incoming)
        # 2. the replaced data: kept as a new branch, or dropped
        if preserve is not None:
            backup_id = self._new_id("br")
            backup_database = backup_id.replace("-", "_")
            self._rename_database(target.database, backup_database)
            backup = _Branch(
                id=backup_id,
                name=preserve,
                database=backup_database,
                created_at=now,
                updated_at=now,
                busy_until=now,
                parent_id=target.parent_id,
                parent_timestamp=target.parent_timestamp,
                parent_lsn=target.parent_lsn,
            )
            backup.history.append(self._snapshot(backup_database, now))
            self._branches[backup_id] = backup
            for child in self._children(target):
                child.parent_id = backup_id
            # Neon: "the backup becomes the parent of your original branch"
            target.parent_id, target.parent_timestamp = backup_id, now
            target.parent_lsn = self._current_lsn()
        else:
            self._drop_database(target.database)
        # 3. the target keeps its id, endpoints and database name (so its connection URI)
        self._rename_database(incoming, target.database)
        target.history.append(_Checkpoint(now, state.database, state.lsn))
        target.history.sort(key=lambda c: c.at)
        target.last_reset_at = target.updated_at = now
        endpoints = self._endpoints_of(target)
        operations = self._schedule(
            [("suspend_compute", target.id, e.id) for e in endpoints]
            + [("create_branch", target.id, None)]
            + [("start_compute", target.id, e.id) for e in endpoints]
        )
        target.busy_until, target.busy_state = operations[-1].finishes_at, "resetting"
        for endpoint in endpoints:
            endpoint.ready_at = operations[-1].finishes_at
            endpoint.updated_at = now
        return 200, {
            "branch": self._render_branch(target),
            "operations": [self._render_operation(o) for o in operations],
        }

    def _set_default(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        now = _now()
        if branch.id != self._default_id:
            self._branches[self._default_id].updated_at = now
            self._default_id = branch.id
            branch.updated_at = now
        return 200, {"branch": self._render_branch(branch), "operations": []}

    def _list_databases(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        return 200, {"databases": [self._render_database(branch, name)
                                   for name in self._database_names(branch)]}

    def _create_database(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        spec = call.body.get("database")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(
            spec.get("owner_name"), str
        ):
            raise _ApiError(400, "database.name and database.owner_name are required")
        name, owner = spec["name"], spec["owner_name"]
        if not 1 <= len(name) <= 63 or "\x00" in name:
            raise _ApiError(400, "a database name is 1 to 63 characters")
        if owner != ROLE_NAME:
            raise _ApiError(404, "role not found")
        if name in self._database_names(branch):
            raise _ApiError(409, f"database with name {name!r} already exists")
        self._ensure_no_running_operations()
        if name == DATABASE_NAME:
            self._copy_database(self._pristine, branch.database)
            branch.primary_deleted = False
        else:
            physical = self._temporary_name("db")
            self._copy_database(self._pristine, physical)
            branch.other_databases[name] = physical
        return 201, {
            "database": self._render_database(branch, name),
            "operations": [self._render_operation(o) for o in self._apply_config(branch)],
        }

    def _delete_database(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        name = call.params["database_name"]
        if name not in self._database_names(branch):
            return 204, None  # the document: "doesn't exist or has already been deleted"
        self._ensure_no_running_operations()
        rendered = self._render_database(branch, name)
        if name == DATABASE_NAME:
            self._drop_database(branch.database)
            branch.primary_deleted = True
        else:
            self._drop_database(branch.other_databases.pop(name))
        return 200, {
            "database": rendered,
            "operations": [self._render_operation(o) for o in self._apply_config(branch)],
        }

    def _apply_config(self, branch: _Branch) -> list[_Operation]:
        """A database change: Neon applies the new configuration to each compute."""
        return self._schedule(
            [("apply_config", branch.id, e.id) for e in self._endpoints_of(branch)]
            or [("apply_config", branch.id, None)]
        )

    def _database_names(self, branch: _Branch) -> list[str]:
        own = [] if branch.primary_deleted else [DATABASE_NAME]
        return own + sorted(branch.other_databases)

    def _physical(self, branch: _Branch, name: str) -> str:
        if name == DATABASE_NAME and not branch.primary_deleted:
            return branch.database
        if name in branch.other_databases:
            return branch.other_databases[name]
        raise _ApiError(404, "database not found")

    def _list_roles(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        return 200, {"roles": [self._render_role(branch)]}

    def _reveal_password(self, call: _Call) -> _Reply:
        self._branch(call.params["branch_id"])
        if call.params["role_name"] != ROLE_NAME:
            raise _ApiError(404, "role not found")
        return 200, {"password": self.role_password}

    # ----------------------------------------------------------------- handlers: endpoints

    def _list_endpoints(self, call: _Call) -> _Reply:
        endpoints = sorted(self._endpoints.values(), key=lambda e: e.created_at)
        return 200, {"endpoints": [self._render_endpoint(e) for e in endpoints]}

    def _list_branch_endpoints(self, call: _Call) -> _Reply:
        branch = self._branch(call.params["branch_id"])
        return 200, {"endpoints": [self._render_endpoint(e) for e in self._endpoints_of(branch)]}

    def _create_endpoint(self, call: _Call) -> _Reply:
        spec = call.body.get("endpoint")
        if not isinstance(spec, dict) or not spec.get("branch_id"):
            raise _ApiError(400, "endpoint.branch_id and endpoint.type are required")
        branch = self._branch(spec["branch_id"])
        endpoint_type = self._endpoint_type(spec)
        if endpoint_type == "read_write" and any(
            e.type == "read_write" for e in self._endpoints_of(branch)
        ):
            raise _ApiError(409, "the branch already has a read_write endpoint")
        self._ensure_no_running_operations()
        now = _now()
        endpoint = _Endpoint(self._new_id("ep"), branch.id, endpoint_type, now, now, now)
        self._endpoints[endpoint.id] = endpoint
        operations = self._schedule([("start_compute", branch.id, endpoint.id)])
        endpoint.ready_at = operations[-1].finishes_at
        return 201, {
            "endpoint": self._render_endpoint(endpoint),
            "operations": [self._render_operation(o) for o in operations],
        }

    def _connection_uri(self, call: _Call) -> _Reply:
        query = call.query
        for required in ("database_name", "role_name"):
            if not query.get(required):
                raise _ApiError(400, f"{required} is required")
        branch = (
            self._branch(query["branch_id"])
            if query.get("branch_id")
            else self._branches[self._default_id]
        )
        endpoints = self._endpoints_of(branch)
        if query.get("endpoint_id"):
            endpoint = next((e for e in endpoints if e.id == query["endpoint_id"]), None)
            if endpoint is None:
                raise _ApiError(404, "endpoint not found")
        else:
            endpoint = next((e for e in endpoints if e.type == "read_write"), None)
            if endpoint is None:
                raise _ApiError(404, f"no read_write endpoint found for branch {branch.id}")
        physical = self._physical(branch, query["database_name"])
        if query["role_name"] != ROLE_NAME:
            raise _ApiError(404, "role not found")
        return 200, {"uri": self._uri(branch, endpoint, physical=physical)}

    # ----------------------------------------------------------------- handlers: operations

    def _get_operation(self, call: _Call) -> _Reply:
        operation = next((o for o in self._operations if o.id == call.params["operation_id"]), None)
        if operation is None:
            raise _ApiError(404, "operation not found")
        return 200, {"operation": self._render_operation(operation)}

    def _list_operations(self, call: _Call) -> _Reply:
        limit = _limit(call.query, 1000)
        found = sorted(self._operations, key=lambda o: o.seq, reverse=True)
        if call.query.get("cursor"):
            before = _decode_cursor(call.query["cursor"])
            if not isinstance(before, int):
                raise _ApiError(400, "invalid cursor")
            found = [o for o in found if o.seq < before]
        page = found[:limit] if limit else found
        reply: Json = {"operations": [self._render_operation(o) for o in page]}
        if len(page) < len(found):
            reply["pagination"] = {"cursor": _encode_cursor(page[-1].seq)}
        return 200, reply

    # ----------------------------------------------------------------- rules

    def _branch(self, branch_id: Any, what: str = "branch") -> _Branch:
        branch = self._branches.get(branch_id) if isinstance(branch_id, str) else None
        if branch is None:
            raise _ApiError(404, f"{what} not found")
        return branch

    def _lookup(self, branch_id_or_name: str) -> _Branch:
        branch = self._branches.get(branch_id_or_name) or self._by_name(branch_id_or_name)
        if branch is None:
            raise KeyError(f"no branch {branch_id_or_name!r}")
        return branch

    def _by_name(self, name: str) -> _Branch | None:
        return next((b for b in self._branches.values() if b.name == name), None)

    def _children(self, branch: _Branch) -> list[_Branch]:
        return [b for b in self._branches.values() if b.parent_id == branch.id]

    def _endpoints_of(self, branch: _Branch) -> list[_Endpoint]:
        return sorted(
            (e for e in self._endpoints.values() if e.branch_id == branch.id),
            key=lambda e: e.created_at,
        )

    def _search(self, search: str | None) -> list[_Branch]:
        needle = (search or "").lower()
        return [b for b in self._branches.values() if needle in b.name.lower() or needle in b.id]

    def _check_branch_limit(self) -> None:
        if len(self._branches) >= self.branch_limit:
            raise _ApiError(422, "branches limit exceeded", code="BRANCHES_LIMIT_EXCEEDED")

    def _ensure_no_running_operations(self) -> None:
        now = _now()
        if any(o.status(now) != "finished" for o in self._operations):
            raise _ApiError(423, LOCKED_MESSAGE)

    @staticmethod
    def _endpoint_type(spec: Any) -> str:
        endpoint_type = spec.get("type") if isinstance(spec, dict) else None
        if endpoint_type not in ("read_write", "read_only"):
            raise _ApiError(400, "endpoint type must be read_write or read_only")
        return endpoint_type

    @staticmethod
    def _expiry(value: Any) -> datetime | None:
        if value is None:
            return None
        expires_at = _parse_instant(value, "expires_at")
        if expires_at <= _now():
            raise _ApiError(400, "expires_at must be in the future")
        return expires_at

    def _point_in_time(
        self, branch: _Branch, timestamp: Any, lsn: Any, prefix: str
    ) -> _Checkpoint | None:
        """The recorded state of `branch` for `<prefix>_timestamp` / `<prefix>_lsn`, or
        None for its head."""
        if timestamp and lsn:
            raise _ApiError(400, f"{prefix}_timestamp and {prefix}_lsn are mutually exclusive")
        if timestamp:
            instant = _parse_instant(timestamp, f"{prefix}_timestamp")
            now = _now()
            if instant > now:
                raise _ApiError(400, f"{prefix}_timestamp {_rfc3339(instant)} is in the future")
            oldest = now - timedelta(seconds=self.history_retention_seconds)
            if instant < oldest:
                raise _ApiError(
                    400,
                    f"{prefix}_timestamp {_rfc3339(instant)} is older than the project's "
                    f"history retention period of {self.history_retention_seconds} seconds",
                )
            earlier = [c for c in branch.history if c.at <= instant]
            return earlier[-1] if earlier else branch.history[0]
        if lsn:
            if not isinstance(lsn, str) or not re.fullmatch(r"[0-9A-Fa-f]+/[0-9A-Fa-f]+", lsn):
                raise _ApiError(400, f"{prefix}_lsn must look like 0/1A2B3C4")
            earlier = [c for c in branch.history if _lsn_value(c.lsn) <= _lsn_value(lsn)]
            return max(earlier, key=lambda c: _lsn_value(c.lsn)) if earlier else branch.history[0]
        return None

    def _schedule(self, steps: list[tuple[str, str | None, str | None]]) -> list[_Operation]:
        """Operations that run one after the other, each for operation_seconds."""
        now = _now()
        step = timedelta(seconds=self.operation_seconds)
        operations = []
        for index, (action, branch_id, endpoint_id) in enumerate(steps):
            operation = _Operation(
                id=str(uuid.uuid4()),
                seq=next(self._ids),
                action=action,
                branch_id=branch_id,
                endpoint_id=endpoint_id,
                created_at=now,
                runs_at=now + step * index + step / 5,
                finishes_at=now + step * (index + 1),
            )
            operations.append(operation)
        self._operations.extend(operations)
        return operations

    def _new_id(self, prefix: str) -> str:
        taken = set(self._branches) | self._deleted_ids | set(self._endpoints)
        taken_databases = {r[0] for r in self._admin().execute("SELECT datname FROM pg_database")}
        while True:
            candidate = "-".join(
                (
                    prefix,
                    self._random.choice(_ADJECTIVES),
                    self._random.choice(_NOUNS),
                    f"{self._random.randrange(10**8):08d}",
                )
            )
            if candidate not in taken and candidate.replace("-", "_") not in taken_databases:
                return candidate

    # ----------------------------------------------------------------- rendering

    def _render_branch(self, branch: _Branch, sizes: dict[str, int] | None = None) -> Json:
        if sizes is None:
            sizes = self._sizes([branch])
        now = _now()
        busy = now < branch.busy_until
        started = branch.last_reset_at or branch.created_at
        rendered: Json = {
            "id": branch.id,
            "project_id": self.project_id,
            "name": branch.name,
            "current_state": branch.busy_state if busy else "ready",
            "state_changed_at": _rfc3339(started if busy else branch.busy_until),
            "logical_size": sizes.get(branch.database, 0),
            "creation_source": "console",
            "created_at": _rfc3339(branch.created_at),
            "updated_at": _rfc3339(branch.updated_at),
            "default": branch.id == self._default_id,
            "primary": branch.id == self._default_id,
            "protected": branch.protected,
            "cpu_used_sec": 0,
            "active_time_seconds": 0,
            "compute_time_seconds": 0,
            "written_data_bytes": 0,
            "data_transfer_bytes": 0,
            "init_source": "parent-data",
        }
        if busy:
            rendered["pending_state"] = "ready"
        if branch.parent_id:
            rendered["parent_id"] = branch.parent_id
        if branch.parent_lsn:
            rendered["parent_lsn"] = branch.parent_lsn
        if branch.parent_timestamp:
            rendered["parent_timestamp"] = _rfc3339(branch.parent_timestamp)
        if branch.expires_at:
            rendered["expires_at"] = _rfc3339(branch.expires_at)
        if branch.last_reset_at:
            rendered["last_reset_at"] = _rfc3339(branch.last_reset_at)
        return rendered

    def _annotation(self, branch: _Branch) -> Json:
        return {
            "object": {"type": "console/branch", "id": branch.id},
            "value": {},
            "created_at": _rfc3339(branch.created_at),
            "updated_at": _rfc3339(branch.created_at),
        }

    def _render_endpoint(self, endpoint: _Endpoint) -> Json:
        ready = _now() >= endpoint.ready_at
        rendered: Json = {
            "host": "127.0.0.1",
            "id": endpoint.id,
            "project_id": self.project_id,
            "branch_id": endpoint.branch_id,
            "region_id": "aws-us-east-2",
            "autoscaling_limit_min_cu": 0.25,
            "autoscaling_limit_max_cu": 2,
            "type": endpoint.type,
            "current_state": "active" if ready else "init",
            "pooler_enabled": False,
            "pooler_mode": "transaction",
            "disabled": False,
            "passwordless_access": True,
            "creation_source": "console",
            "created_at": _rfc3339(endpoint.created_at),
            "updated_at": _rfc3339(endpoint.updated_at),
            "settings": {"pg_settings": {}},
            "proxy_host": "127.0.0.1",
            "suspend_timeout_seconds": 0,
            "provisioner": "k8s-neonvm",
        }
        if ready:
            rendered["started_at"] = _rfc3339(endpoint.ready_at)
        else:
            rendered["pending_state"] = "active"
        return rendered

    def _render_operation(self, operation: _Operation) -> Json:
        now = _now()
        status = operation.status(now)
        changed = {
            "scheduling": operation.created_at,
            "running": operation.runs_at,
            "finished": operation.finishes_at,
        }[status]
        elapsed = max(timedelta(0), min(now, operation.finishes_at) - operation.runs_at)
        rendered: Json = {
            "id": operation.id,
            "project_id": self.project_id,
            "action": operation.action,
            "status": status,
            "failures_count": 0,
            "created_at": _rfc3339(operation.created_at),
            "updated_at": _rfc3339(changed),
            "total_duration_ms": int(elapsed.total_seconds() * 1000),
        }
        if operation.branch_id:
            rendered["branch_id"] = operation.branch_id
        if operation.endpoint_id:
            rendered["endpoint_id"] = operation.endpoint_id
        return rendered

    def _render_database(self, branch: _Branch, name: str = DATABASE_NAME) -> Json:
        return {
            "id": zlib.crc32(f"{branch.id}/{name}".encode()) % 10**7,
            "branch_id": branch.id,
            "name": name,
            "owner_name": ROLE_NAME,
            "created_at": _rfc3339(branch.created_at),
            "updated_at": _rfc3339(branch.created_at),
        }

    def _render_role(self, branch: _Branch) -> Json:
        return {
            "branch_id": branch.id,
            "name": ROLE_NAME,
            "protected": False,
            "authentication_method": "password",
            "created_at": _rfc3339(branch.created_at),
            "updated_at": _rfc3339(branch.created_at),
        }

    def _connection_details(self, branch: _Branch, endpoint: _Endpoint) -> Json:
        return {
            "connection_uri": self._uri(branch, endpoint),
            "connection_parameters": {
                "database": DATABASE_NAME,
                "password": self.role_password,
                "role": ROLE_NAME,
                "host": "127.0.0.1",
                "pooler_host": "127.0.0.1",
            },
        }

    def _uri(
        self, branch: _Branch, endpoint: _Endpoint | None = None, *, physical: str | None = None
    ) -> str:
        uri = (
            f"postgresql://{ROLE_NAME}:{quote(self.role_password)}@127.0.0.1:"
            f"{self.postgres.port}/{quote(physical or branch.database, safe='')}"
        )
        if endpoint is not None and endpoint.type == "read_only":
            uri += "?options=" + quote("-c default_transaction_read_only=on")
        return uri

    # ----------------------------------------------------------------- physical databases

    def _admin(self) -> psycopg.Connection[Any]:
        if self._admin_conn is None or self._admin_conn.closed:
            self._admin_conn = psycopg.connect(self.postgres.url("postgres"), autocommit=True)
        return self._admin_conn

    def _run(self, statement: sql.Composable, params: tuple[Any, ...] = ()) -> None:
        self._admin().execute(statement, params)

    def _ensure_role(self) -> None:
        exists = (
            self._admin()
            .execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE_NAME,))
            .fetchone()
        )
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                self._run(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                        sql.Identifier(ROLE_NAME), sql.Literal(self.role_password)
                    )
                )

    def _terminate_sessions(self, database: str) -> None:
        self._admin().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )

    def _while_idle(self, database: str, statement: sql.Composable) -> None:
        """Run a statement that needs `database` to have no sessions, ending them first."""
        for attempt in itertools.count():
            self._terminate_sessions(database)
            try:
                self._run(statement)
                return
            except psycopg.errors.ObjectInUse:
                if attempt >= 20:
                    raise
                time.sleep(0.05)

    def _in_tablespace(self) -> sql.Composable:
        if not self._tablespace:
            return sql.SQL("")
        return sql.SQL(" TABLESPACE {}").format(sql.Identifier(self._tablespace))

    def _create_tablespace(self) -> None:
        """Keep the fake's databases in /dev/shm when the server can write there."""
        shm = Path("/dev/shm")
        if not shm.is_dir() or not os.access(shm, os.W_OK):
            return
        folder = Path(tempfile.mkdtemp(prefix="lifeguard-fake-neon-", dir=shm))
        try:
            owner = self.postgres.datadir.stat()
            if os.geteuid() == 0:
                os.chown(folder, owner.st_uid, owner.st_gid)
            name = self._temporary_name("fake_neon")
            self._run(
                sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                    sql.Identifier(name), sql.Literal(str(folder))
                )
            )
        except (OSError, psycopg.Error):
            shutil.rmtree(folder, ignore_errors=True)
            return
        self._tablespace, self._tablespace_dir = name, folder

    def _drop_tablespace(self) -> None:
        if self._tablespace:
            with contextlib.suppress(psycopg.Error):
                self._run(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(self._tablespace)))
            self._tablespace = ""
        if self._tablespace_dir is not None:
            shutil.rmtree(self._tablespace_dir, ignore_errors=True)
            self._tablespace_dir = None

    def _copy_database(self, template: str, new: str) -> None:
        strategy = sql.SQL(" STRATEGY FILE_COPY" if self._server_version >= 150000 else "")
        self._while_idle(
            template,
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}{}{}").format(
                sql.Identifier(new),
                sql.Identifier(template),
                sql.Identifier(ROLE_NAME),
                self._in_tablespace(),
                strategy,
            ),
        )
        self._owned_databases.add(new)

    def _rename_database(self, old: str, new: str) -> None:
        self._while_idle(
            old,
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            ),
        )
        self._owned_databases.discard(old)
        self._owned_databases.add(new)

    def _drop_database(self, name: str) -> None:
        self._run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._owned_databases.discard(name)

    def _drop_owned_databases(self) -> None:
        for name in sorted(self._owned_databases):
            self._drop_database(name)

    @staticmethod
    def _temporary_name(prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(8)}"

    def _snapshot(self, database: str, at: datetime) -> _Checkpoint:
        """Copy `database` into a new template database recorded as its state at `at`."""
        name = self._temporary_name("ck")
        lsn = self._current_lsn()
        self._copy_database(database, name)
        return _Checkpoint(at, name, lsn)

    def _current_lsn(self) -> str:
        row = self._admin().execute("SELECT pg_current_wal_lsn()::text").fetchone()
        return str(row[0]) if row else "0/0"

    def _sizes(self, branches: list[_Branch]) -> dict[str, int]:
        if not branches:
            return {}
        rows = self._admin().execute(
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
            ([b.database for b in branches],),
        )
        return {name: int(size) for name, size in rows}


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end after this
    # One write per answer and no Nagle: otherwise each answer waits ~40 ms for an ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    @property
    def fake(self) -> FakeNeon:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def handle(self) -> None:
        fake = self.fake
        if fake.unreachable:
            return  # closed at once, nothing read, nothing answered
        with fake._log_lock:
            fake._connections.add(self.connection)
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass
        finally:
            with fake._log_lock:
                fake._connections.discard(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.fake
        if fake.unreachable:
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            self.command, url.path, query, parsed if isinstance(parsed, dict) else None, headers
        )
        fake._record(record)
        request_id = headers.get("x-request-id") or str(uuid.uuid4())

        delay, fault = fake._take_faults(self.command, url.path)
        if delay is not None:
            time.sleep(delay.seconds)
        if fault is not None and fault.kind == "drop" and not fault.after_processing:
            record.answered = False
            self.close_connection = True
            return
        extra: dict[str, str] = {}
        if fault is not None and fault.kind == "fail":
            status = fault.status
            payload: Json | None = {
                "code": fault.code or "",
                "message": fault.message or _default_message(fault.status),
                "request_id": request_id,
            }
            if fault.retry_after is not None:
                extra["Retry-After"] = f"{fault.retry_after:g}"
        else:
            status, payload = fake._dispatch(
                self.command, url.path, query, raw, headers, request_id
            )
        record.status = status
        if fault is not None and fault.kind == "drop":
            record.answered = False
            self.close_connection = True
            return
        self._send(status, payload, request_id, extra)

    def _send(
        self, status: int, payload: Json | None, request_id: str, extra: dict[str, str]
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Neon-Ret-Request-Id", request_id)
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout): nothing to do


def _default_message(status: int) -> str:
    return {
        400: "bad request",
        401: "authentication failed",
        403: "forbidden",
        404: "not found",
        409: "conflict",
        423: LOCKED_MESSAGE,
        429: "too many requests",
        500: "internal server error",
        502: "bad gateway",
        503: "service unavailable",
        504: "gateway timeout",
    }.get(status, "error")
