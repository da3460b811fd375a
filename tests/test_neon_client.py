"""Unit tests of bot.neon.NeonClient against in-process handlers (httpx.MockTransport)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime as http_date
from typing import Any

import httpx
import pytest

from bot.neon import (
    Branch,
    BranchChange,
    NeonAuthError,
    NeonClient,
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
    Operation,
)
from bot.neon.answers import ConnectionURIResponse
from bot.neon.sender import parse_retry_after
from bot.services.neon_errors import explain_neon_error

API_KEY = "neon-key-SECRET-1234567890abcdef"
PROJECT = "proj-test-123"
PREFIX = f"/api/v2/projects/{PROJECT}"
PASSWORD = "pw-SECRET-npg_abcdef"
URI = f"postgresql://alice:{PASSWORD}@ep-x-123.us-east-2.aws.neon.tech/neondb?sslmode=require"

Handler = Callable[[httpx.Request], httpx.Response]


# ----------------------------------------------------------------------------- builders


def branch_json(branch_id: str = "br-main-1", name: str = "main", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": branch_id, "project_id": PROJECT, "name": name, "current_state": "ready",
        "state_changed_at": "2026-01-13T14:25:00Z", "creation_source": "console",
        "created_at": "2026-01-13T14:25:00Z", "updated_at": "2026-01-13T14:26:00Z",
        "default": False, "protected": False, "cpu_used_sec": 0, "active_time_seconds": 0,
        "compute_time_seconds": 0, "written_data_bytes": 0, "data_transfer_bytes": 0,
    }
    body.update(extra)
    return body


def op_json(op_id: str = "op-1", status: str = "running", action: str = "create_branch",
            **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": op_id, "project_id": PROJECT, "branch_id": "br-new-1", "action": action,
        "status": status, "failures_count": 0, "created_at": "2026-01-13T14:25:00Z",
        "updated_at": "2026-01-13T14:25:01Z", "total_duration_ms": 10,
    }
    body.update(extra)
    return body


def endpoint_json(endpoint_id: str = "ep-x-123", branch_id: str = "br-new-1") -> dict[str, Any]:
    return {"id": endpoint_id, "branch_id": branch_id, "project_id": PROJECT, "type": "read_write",
            "host": f"{endpoint_id}.us-east-2.aws.neon.tech", "current_state": "init",
            "region_id": "aws-us-east-2", "pooler_mode": "transaction"}


def error(status: int, message: str, code: str = "", request_id: str = "req-42",
          headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message,
                                        "request_id": request_id}, headers=headers)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Recorder:
    """Wraps a handler and keeps every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def count(self, method: str, path: str | None = None) -> int:
        return sum(1 for r in self.requests
                   if r.method == method and (path is None or r.url.path == path))


def make(handler: Handler, **kwargs: Any) -> tuple[NeonClient, Recorder, FakeSleep]:
    recorder = Recorder(handler)
    sleep = FakeSleep()
    options: dict[str, Any] = {"transport": httpx.MockTransport(recorder), "sleep": sleep}
    options.update(kwargs)
    client = NeonClient(API_KEY, PROJECT, **options)
    return client, recorder, sleep


def sequence(*responses: httpx.Response | Exception) -> Handler:
    """Answer each request with the next item (an exception is raised)."""
    items = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


@pytest.fixture
def neon_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


# ----------------------------------------------------------------------------- parsing


def test_get_project_parses_typed_fields_and_ignores_unknown_ones() -> None:
    body = {"project": {
        "id": PROJECT, "name": "shop", "region_id": "aws-us-east-2", "pg_version": 17,
        "history_retention_seconds": 86400, "created_at": "2025-12-01T10:00:00Z",
        "branch_logical_size_limit_bytes": 536870912, "synthetic_storage_size": 1234,
        "settings": {"quota": {"logical_size_bytes": 1000}, "allowed_ips": {"ips": []}},
        "brand_new_field": {"anything": True},
    }}
    client, recorder, _ = make(lambda r: httpx.Response(200, json=body))
    project = client.get_project()
    assert project.id == PROJECT
    assert project.pg_version == 17
    assert project.history_retention_seconds == 86400
    assert project.created_at == datetime(2025, 12, 1, 10, tzinfo=UTC)
    assert project.branch_logical_size_limit_bytes == 536870912
    assert project.quota == {"logical_size_bytes": 1000}
    request = recorder.requests[0]
    assert request.url.path == PREFIX
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("lifeguard/")


