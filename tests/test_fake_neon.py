"""The fake Neon API: behaviour over real HTTP, real data in real databases, and its answers
checked against Neon's published OpenAPI document."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from tests.support.fake_neon import LOCKED_MESSAGE, ROUTES, FakeNeon
from tests.support.postgres import PostgresServer

SPEC_PATH = Path(__file__).parent / "contracts" / "neon-public-v2.yaml"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake(postgres: PostgresServer) -> Iterator[FakeNeon]:
    with FakeNeon(postgres, operation_seconds=0.05) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_project(fake: FakeNeon) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeNeon) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fake.url, headers={"Authorization": f"Bearer {fake.api_key}"}, timeout=10
    ) as http:
        yield http


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    # Loaded once: the document is 430 KB. Checking the document itself is not our job.
    return OpenAPI.from_file_path(str(SPEC_PATH), config=Config(spec_validator_cls=None))


# --------------------------------------------------------------------------- helpers


def project(fake: FakeNeon) -> str:
    return f"/projects/{fake.project_id}"


def wait_for(client: httpx.Client, fake: FakeNeon, operations: list[dict[str, Any]]) -> None:
    deadline = time.monotonic() + 10
    for operation in operations:
        while True:
            answer = client.get(f"{project(fake)}/operations/{operation['id']}")
            assert answer.status_code == 200
            if answer.json()["operation"]["status"] == "finished":
                break
            assert time.monotonic() < deadline, "operation did not finish"
            time.sleep(0.02)


def create_branch(
    client: httpx.Client, fake: FakeNeon, *, endpoint: bool = True, **branch: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"branch": branch}
    if endpoint:
        body["endpoints"] = [{"type": "read_write"}]
    answer = client.post(f"{project(fake)}/branches", json=body)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    wait_for(client, fake, created["operations"])
    return created


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM item ORDER BY name")]


def uri_of(client: httpx.Client, fake: FakeNeon, branch_id: str) -> str:
    answer = client.get(
        f"{project(fake)}/connection_uri",
        params={"branch_id": branch_id, "database_name": "neondb", "role_name": "neondb_owner"},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["uri"])


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def assert_error(answer: httpx.Response, status: int, message_part: str = "") -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"code", "message", "request_id"}
    assert message_part in body["message"]
    assert body["request_id"] == answer.headers["x-neon-ret-request-id"]
    return body


# --------------------------------------------------------------------------- branches


def test_create_list_get_and_delete_a_branch(client: httpx.Client, fake: FakeNeon) -> None:
    main = fake.default_branch()
    answer = client.post(
        f"{project(fake)}/branches",
        json={"branch": {"name": "dev"}, "endpoints": [{"type": "read_write"}]},
    )
    assert answer.status_code == 201
    created = answer.json()
    branch = created["branch"]
    assert branch["name"] == "dev" and branch["id"].startswith("br-")
    assert branch["parent_id"] == main["id"] and not branch["default"]
    assert branch["current_state"] == "init"
    assert [o["action"] for o in created["operations"]] == ["create_branch", "start_compute"]
    assert created["endpoints"][0]["branch_id"] == branch["id"]
    assert created["databases"][0]["name"] == "neondb"
    assert created["roles"][0]["name"] == "neondb_owner"
    assert created["connection_uris"][0]["connection_uri"].startswith("postgresql://")
    wait_for(client, fake, created["operations"])

    got = client.get(f"{project(fake)}/branches/{branch['id']}").json()["branch"]
    assert got["current_state"] == "ready"
    listed = client.get(f"{project(fake)}/branches").json()["branches"]
    assert {b["name"] for b in listed} == {"main", "dev"}
    assert client.get(f"{project(fake)}/branches/count").json() == {"count": 2}

    deleted = client.delete(f"{project(fake)}/branches/{branch['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["branch"]["id"] == branch["id"]
    actions = [o["action"] for o in deleted.json()["operations"]]
    assert actions == ["suspend_compute", "delete_timeline"]
    wait_for(client, fake, deleted.json()["operations"])
    assert_error(client.get(f"{project(fake)}/branches/{branch['id']}"), 404, "not found")
    # The document: 204 when the branch doesn't exist or has already been deleted.
    assert client.delete(f"{project(fake)}/branches/{branch['id']}").status_code == 204
    assert [b["name"] for b in fake.branches()] == ["main"]


def test_a_new_branch_holds_a_real_copy_of_its_parent(client: httpx.Client, fake: FakeNeon) -> None:
    execute(
        fake.connect_url("main"),
        "CREATE TABLE item (name text)",
        "INSERT INTO item VALUES ('a'), ('b')",
    )
    dev = create_branch(client, fake, name="dev")["branch"]
    dev_uri = uri_of(client, fake, dev["id"])
    assert dev_uri == fake.connect_url(dev["id"]) == fake.connect_url("dev")
    assert names(dev_uri) == ["a", "b"]

    execute(dev_uri, "INSERT INTO item VALUES ('only-in-dev')")
    assert names(fake.connect_url("main")) == ["a", "b"]
    assert names(dev_uri) == ["a", "b", "only-in-dev"]
    assert fake.branch_by_name("dev")["logical_size"] > 0  # type: ignore[index]


def test_a_branch_at_a_past_instant_holds_the_state_recorded_then(
    client: httpx.Client, fake: FakeNeon
) -> None:
    main_url = fake.connect_url("main")
    execute(main_url, "CREATE TABLE item (name text)", "INSERT INTO item VALUES ('A')")
    t1 = fake.checkpoint()
    execute(main_url, "INSERT INTO item VALUES ('B')")
    t2 = fake.checkpoint()
    assert t1 < t2
    between = t1 + (t2 - t1) / 2

    then = create_branch(client, fake, name="then", parent_timestamp=iso(between))["branch"]
    assert names(fake.connect_url(then["id"])) == ["A"]
    later = create_branch(client, fake, name="later", parent_timestamp=iso(t2))["branch"]
    assert names(fake.connect_url(later["id"])) == ["A", "B"]
    by_lsn = create_branch(client, fake, name="by-lsn", parent_lsn=then["parent_lsn"])["branch"]
    assert names(fake.connect_url(by_lsn["id"])) == ["A"]

    # Older than the first checkpoint (but inside the window): the state at creation,
    # when the table did not exist yet.
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    early = create_branch(client, fake, name="early", parent_timestamp=iso(hour_ago))["branch"]
    with psycopg.connect(fake.connect_url(early["id"])) as conn:
        assert conn.execute("SELECT to_regclass('item')").fetchone() == (None,)

    # A checkpoint of another branch, at an explicit instant.
    execute(fake.connect_url("later"), "INSERT INTO item VALUES ('C')")
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    assert fake.checkpoint("later", at=five_minutes_ago) == five_minutes_ago


def test_instants_outside_the_restore_window_are_refused(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.history_retention_seconds = 3600
    now = datetime.now(UTC)
    for instant, words in (
        (now + timedelta(minutes=5), "in the future"),
        (now - timedelta(hours=2), "history retention"),
    ):
        answer = client.post(
            f"{project(fake)}/branches", json={"branch": {"parent_timestamp": iso(instant)}}
        )
        assert_error(answer, 400, words)
    project_info = client.get(project(fake)).json()["project"]
    assert project_info["history_retention_seconds"] == 3600
    assert len(fake.branches()) == 1


def test_operations_run_for_a_while_and_lock_the_project(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.operation_seconds = 0.4
    created = client.post(
        f"{project(fake)}/branches",
        json={"branch": {"name": "slow"}, "endpoints": [{"type": "read_write"}]},
    ).json()
    branch_id = created["branch"]["id"]
    assert created["branch"]["current_state"] == "init"
    assert created["operations"][0]["status"] == "scheduling"

    locked = client.post(f"{project(fake)}/branches", json={"branch": {"name": "other"}})
    assert_error(locked, 423, LOCKED_MESSAGE)
    assert_error(client.delete(f"{project(fake)}/branches/{branch_id}"), 423, LOCKED_MESSAGE)
    # Calls that schedule no operation (the document shows `operations: []`) still work.
    renamed = client.patch(
        f"{project(fake)}/branches/{branch_id}", json={"branch": {"name": "slow-renamed"}}
    )
    assert renamed.status_code == 200 and renamed.json()["operations"] == []

    seen: set[str] = set()
    first = created["operations"][0]["id"]
    while "finished" not in seen:
        operation = client.get(f"{project(fake)}/operations/{first}").json()["operation"]
        seen.add(operation["status"])
        time.sleep(0.02)
    assert "running" in seen
    assert operation["total_duration_ms"] >= 250
    assert fake.branch_by_name("slow-renamed")["current_state"] == "init"  # type: ignore[index]
    wait_for(client, fake, created["operations"])
    assert fake.branch_by_name("slow-renamed")["current_state"] == "ready"  # type: ignore[index]
    assert client.post(f"{project(fake)}/branches", json={}).status_code == 201


# --------------------------------------------------------------------------- faults


def test_fail_next_answers_429_with_retry_after_and_does_nothing(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.fail_next(429, retry_after=2, method="POST", path_contains="/branches")
    assert client.get(project(fake)).status_code == 200  # not matching: untouched
    limited = client.post(f"{project(fake)}/branches", json={"branch": {"name": "x"}})
    assert_error(limited, 429)
    assert limited.headers["retry-after"] == "2"
    assert fake.branch_by_name("x") is None
    assert (
        client.post(f"{project(fake)}/branches", json={"branch": {"name": "x"}}).status_code == 201
    )

    fake.fail_next(503, times=2, code="UNAVAILABLE", message="try later")
    assert client.get(project(fake)).json()["code"] == "UNAVAILABLE"
    assert client.get(project(fake)).json()["message"] == "try later"
    assert client.get(project(fake)).status_code == 200
    assert [r.status for r in fake.requests] == [200, 429, 201, 503, 503, 200]
    assert [r.status for r in fake.mutations()] == [201]


def test_drop_next_after_processing_creates_the_branch_but_loses_the_answer(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.drop_next(after_processing=True, method="POST")
    with pytest.raises(httpx.TransportError):
        client.post(f"{project(fake)}/branches", json={"branch": {"name": "lost-answer"}})
    assert fake.branch_by_name("lost-answer") is not None
    listed = client.get(f"{project(fake)}/branches", params={"search": "lost"}).json()
    assert [b["name"] for b in listed["branches"]] == ["lost-answer"]
    lost = fake.requests[0]
    assert (lost.method, lost.status, lost.answered) == ("POST", 201, False)
    assert lost.path == f"/api/v2{project(fake)}/branches"
    assert lost.body == {"branch": {"name": "lost-answer"}}
    assert lost.headers["authorization"] == f"Bearer {fake.api_key}"
    assert fake.requests[1].query == {"search": "lost"}
    assert fake.mutations() == [lost]

    fake.operation_seconds = 0
    fake.drop_next(method="POST")  # before processing: nothing happens
    with pytest.raises(httpx.TransportError):
        client.post(f"{project(fake)}/branches", json={"branch": {"name": "never"}})
    assert fake.branch_by_name("never") is None
    assert (fake.requests[-1].status, fake.requests[-1].answered) == (0, False)


def test_delay_next_and_an_unreachable_server(client: httpx.Client, fake: FakeNeon) -> None:
    fake.delay_next(0.5, path_contains="/branches")
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{project(fake)}/branches", timeout=0.1)
    assert client.get(f"{project(fake)}/branches").status_code == 200

    fake.unreachable = True
    with pytest.raises(httpx.TransportError):
        client.get(project(fake))
    fake.unreachable = False
    assert client.get(project(fake)).status_code == 200


# --------------------------------------------------------------------------- restore


def test_restore_keeps_the_replaced_state_under_the_preserved_name(
    client: httpx.Client, fake: FakeNeon
) -> None:
    main = fake.default_branch()
    execute(
        fake.connect_url("main"), "CREATE TABLE item (name text)", "INSERT INTO item VALUES ('old')"
    )
    fix = create_branch(client, fake, name="fix")["branch"]
    execute(fake.connect_url(fix["id"]), "INSERT INTO item VALUES ('fixed')")
    execute(fake.connect_url("main"), "INSERT INTO item VALUES ('broken')")
    main_uri = uri_of(client, fake, main["id"])
    endpoints = f"{project(fake)}/branches/{main['id']}/endpoints"
    main_endpoints = [e["id"] for e in client.get(endpoints).json()["endpoints"]]

    answer = client.post(
        f"{project(fake)}/branches/{main['id']}/restore",
        json={"source_branch_id": fix["id"], "preserve_under_name": "pre-restore-1"},
    )
    assert answer.status_code == 200, answer.text
    restored = answer.json()
    assert restored["branch"]["id"] == main["id"]
    assert restored["branch"]["current_state"] == "resetting"
    assert restored["operations"]
    wait_for(client, fake, restored["operations"])

    assert names(main_uri) == ["fixed", "old"]  # same id, same URI, the source's data
    assert uri_of(client, fake, main["id"]) == main_uri
    assert [e["id"] for e in client.get(endpoints).json()["endpoints"]] == main_endpoints
    backup = fake.branch_by_name("pre-restore-1")
    assert backup is not None
    assert names(fake.connect_url(backup["id"])) == ["broken", "old"]
    main_now = fake.default_branch()
    assert main_now["id"] == main["id"] and main_now["parent_id"] == backup["id"]
    assert "last_reset_at" in main_now
    assert fake.branch_by_name("fix")["parent_id"] == backup["id"]  # type: ignore[index]


def test_restore_from_its_own_history_needs_a_preserved_name(
    client: httpx.Client, fake: FakeNeon
) -> None:
    main = fake.default_branch()
    main_url = fake.connect_url("main")
    execute(main_url, "CREATE TABLE item (name text)", "INSERT INTO item VALUES ('good')")
    good = fake.checkpoint()
    execute(main_url, "DELETE FROM item")
    restore = f"{project(fake)}/branches/{main['id']}/restore"

    assert_error(client.post(restore, json={"source_branch_id": main["id"]}), 400)
    assert_error(
        client.post(restore, json={"source_branch_id": main["id"], "source_timestamp": iso(good)}),
        400,
        "preserve_under_name",
    )
    answer = client.post(
        restore,
        json={
            "source_branch_id": main["id"],
            "source_timestamp": iso(good),
            "preserve_under_name": "main-before",
        },
    )
    assert answer.status_code == 200, answer.text
    wait_for(client, fake, answer.json()["operations"])
    assert names(main_url) == ["good"]
    assert names(fake.connect_url("main-before")) == []


def test_reset_from_parent_replaces_the_data_and_keeps_no_backup(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.operation_seconds = 0
    main = fake.default_branch()
    execute(
        fake.connect_url("main"), "CREATE TABLE item (name text)", "INSERT INTO item VALUES ('a')"
    )
    dev = create_branch(client, fake, name="dev")["branch"]
    dev_uri = uri_of(client, fake, dev["id"])
    execute(dev_uri, "INSERT INTO item VALUES ('dev-only')")
    execute(fake.connect_url("main"), "INSERT INTO item VALUES ('b')")

    answer = client.post(
        f"{project(fake)}/branches/{dev['id']}/restore", json={"source_branch_id": main["id"]}
    )
    assert answer.status_code == 200, answer.text
    assert names(dev_uri) == ["a", "b"]
    assert len(fake.branches()) == 2
    assert fake.branch_by_name("dev")["parent_id"] == main["id"]  # type: ignore[index]

    client.patch(f"{project(fake)}/branches/{dev['id']}", json={"branch": {"protected": True}})
    refused = client.post(
        f"{project(fake)}/branches/{dev['id']}/restore", json={"source_branch_id": main["id"]}
    )
    assert_error(refused, 422, "protected")


# --------------------------------------------------------------------------- refusals


def test_a_wrong_api_key_or_project_is_refused(client: httpx.Client, fake: FakeNeon) -> None:
    wrong = httpx.get(f"{fake.url}{project(fake)}", headers={"Authorization": "Bearer nope"})
    body = assert_error(wrong, 401, "authentication failed")
    assert body["code"] == ""
    assert_error(httpx.get(f"{fake.url}{project(fake)}"), 401)
    own_id = client.get(project(fake), headers={"X-Request-ID": "req-42"})
    assert own_id.headers["x-neon-ret-request-id"] == "req-42"

    fake.api_key = "rotated"
    assert_error(client.get(project(fake)), 401)
    fake.api_key = client.headers["Authorization"].removeprefix("Bearer ")
    assert_error(client.get("/projects/no-such-project"), 404)
    assert_error(client.get(f"{project(fake)}/nothing-here"), 404)
    assert_error(client.put(f"{project(fake)}/branches"), 405)


def test_branches_that_must_not_be_deleted(client: httpx.Client, fake: FakeNeon) -> None:
    fake.operation_seconds = 0
    main = fake.default_branch()
    assert_error(client.delete(f"{project(fake)}/branches/{main['id']}"), 422, "default")

    guarded = create_branch(client, fake, name="guarded", protected=True)["branch"]
    assert_error(client.delete(f"{project(fake)}/branches/{guarded['id']}"), 422, "protected")

    parent = create_branch(client, fake, name="parent")["branch"]
    create_branch(client, fake, name="child", parent_id=parent["id"])
    assert_error(client.delete(f"{project(fake)}/branches/{parent['id']}"), 422, "child")

    # Another default: the old one is still the root branch.
    made_default = client.post(f"{project(fake)}/branches/{parent['id']}/set_as_default")
    assert made_default.status_code == 200 and made_default.json()["branch"]["default"]
    assert fake.default_branch()["id"] == parent["id"]
    assert_error(client.delete(f"{project(fake)}/branches/{main['id']}"), 422, "root")
    assert len(fake.branches()) == 4


def test_branch_creation_refusals(client: httpx.Client, fake: FakeNeon) -> None:
    fake.operation_seconds = 0
    create_branch(client, fake, name="taken")
    branches = f"{project(fake)}/branches"
    assert_error(client.post(branches, json={"branch": {"name": "taken"}}), 409, "already exists")
    assert_error(client.post(branches, json={"branch": {"parent_id": "br-none-1"}}), 404)
    assert_error(client.post(branches, json={"endpoints": [{"type": "huge"}]}), 400)
    assert_error(client.post(branches, content=b"{not json"), 400)

    fake.branch_limit = 3
    assert client.post(branches, json={"branch": {"name": "third"}}).status_code == 201
    over = assert_error(client.post(branches, json={"branch": {"name": "fourth"}}), 422)
    assert over["code"] == "BRANCHES_LIMIT_EXCEEDED"
    owner = client.get(project(fake)).json()["project"]["owner"]
    assert owner["branches_limit"] == 3


def test_listing_searches_sorts_and_pages(client: httpx.Client, fake: FakeNeon) -> None:
    fake.operation_seconds = 0
    for name in ("backup-b", "backup-a", "restore-x", "backup-c"):
        create_branch(client, fake, name=name, endpoint=False)
    branches = f"{project(fake)}/branches"

    found = client.get(
        branches, params={"search": "BACKUP", "sort_by": "name", "sort_order": "asc"}
    )
    assert [b["name"] for b in found.json()["branches"]] == ["backup-a", "backup-b", "backup-c"]
    main_id = fake.default_branch()["id"]
    by_id = client.get(branches, params={"search": main_id[3:12]}).json()["branches"]
    assert [b["id"] for b in by_id] == [main_id]
    count = client.get(f"{branches}/count", params={"search": "backup"}).json()
    assert count == {"count": 3}

    seen, cursor = [], None
    while True:
        params = {"sort_by": "name", "sort_order": "desc", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = client.get(branches, params=params).json()
        assert len(page["branches"]) <= 2
        seen += [b["name"] for b in page["branches"]]
        cursor = page["pagination"].get("next")
        if not cursor:
            break
    assert seen == ["restore-x", "main", "backup-c", "backup-b", "backup-a"]

    newest_first = client.get(branches).json()["branches"]  # default: updated_at desc
    assert newest_first[0]["name"] == "backup-c"

    operations = client.get(f"{project(fake)}/operations", params={"limit": 3}).json()
    assert len(operations["operations"]) == 3
    rest = client.get(
        f"{project(fake)}/operations", params={"cursor": operations["pagination"]["cursor"]}
    ).json()
    assert len(rest["operations"]) == 1 and "pagination" not in rest
    assert [o["action"] for o in rest["operations"]] == ["create_branch"]


def test_connection_uris_endpoints_roles_and_databases(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.operation_seconds = 0
    bare = create_branch(client, fake, name="bare", endpoint=False)
    assert "connection_uris" not in bare and bare["endpoints"] == []
    branch_id = bare["branch"]["id"]
    params = {"branch_id": branch_id, "database_name": "neondb", "role_name": "neondb_owner"}
    assert_error(client.get(f"{project(fake)}/connection_uri", params=params), 404, "endpoint")
    assert_error(
        client.get(f"{project(fake)}/connection_uri", params={"database_name": "neondb"}), 400
    )

    added = client.post(
        f"{project(fake)}/endpoints",
        json={"endpoint": {"branch_id": branch_id, "type": "read_write"}},
    )
    assert added.status_code == 201
    assert [o["action"] for o in added.json()["operations"]] == ["start_compute"]
    again = client.post(
        f"{project(fake)}/endpoints",
        json={"endpoint": {"branch_id": branch_id, "type": "read_write"}},
    )
    assert_error(again, 409)
    uri = client.get(f"{project(fake)}/connection_uri", params=params).json()["uri"]
    execute(uri, "CREATE TABLE item (name text)", "INSERT INTO item VALUES ('x')")

    reader = client.post(
        f"{project(fake)}/endpoints",
        json={"endpoint": {"branch_id": branch_id, "type": "read_only"}},
    ).json()["endpoint"]
    read_only_uri = client.get(
        f"{project(fake)}/connection_uri", params={**params, "endpoint_id": reader["id"]}
    ).json()["uri"]
    assert names(read_only_uri) == ["x"]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        execute(read_only_uri, "INSERT INTO item VALUES ('y')")
    listed = client.get(f"{project(fake)}/endpoints").json()["endpoints"]
    assert len(listed) == 3  # main's, and two on "bare"

    base = f"{project(fake)}/branches/{branch_id}"
    assert [d["name"] for d in client.get(f"{base}/databases").json()["databases"]] == ["neondb"]
    assert [r["name"] for r in client.get(f"{base}/roles").json()["roles"]] == ["neondb_owner"]
    password = client.get(f"{base}/roles/neondb_owner/reveal_password").json()["password"]
    assert password and password in uri
    assert_error(client.get(f"{base}/roles/nobody/reveal_password"), 404)


def test_databases_are_created_empty_and_deleted_with_their_data(
    client: httpx.Client, fake: FakeNeon
) -> None:
    fake.operation_seconds = 0
    branch = create_branch(client, fake, name="dbs")["branch"]
    base = f"{project(fake)}/branches/{branch['id']}/databases"
    execute(uri_of(client, fake, branch["id"]), "CREATE TABLE item (name text)")

    owner = {"owner_name": "neondb_owner"}
    assert_error(client.post(base, json={"database": {"name": "neondb", **owner}}), 409)
    assert_error(client.post(base, json={"database": {"name": "x", "owner_name": "no"}}), 404)
    assert_error(client.post(base, json={"database": {"name": "x"}}), 400)
    made = client.post(base, json={"database": {"name": "it's db", **owner}})
    assert made.status_code == 201 and made.json()["database"]["name"] == "it's db"
    assert [o["action"] for o in made.json()["operations"]] == ["apply_config"]
    assert [d["name"] for d in client.get(base).json()["databases"]] == ["neondb", "it's db"]
    other = client.get(f"{project(fake)}/connection_uri", params={
        "branch_id": branch["id"], "database_name": "it's db", "role_name": "neondb_owner"})
    execute(other.json()["uri"], "CREATE TABLE elsewhere (id int)")  # a database of its own
    assert fake.connect_url("dbs", "it's db") == other.json()["uri"]

    # neondb deleted and made again is empty: its table is gone with it.
    assert client.delete(f"{base}/neondb").status_code == 200
    assert client.delete(f"{base}/neondb").status_code == 204
    params = {"branch_id": branch["id"], "database_name": "neondb", "role_name": "neondb_owner"}
    assert_error(client.get(f"{project(fake)}/connection_uri", params=params), 404, "database")
    assert_error(client.post(f"{project(fake)}/branches",
                             json={"branch": {"parent_id": branch["id"]}}), 400)
    assert client.post(base, json={"database": {"name": "neondb", **owner}}).status_code == 201
    with psycopg.connect(uri_of(client, fake, branch["id"])) as conn:
        assert conn.execute("SELECT to_regclass('item')").fetchone() == (None,)
    assert fake.database_names("dbs") == ["neondb", "it's db"]


def test_reset_leaves_only_a_fresh_main_and_drops_the_databases(
    client: httpx.Client, fake: FakeNeon, postgres: PostgresServer
) -> None:
    def physical() -> set[str]:
        with psycopg.connect(postgres.url()) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname ~ '^(br|ck|in)_'")
            return {r[0] for r in rows}

    # Other fakes may share this PostgreSQL server: judge only what this test changed.
    start = physical()
    old_main = fake.default_branch()["id"].replace("-", "_")
    dev = create_branch(client, fake, name="dev")["branch"]
    fake.checkpoint("dev")
    fake.fail_next(500)
    added = physical() - start
    assert dev["id"].replace("-", "_") in added

    fake.reset()
    after = physical()
    main_database = fake.default_branch()["id"].replace("-", "_")
    # Left: the new main and what was there before (the empty template every reset copies
    # is kept until stop()); gone: the old main, the new branch and its checkpoints.
    assert after - start == {main_database}
    assert not added & after
    assert old_main in start and old_main not in after
    assert [b["name"] for b in fake.branches()] == ["main"]
    assert fake.requests == [] and client.get(project(fake)).status_code == 200
    assert client.get(f"{project(fake)}/operations").json()["operations"] == []


# --------------------------------------------------------------------------- contract


def _route_of(path: str) -> tuple[str, re.Pattern[str]] | None:
    for _, template in ROUTES:
        pattern = re.compile("^/api/v2" + re.sub(r"\{\w+\}", "[^/]+", template) + "$")
        if pattern.match(path):
            return template, pattern
    return None


def test_answers_match_the_published_openapi_document(fake: FakeNeon, openapi: OpenAPI) -> None:
    """Every route the fake serves, and its error answers, validated by openapi-core:
    path, method, status, required fields, types and formats."""
    checked: set[tuple[str, str]] = set()
    statuses: set[int] = set()

    def validate(response: httpx.Response) -> None:
        response.read()
        request = response.request
        mock_request = MockRequest(
            "https://console.neon.tech",
            request.method,
            request.url.path,
            args=dict(request.url.params),
            headers=dict(request.headers),
            data=request.content or None,
            content_type=request.headers.get("content-type", "application/json"),
        )
        openapi.validate_request(mock_request)
        mock_response = MockResponse(
            response.content,
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=response.headers.get("content-type", "application/json"),
        )
        openapi.validate_response(mock_request, mock_response)
        route = _route_of(request.url.path)
        assert route is not None, request.url.path
        checked.add((request.method, route[0]))
        statuses.add(response.status_code)

    with httpx.Client(
        base_url=fake.url,
        headers={"Authorization": f"Bearer {fake.api_key}"},
        event_hooks={"response": [validate]},
        timeout=10,
    ) as api:
        p = project(fake)
        main_id = fake.default_branch()["id"]
        api.get(p)
        # Long enough that the next request surely meets the running operation (423), even
        # on a loaded machine.
        fake.operation_seconds = 2
        created = api.post(
            f"{p}/branches",
            json={
                "branch": {"name": "contract", "protected": False},
                "endpoints": [{"type": "read_write"}],
            },
        ).json()
        branch_id = created["branch"]["id"]
        api.post(f"{p}/branches", json={"branch": {"name": "blocked"}})  # 423
        fake.operation_seconds = 0.05
        wait_for(api, fake, created["operations"])
        api.get(f"{p}/branches", params={"limit": 1, "sort_by": "name", "sort_order": "asc"})
        api.get(f"{p}/branches/count")
        api.get(f"{p}/branches/{branch_id}")
        api.patch(f"{p}/branches/{branch_id}", json={"branch": {"name": "contract-2"}})
        api.get(f"{p}/branches/{branch_id}/databases")
        api.get(f"{p}/branches/{branch_id}/roles")
        api.get(f"{p}/branches/{branch_id}/roles/neondb_owner/reveal_password")
        api.get(f"{p}/branches/{branch_id}/endpoints")
        api.get(f"{p}/endpoints")
        api.get(
            f"{p}/connection_uri",
            params={
                "branch_id": branch_id,
                "database_name": "neondb",
                "role_name": "neondb_owner",
                "pooled": "false",
            },
        )
        operations = api.get(f"{p}/operations", params={"limit": 1}).json()
        api.get(f"{p}/operations/{operations['operations'][0]['id']}")
        bare = api.post(f"{p}/branches", json={"branch": {"parent_id": main_id}}).json()
        wait_for(api, fake, bare["operations"])
        added = api.post(
            f"{p}/endpoints",
            json={"endpoint": {"branch_id": bare["branch"]["id"], "type": "read_write"}},
        ).json()
        wait_for(api, fake, added["operations"])
        checkpoint = fake.checkpoint()
        restored = api.post(
            f"{p}/branches/{main_id}/restore",
            json={
                "source_branch_id": main_id,
                "source_timestamp": iso(checkpoint),
                "preserve_under_name": "main-old",
            },
        ).json()
        wait_for(api, fake, restored["operations"])
        made = api.post(
            f"{p}/branches/{branch_id}/databases",
            json={"database": {"name": "analytics", "owner_name": "neondb_owner"}},
        ).json()
        wait_for(api, fake, made["operations"])
        dropped = api.delete(f"{p}/branches/{branch_id}/databases/analytics").json()
        wait_for(api, fake, dropped["operations"])
        api.delete(f"{p}/branches/{branch_id}/databases/analytics")  # 204
        api.post(f"{p}/branches/{branch_id}/set_as_default")
        api.post(f"{p}/branches/{main_id}/set_as_default")
        deleted = api.delete(f"{p}/branches/{branch_id}").json()
        wait_for(api, fake, deleted["operations"])
        api.delete(f"{p}/branches/{branch_id}")  # 204
        api.get(f"{p}/branches/{branch_id}")  # 404
        api.post(f"{p}/branches", json={"branch": {"name": "main"}})  # 409
        api.delete(f"{p}/branches/{main_id}")  # 422
        fake.fail_next(429, retry_after=1)
        api.get(p)
        api.get(p, headers={"Authorization": "Bearer wrong"})  # 401

    assert checked == set(ROUTES), f"not contract-checked: {set(ROUTES) - checked}"
    assert {200, 201, 204, 401, 404, 409, 422, 423, 429} <= statuses


def test_every_route_is_in_the_document(openapi: OpenAPI) -> None:
    paths = openapi.spec / "paths"
    for method, template in ROUTES:
        assert template in paths, template
        assert method.lower() in (paths / template), (method, template)