def test_get_branch_parses_datetimes_as_utc_and_missing_optionals_as_none() -> None:
    body = {"branch": branch_json(
        "br-a-1", "backup-20260113-142500", parent_id="br-main-1",
        parent_timestamp="2026-01-13T16:25:00+02:00", logical_size=28, default=False,
        protected=True, created_by={"name": "alice", "image": ""},
        expires_at="2026-01-20T14:25:00.5Z", restored_as="br-old-1", annotation={"x": 1})}
    client, recorder, _ = make(lambda r: httpx.Response(200, json=body))
    branch = client.get_branch("br-a-1")
    assert recorder.requests[0].url.path == f"{PREFIX}/branches/br-a-1"
    assert branch == Branch(
        id="br-a-1", project_id=PROJECT, name="backup-20260113-142500", current_state="ready",
        default=False, protected=True, created_at=datetime(2026, 1, 13, 14, 25, tzinfo=UTC),
        updated_at=datetime(2026, 1, 13, 14, 26, tzinfo=UTC), parent_id="br-main-1",
        parent_timestamp=datetime(2026, 1, 13, 14, 25, tzinfo=UTC), parent_lsn=None,
        logical_size=28, expires_at=datetime(2026, 1, 20, 14, 25, 0, 500000, tzinfo=UTC),
        created_by_name="alice", restored_from=None, restored_as="br-old-1")
    assert branch.parent_timestamp is not None
    assert branch.parent_timestamp.tzinfo is UTC


def test_other_reads_are_typed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(PREFIX)
        answers: dict[str, Any] = {
            "/branches/count": {"count": 7},
            "/branches/br-a-1/databases": {"databases": [
                {"id": 1, "branch_id": "br-a-1", "name": "neondb", "owner_name": "alice",
                 "created_at": "2026-01-13T14:25:00Z", "updated_at": "2026-01-13T14:25:00Z"}]},
            "/branches/br-a-1/roles": {"roles": [
                {"branch_id": "br-a-1", "name": "alice", "protected": False,
                 "created_at": "2026-01-13T14:25:00Z", "updated_at": "2026-01-13T14:25:00Z"}]},
            "/endpoints": {"endpoints": [endpoint_json()]},
            "/connection_uri": {"uri": URI},
            "/operations/op-9": {"operation": op_json("op-9", "failed", error="disk full",
                                                      failures_count=3)},
        }
        return httpx.Response(200, json=answers[path])

    client, recorder, _ = make(handler)
    assert client.count_branches() == 7
    [database] = client.list_databases("br-a-1")
    assert (database.name, database.owner_name) == ("neondb", "alice")
    assert [role.name for role in client.list_roles("br-a-1")] == ["alice"]
    [endpoint] = client.list_endpoints()
    assert (endpoint.id, endpoint.type, endpoint.current_state) == ("ep-x-123", "read_write",
                                                                     "init")
    assert client.connection_uri("br-a-1", "neondb", "alice", pooled=True) == URI
    uri_request = recorder.requests[-1]
    assert dict(uri_request.url.params) == {"branch_id": "br-a-1", "database_name": "neondb",
                                            "role_name": "alice", "pooled": "true"}
    operation = client.get_operation("op-9")
    assert operation.status == "failed" and operation.error == "disk full"
    assert operation.failures_count == 3 and not operation.succeeded and operation.done


def test_an_answer_off_the_documented_shape_is_a_server_error_naming_the_field() -> None:
    client, _, _ = make(lambda r: httpx.Response(200, json={"branch": {"name": "x"}}))
    with pytest.raises(NeonServerError) as caught:
        client.get_branch("br-a-1")
    assert caught.value.message == "the answer is not what the API documents: branch.id: " \
        "Field required"
    assert caught.value.request == f"GET projects/{PROJECT}/branches/br-a-1"
    wrong_type = branch_json(created_at="yesterday")
    client, _, _ = make(lambda r: httpx.Response(200, json={"branch": wrong_type}))
    with pytest.raises(NeonServerError, match=r"branch\.created_at: Input should be a valid"):
        client.get_branch("br-a-1")
    client, _, _ = make(lambda r: httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(NeonServerError, match="Invalid JSON"):
        client.get_branch("br-a-1")


def test_fields_read_from_nested_places_and_the_secret_uri_is_not_in_repr() -> None:
    body = {"project": {
        "id": PROJECT, "name": "shop", "region_id": "aws-us-east-2", "pg_version": 17,
        "history_retention_seconds": 21600, "created_at": "2025-12-01T10:00:00Z",
        "owner": {"email": "a@example.com", "name": "a", "branches_limit": 10,
                  "subscription_type": "free_v3"}}}
    client, _, _ = make(lambda r: httpx.Response(200, json=body))
    project = client.get_project()
    assert project.branches_limit == 10 and project.quota == {}
    assert project.branch_logical_size_limit_bytes is None
    assert PASSWORD not in repr(ConnectionURIResponse(uri=URI))


# ----------------------------------------------------------------------------- requests


def test_create_branch_sends_rfc3339_utc_and_parses_the_change() -> None:
    answer = {"branch": branch_json("br-new-1", "restore-abc", current_state="init"),
              "endpoints": [endpoint_json()], "operations": [op_json("op-1"), op_json("op-2")],
              "roles": [], "databases": [], "connection_uris": [{"connection_uri": URI}]}
    client, recorder, _ = make(lambda r: httpx.Response(201, json=answer))
    instant = datetime(2026, 1, 13, 15, 25, 0, tzinfo=timezone(timedelta(hours=1)))
    change = client.create_branch(
        "restore-abc", parent_id="br-main-1", parent_timestamp=instant,
        expires_at=datetime(2026, 2, 1, 0, 0, 0, 123456, tzinfo=UTC), protected=True,
        with_endpoint=True)
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", f"{PREFIX}/branches")
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "branch": {"name": "restore-abc", "parent_id": "br-main-1",
                   "parent_timestamp": "2026-01-13T14:25:00Z",
                   "expires_at": "2026-02-01T00:00:00Z", "protected": True},
        "endpoints": [{"type": "read_write"}],
    }
    assert isinstance(change, BranchChange)
    assert change.branch.id == "br-new-1" and change.branch.current_state == "init"
    assert [op.id for op in change.operations] == ["op-1", "op-2"]
    assert [ep.id for ep in change.endpoints] == ["ep-x-123"]


def test_naive_datetimes_are_refused_before_sending() -> None:
    client, recorder, _ = make(lambda r: httpx.Response(500))
    with pytest.raises(ValueError, match="time zone"):
        client.create_branch("b", parent_timestamp=datetime(2026, 1, 13, 14, 25))
    assert recorder.requests == []


def test_delete_restore_and_create_endpoint_requests() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"{PREFIX}/endpoints":
            return httpx.Response(201, json={"endpoint": endpoint_json(),
                                             "operations": [op_json("op-e")]})
        return httpx.Response(200, json={"branch": branch_json("br-a-1", "a"),
                                         "operations": [op_json("op-x")]})

    client, recorder, _ = make(handler)
    client.delete_branch("br-a-1")
    client.restore_branch("br-main-1", source_branch_id="br-main-1",
                          source_timestamp=datetime(2026, 1, 13, 14, 25, 0, 250000, tzinfo=UTC),
                          preserve_under_name="pre-restore-20260113-142600")
    endpoint, operations = client.create_endpoint("br-new-1")
    sent = [(r.method, r.url.path.removeprefix(PREFIX), json.loads(r.content) if r.content
             else None) for r in recorder.requests]
    assert sent == [
        ("DELETE", "/branches/br-a-1", None),
        ("POST", "/branches/br-main-1/restore", {
            "source_branch_id": "br-main-1", "source_timestamp": "2026-01-13T14:25:00.250000Z",
            "preserve_under_name": "pre-restore-20260113-142600"}),
        ("POST", "/endpoints", {"endpoint": {"branch_id": "br-new-1", "type": "read_write"}}),
    ]
    assert endpoint.id == "ep-x-123" and [op.id for op in operations] == ["op-e"]


def test_delete_of_a_missing_branch_is_not_found() -> None:
    client, _, _ = make(lambda r: httpx.Response(204))
    with pytest.raises(NeonNotFound, match="br-gone-1") as caught:
        client.delete_branch("br-gone-1")
    assert caught.value.status == 204


# ----------------------------------------------------------------------------- pagination


def test_list_branches_follows_pagination_next_to_the_end() -> None:
    pages = {
        None: ([branch_json("br-a-1", "a")], "c1"),
        "c1": ([branch_json("br-b-1", "b")], "c2"),
        "c2": ([branch_json("br-c-1", "c", default=True)], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        branches, following = pages[request.url.params.get("cursor")]
        body: dict[str, Any] = {"branches": branches, "annotations": {}}
        if following:
            body["pagination"] = {"next": following, "sort_by": "created_at",
                                  "sort_order": "desc"}
        return httpx.Response(200, json=body)

    client, recorder, _ = make(handler)
    assert [b.name for b in client.list_branches()] == ["a", "b", "c"]
    assert [r.url.params.get("cursor") for r in recorder.requests] == [None, "c1", "c2"]
    assert client.default_branch().id == "br-c-1"


def test_list_branches_stops_on_an_empty_page_and_finds_exact_names() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor"):
            return httpx.Response(200, json={"branches": [], "pagination": {"next": "again"}})
        assert request.url.params["search"].startswith("backup-1")
        return httpx.Response(200, json={
            "branches": [branch_json("br-a-1", "backup-10"), branch_json("br-b-1", "backup-1")],
            "pagination": {"next": "more"}})

    client, recorder, _ = make(handler)
    found = client.find_branch_by_name("backup-1")
    assert found is not None and found.id == "br-b-1"
    assert len(recorder.requests) == 2
    assert client.find_branch_by_name("backup-10x") is None


def test_list_operations_follows_pagination_cursor() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(200, json={"operations": [op_json("op-1"), op_json("op-2")],
                                             "pagination": {"cursor": "k1"}})
        if cursor == "k1":
            return httpx.Response(200, json={"operations": [op_json("op-3")],
                                             "pagination": {"cursor": "k2"}})
        return httpx.Response(200, json={"operations": [], "pagination": {"cursor": "k3"}})

    client, recorder, _ = make(handler)
    assert [op.id for op in client.list_operations()] == ["op-1", "op-2", "op-3"]
    assert [r.url.params.get("cursor") for r in recorder.requests] == [None, "k1", "k2"]
    recorder.requests.clear()
    assert [op.id for op in client.list_operations(limit=2)] == ["op-1", "op-2"]
    assert [r.url.params["limit"] for r in recorder.requests] == ["2"]


# ----------------------------------------------------------------------------- retries


def test_429_is_retried_honouring_retry_after_seconds() -> None:
    client, recorder, sleep = make(sequence(
        error(429, "rate limited", headers={"Retry-After": "2"}),
        error(429, "rate limited", headers={"Retry-After": "3"}),
        httpx.Response(200, json={"count": 1})))
    assert client.count_branches() == 1
    assert len(recorder.requests) == 3
    assert sleep.calls == [2.0, 3.0]


def test_429_retry_after_as_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=5)
    client, _, sleep = make(sequence(
        error(429, "slow down", headers={"Retry-After": http_date(later, usegmt=True)}),
        httpx.Response(200, json={"count": 1})))
    assert client.count_branches() == 1
    assert len(sleep.calls) == 1 and 3.0 <= sleep.calls[0] <= 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


def test_429_until_the_end_is_rate_limited() -> None:
    client, recorder, sleep = make(lambda r: error(429, "too many", headers={"Retry-After": "1"}),
                                   max_attempts=3)
    with pytest.raises(NeonRateLimited, match="too many") as caught:
        client.get_branch("br-a-1")
    assert caught.value.status == 429 and caught.value.request_id == "req-42"
    assert caught.value.attempts == 3
    assert explain_neon_error(caught.value).startswith("Neon is rate-limiting requests")
    assert len(recorder.requests) == 3 and sleep.calls == [1.0, 1.0]


@pytest.mark.parametrize("status", [423, 503])
def test_423_and_503_are_retried_even_for_non_idempotent_posts(status: int) -> None:
    answer = httpx.Response(200, json={"branch": branch_json(), "operations": []})
    client, recorder, sleep = make(sequence(error(status, "busy"), error(status, "busy"), answer))
    change = client.restore_branch("br-main-1", source_branch_id="br-b-1")
    assert change.branch.id == "br-main-1"
    assert recorder.count("POST") == 3
    assert len(sleep.calls) == 2 and all(0 < s <= 15.5 for s in sleep.calls)


def test_423_until_the_end_is_locked() -> None:
    client, recorder, _ = make(lambda r: error(423, "project already has running operations",
                                               code="LOCKED"), max_attempts=4)
    with pytest.raises(NeonLocked) as caught:
        client.create_branch("backup-1")
    assert caught.value.message == "project already has running operations"
    assert caught.value.code == "LOCKED" and caught.value.status == 423
    assert caught.value.attempts == 4
    assert explain_neon_error(caught.value).startswith(
        "Neon is still busy with another operation on this project")
    assert recorder.count("POST") == 4


def test_backoff_grows_and_is_bounded() -> None:
    client, _, sleep = make(lambda r: httpx.Response(500), max_attempts=6,
                            backoff_initial=0.5, backoff_max=4.0)
    with pytest.raises(NeonServerError, match=r"-> 500: Internal Server Error .* after 6 "):
        client.get_project()
    assert len(sleep.calls) == 5
    assert all(0.5 <= s <= 4.5 for s in sleep.calls)
    assert sleep.calls[3] >= 4.0  # 0.5 * 2**3 = 4.0, capped


def test_other_5xx_and_timeouts_are_retried_for_idempotent_requests() -> None:
    def timeout() -> httpx.ReadTimeout:
        return httpx.ReadTimeout("timed out")

    answer = httpx.Response(200, json={"branch": branch_json(), "operations": []})
    client, recorder, _ = make(sequence(httpx.Response(502), timeout(), answer))
    assert client.get_branch("br-main-1").id == "br-main-1"
    assert recorder.count("GET") == 3
    client, recorder, _ = make(sequence(timeout(), httpx.Response(500), answer))
    client.delete_branch("br-main-1")
    assert recorder.count("DELETE") == 3


@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.Response(502),
])
@pytest.mark.parametrize("call", ["restore", "create_endpoint"])
def test_lost_answers_to_unsafe_posts_are_not_resent(
        failure: httpx.Response | Exception, call: str) -> None:
    client, recorder, _ = make(sequence(failure, httpx.Response(200, json={})))
    with pytest.raises(NeonUnreachable) as caught:
        if call == "restore":
            client.restore_branch("br-main-1", source_branch_id="br-b-1")
        else:
            client.create_endpoint("br-b-1")
    assert caught.value.outcome_unknown
    assert "may have carried out the request" in explain_neon_error(caught.value)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("failure", [httpx.ConnectError("[Errno 111] Connection refused"),
                                     httpx.ConnectTimeout("timed out")])
def test_failures_before_sending_are_retried_for_unsafe_posts(failure: Exception) -> None:
    answer = httpx.Response(200, json={"branch": branch_json(), "operations": []})
    client, recorder, _ = make(sequence(failure, answer))
    client.restore_branch("br-main-1", source_branch_id="br-b-1")
    assert recorder.count("POST") == 2


def _create_handler(*, lost: list[httpx.Response | Exception], exists_after: int,
                    created: dict[str, Any]) -> Handler:
    """POSTs get the `lost` failures first; the branch is listed by name once that many
    POSTs have been sent (`exists_after`); later POSTs succeed."""
    state = {"posts": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["posts"] += 1
            if state["posts"] <= len(lost):
                failure = lost[state["posts"] - 1]
                if isinstance(failure, Exception):
                    raise failure
                return failure
            return httpx.Response(201, json={"branch": created,
                                             "operations": [op_json("op-1")]})
        assert request.url.params.get("search") == created["name"]
        listed = [created] if state["posts"] >= exists_after else []
        return httpx.Response(200, json={"branches": listed})

    return handler


@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.Response(500),
    httpx.Response(504),
])
def test_create_whose_answer_was_lost_is_not_resent_when_the_branch_exists(
        failure: httpx.Response | Exception) -> None:
    created = branch_json("br-new-1", "backup-20260113-142500", current_state="init")
    client, recorder, _ = make(_create_handler(lost=[failure], exists_after=1, created=created))
    change = client.create_branch("backup-20260113-142500")
    assert recorder.count("POST") == 1
    assert change.branch.id == "br-new-1"
    assert change.operations == ()


def test_create_whose_answer_was_lost_is_resent_when_the_branch_does_not_exist() -> None:
    created = branch_json("br-new-1", "backup-x", current_state="init")
    client, recorder, _ = make(_create_handler(lost=[httpx.ReadTimeout("timed out")],
                                               exists_after=99, created=created))
    change = client.create_branch("backup-x")
    assert recorder.count("POST") == 2
    assert [op.id for op in change.operations] == ["op-1"]
    assert [r.method for r in recorder.requests] == ["POST", "GET", "POST"]


def test_create_resent_after_a_lost_answer_that_hits_409_returns_the_branch() -> None:
    created = branch_json("br-new-1", "backup-y")
    state = {"posts": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["posts"] += 1
            if state["posts"] == 1:
                raise httpx.ReadTimeout("timed out")
            return error(409, "branch with that name already exists", code="CONFLICT")
        listed = [created] if state["posts"] >= 2 else []  # visible only late
        return httpx.Response(200, json={"branches": listed})

    client, recorder, _ = make(handler)
    assert client.create_branch("backup-y").branch.id == "br-new-1"
    assert recorder.count("POST") == 2


def test_create_conflict_without_a_lost_answer_is_a_conflict() -> None:
    client, recorder, _ = make(lambda r: error(409, "branch name taken", code="CONFLICT"))
    with pytest.raises(NeonConflict, match="branch name taken"):
        client.create_branch("backup-z")
    assert len(recorder.requests) == 1


def test_create_lost_every_time_says_the_outcome_is_unknown() -> None:
    created = branch_json("br-new-1", "backup-w")
    client, recorder, _ = make(_create_handler(lost=[httpx.ReadTimeout("timed out")] * 9,
                                               exists_after=99, created=created),
                               max_attempts=3)
    with pytest.raises(NeonUnreachable) as caught:
        client.create_branch("backup-w")
    assert caught.value.outcome_unknown and caught.value.attempts == 3
    assert recorder.count("POST") == 3 and recorder.count("GET") == 3


# ----------------------------------------------------------------------------- errors


def test_401_is_an_auth_error_carrying_neons_answer_and_no_retry() -> None:
    client, recorder, _ = make(lambda r: error(401, "authentication required", code="",
                                               request_id="req-401"))
    with pytest.raises(NeonAuthError) as caught:
        client.get_project()
    assert (caught.value.status, caught.value.code, caught.value.message,
            caught.value.request_id) == (401, None, "authentication required", "req-401")
    assert str(caught.value) == (f"GET projects/{PROJECT} -> 401: authentication required "
                                 "(request id req-401)")
    assert explain_neon_error(caught.value).startswith(
        "Neon refused the API key. An admin should check `NEON_API_KEY`")
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(("status", "cls", "words"), [
    (403, NeonPermissionError, "The Neon API key may not do this in this project."),
    (404, NeonNotFound, "Neon does not know it: neon says no."),
    (409, NeonConflict, "it conflicts with the project's current state: neon says no."),
    (400, NeonRequestRejected, "Neon refused the request: neon says no."),
    (422, NeonRequestRejected, "Neon refused the request: neon says no."),
])
def test_4xx_map_to_the_error_hierarchy(status: int, cls: type[NeonError], words: str) -> None:
    client, recorder, _ = make(lambda r: error(status, "neon says no", code="X"))
    with pytest.raises(cls) as caught:
        client.get_branch("br-a-1")
    assert (caught.value.status, caught.value.code, caught.value.message,
            caught.value.request_id) == (status, "X", "neon says no", "req-42")
    assert str(caught.value) == (f"GET projects/{PROJECT}/branches/br-a-1 -> {status} X: "
                                 "neon says no (request id req-42)")
    assert words in explain_neon_error(caught.value)
    assert len(recorder.requests) == 1


def test_an_error_answer_without_a_body_still_says_something() -> None:
    client, _, _ = make(lambda r: httpx.Response(404, headers={"X-Request-ID": "req-h"}))
    with pytest.raises(NeonNotFound) as caught:
        client.get_project()
    assert (caught.value.message, caught.value.code, caught.value.request_id) == (
        "Not Found", None, "req-h")


def test_connection_refused_is_unreachable_after_retries() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client, recorder, sleep = make(refuse, max_attempts=4)
    with pytest.raises(NeonUnreachable) as caught:
        client.count_branches()
    assert caught.value.message == "console.neon.tech: [Errno 111] Connection refused"
    assert caught.value.attempts == 4 and not caught.value.outcome_unknown
    assert explain_neon_error(caught.value) == (
        "Could not reach Neon (console.neon.tech: [Errno 111] Connection refused). "
        "Try again in a few minutes.")
    assert len(recorder.requests) == 4 and len(sleep.calls) == 3


def test_connection_refused_by_a_real_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = FakeSleep()
    client = NeonClient(API_KEY, PROJECT, base_url=f"http://127.0.0.1:{port}/api/v2",
                        max_attempts=3, sleep=sleep, timeout=2.0)
    with client, pytest.raises(NeonUnreachable, match=f"127.0.0.1:{port}: "):
        client.get_project()
    assert len(sleep.calls) == 2


# ----------------------------------------------------------------------------- waiting


def _operations_handler(timeline: dict[str, list[dict[str, Any]]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        op_id = request.url.path.rsplit("/", 1)[-1]
        steps = timeline[op_id]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        return httpx.Response(200, json={"operation": step})

    return handler


def test_wait_for_operations_polls_until_finished() -> None:
    client, recorder, sleep = make(_operations_handler({
        "op-1": [op_json("op-1", "scheduling"), op_json("op-1", "running"),
                 op_json("op-1", "finished")],
        "op-2": [op_json("op-2", "running"), op_json("op-2", "skipped")],
    }), poll_interval=0.25)
    given = [Operation("op-1", "create_branch", "running", datetime.now(UTC),
                       datetime.now(UTC)), "op-2"]
    done = client.wait_for_operations(given)
    assert [(op.id, op.status) for op in done] == [("op-1", "finished"), ("op-2", "skipped")]
    assert sleep.calls == [0.1, 0.2]  # quick first polls, doubling up to poll_interval
    assert len(recorder.requests) == 5  # op-1 three times, op-2 twice


def test_wait_for_operations_skips_already_finished_ones() -> None:
    client, recorder, _ = make(lambda r: httpx.Response(500))
    finished = Operation("op-1", "start_compute", "finished", datetime.now(UTC),
                         datetime.now(UTC))
    assert client.wait_for_operations([finished]) == [finished]
    assert client.wait_for_operations([]) == []
    assert recorder.requests == []


def test_wait_for_operations_failure_shows_the_action_and_error() -> None:
    client, _, _ = make(_operations_handler({
        "op-1": [op_json("op-1", "running", action="create_timeline"),
                 op_json("op-1", "failed", action="create_timeline",
                         error="timestamp is outside the history retention window")],
    }))
    with pytest.raises(NeonOperationFailed) as caught:
        client.wait_for_operations(["op-1"])
    assert caught.value.operation.id == "op-1"
    assert explain_neon_error(caught.value) == (
        "Neon's create_timeline operation ended failed: timestamp is outside the history "
        "retention window.")


def test_wait_for_operations_times_out() -> None:
    client, recorder, sleep = make(_operations_handler({"op-1": [op_json("op-1", "running")]}),
                                   poll_interval=1.0, operation_timeout=300.0)
    with pytest.raises(NeonOperationTimeout, match=r"op-1 \(running\)"):
        client.wait_for_operations(["op-1"], timeout=5.0)
    # quick polls (0.1 s doubling, at most 0.5 s) for the first 10 s, then poll_interval
    assert sleep.calls == pytest.approx([0.1, 0.2, 0.4] + [0.5] * 8 + [0.3])
    assert len(recorder.requests) == 13  # a poll before each sleep and one after the last
    sleep.calls.clear()
    with pytest.raises(NeonOperationTimeout, match="after 300s"):
        client.wait_for_operations(["op-1"])
    assert sum(sleep.calls) == pytest.approx(300.0)


def test_wait_for_branch_ready() -> None:
    states = ["init", "init", "ready"]

    def handler(request: httpx.Request) -> httpx.Response:
        state = states.pop(0) if len(states) > 1 else states[0]
        return httpx.Response(200, json={"branch": branch_json("br-a-1", "a",
                                                               current_state=state)})

    client, _, sleep = make(handler, poll_interval=0.5)
    assert client.wait_for_branch_ready("br-a-1").current_state == "ready"
    assert sleep.calls == [0.1, 0.2]
    states[:] = ["resetting"]
    with pytest.raises(NeonOperationTimeout, match="still resetting"):
        client.wait_for_branch_ready("br-a-1", timeout=2)


# ----------------------------------------------------------------------------- wording


def _one_of_each_error() -> list[NeonError]:
    failed = Operation("op-1", "create_branch", "failed", datetime.now(UTC), datetime.now(UTC),
                       error="disk full")
    errors: list[NeonError] = [NeonOperationFailed(failed)]
    errors += [cls("what Neon said", status=400) for cls in NeonError.__subclasses__()
               if cls is not NeonOperationFailed]
    return errors


def test_every_neon_error_has_words_of_its_own_for_people() -> None:
    """explain_neon_error is the one place that words Neon errors: a new kind of error
    without its own sentence falls to the generic refusal and fails here."""
    generic = "Neon refused the request: what Neon said."
    worded = {type(error): explain_neon_error(error) for error in _one_of_each_error()}
    assert len(worded) == 11
    assert [cls for cls, words in worded.items() if words == generic] == [NeonRequestRejected]
    for words in worded.values():
        assert words.endswith(".") and "None" not in words


@pytest.mark.parametrize(("error", "words"), [
    (NeonServerError("Bad Gateway", status=502),
     "Neon had an internal error (Bad Gateway). Try again in a few minutes."),
    (NeonOperationTimeout("still unfinished after 5s: create_branch op-1 (running)"),
     "Neon did not finish in time (still unfinished after 5s: create_branch op-1 (running)); "
     "it may still finish. Check again in a few minutes."),
    (NeonNotFound("the branch does not exist or is already deleted", status=204),
     "Neon does not know it: the branch does not exist or is already deleted."),
    (NeonUnreachable("h: no answer within 30s", outcome_unknown=True),
     "Could not reach Neon (h: no answer within 30s), and Neon may have carried out the "
     "request before the answer was lost. Check the project in the Neon console before "
     "trying again."),
])
def test_explain_neon_error_says_the_cause_then_what_to_do(error: NeonError, words: str) -> None:
    assert explain_neon_error(error) == words


# ----------------------------------------------------------------------------- secrets


def test_secrets_never_reach_error_messages_or_logs(
        neon_logs: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(PREFIX)
        if path == "/connection_uri":
            return httpx.Response(200, json={"uri": URI})
        if path == "/branches/br-echo-1":
            # A hostile or buggy answer that echoes secrets back.
            return error(400, f"bad key {API_KEY} for {URI}")
        if path == "/branches/br-lost-1/restore":
            raise httpx.ReadTimeout(f"timed out talking to {URI}")
        return error(401, "authentication required")

    client, _, _ = make(handler)
    assert client.connection_uri("br-a-1", "neondb", "alice") == URI
    errors: list[NeonError] = []
    for action in (lambda: client.get_branch("br-echo-1"),
                   lambda: client.restore_branch("br-lost-1", source_branch_id="br-a-1"),
                   client.get_project):
        with pytest.raises(NeonError) as caught:
            action()
        errors.append(caught.value)
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(client)]
    texts += [explain_neon_error(e) for e in errors]
    texts.append(neon_logs.text)
    texts.extend(str(record.args) for record in neon_logs.records)
    assert any(record.name == "lifeguard.neon" for record in neon_logs.records)
    for text in texts:
        assert API_KEY not in text
        assert PASSWORD not in text
        assert URI not in text


def test_each_request_is_logged_at_debug(neon_logs: pytest.LogCaptureFixture) -> None:
    client, _, _ = make(sequence(error(503, "later", request_id="req-a"),
                                 httpx.Response(200, json={"count": 3},
                                                headers={"X-Neon-Ret-Request-Id": "req-b"})))
    client.count_branches()
    lines = [r.getMessage() for r in neon_logs.records
             if r.name == "lifeguard.neon" and r.levelno == logging.DEBUG]
    requests = [line for line in lines if "->" in line]
    assert len(requests) == 2
    assert f"GET projects/{PROJECT}/branches/count -> 503" in requests[0]
    assert "attempt 1/6" in requests[0]
    assert "-> 200 (request id req-b, attempt 2/6)" in requests[1]


def test_context_manager_closes_the_client() -> None:
    client, _, _ = make(lambda r: httpx.Response(200, json={"count": 1}))
    with client as same:
        assert same is client
    with pytest.raises(RuntimeError):
        client.count_branches()
