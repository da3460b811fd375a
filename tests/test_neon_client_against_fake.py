"""NeonClient against the fake Neon HTTP server (real sockets, branches as real databases)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from bot.neon import NeonAuthError, NeonClient, NeonNotFound
from bot.services.neon_errors import explain_neon_error
from tests.support.fake_neon import FakeNeon
from tests.support.postgres import PostgresServer


class RecordingSleep:
    """Real, short sleeps, recorded."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(seconds)


@pytest.fixture(scope="module")
def fake_server(postgres: PostgresServer) -> Iterator[FakeNeon]:
    with FakeNeon(postgres) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeNeon) -> FakeNeon:
    fake_server.reset()
    return fake_server


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def client(fake: FakeNeon, sleep: RecordingSleep) -> Iterator[NeonClient]:
    with NeonClient(fake.api_key, fake.project_id, base_url=fake.url, timeout=10.0,
                    max_attempts=8, poll_interval=0.02, operation_timeout=30.0, sleep=sleep,
                    backoff_initial=0.02, backoff_max=0.25) as neon:
        yield neon


def branch_posts(fake: FakeNeon) -> list[object]:
    """Create requests that Neon carried out (answered 2xx, even if the answer was lost)."""
    return [m for m in fake.mutations()
            if m.method == "POST" and m.path.endswith("/branches")]


def test_create_branch_is_accepted_once_despite_429_and_423(
        fake: FakeNeon, client: NeonClient, sleep: RecordingSleep) -> None:
    fake.fail_next(429, 3, retry_after=0.05, method="POST", path_contains="/branches")
    fake.fail_next(423, 1, method="POST", path_contains="/branches")

    change = client.create_branch("backup-20260113-142500", with_endpoint=True)

    assert len(branch_posts(fake)) == 1
    tried = [r for r in fake.requests if r.method == "POST"]
    assert [r.status for r in tried] == [429, 429, 429, 423, 201]
    assert sleep.calls[:3] == [0.05, 0.05, 0.05]  # Retry-After honoured
    assert change.branch.name == "backup-20260113-142500"
    assert change.operations and len(change.endpoints) == 1
    assert fake.branch_by_name("backup-20260113-142500") is not None


def test_a_dropped_answer_after_processing_still_makes_exactly_one_branch(
        fake: FakeNeon, client: NeonClient) -> None:
    fake.drop_next(1, after_processing=True, method="POST", path_contains="/branches")

    change = client.create_branch("restore-r42")

    assert len(branch_posts(fake)) == 1
    assert [b["name"] for b in fake.branches()].count("restore-r42") == 1
    assert change.operations == ()  # unknown: the answer was lost
    ready = client.wait_for_branch_ready(change.branch.id)
    assert ready.current_state == "ready" and ready.name == "restore-r42"


def test_wait_for_operations_of_a_create_then_the_branch_answers_queries(
        fake: FakeNeon, client: NeonClient) -> None:
    change = client.create_branch("backup-20260113-150000", with_endpoint=True)
    assert any(not op.done for op in change.operations)

    done = client.wait_for_operations(change.operations)

    assert [op.id for op in done] == [op.id for op in change.operations]
    assert all(op.status == "finished" for op in done)
    branch = client.get_branch(change.branch.id)
    assert branch.current_state == "ready"
    [database] = client.list_databases(branch.id)
    [role] = client.list_roles(branch.id)
    uri = client.connection_uri(branch.id, database.name, role.name)
    with psycopg.connect(uri, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_delete_branch(fake: FakeNeon, client: NeonClient) -> None:
    change = client.create_branch("backup-20260113-160000")
    client.wait_for_operations(change.operations)

    deleted = client.delete_branch(change.branch.id)
    client.wait_for_operations(deleted.operations)

    assert deleted.branch.id == change.branch.id
    assert fake.branch_by_name("backup-20260113-160000") is None
    assert client.find_branch_by_name("backup-20260113-160000") is None
    with pytest.raises(NeonNotFound):
        client.delete_branch(change.branch.id)


def test_restore_with_preserve_under_name_keeps_the_replaced_state(
        fake: FakeNeon, client: NeonClient) -> None:
    main = client.default_branch()
    with psycopg.connect(fake.connect_url(main.id), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (1)")
    before = fake.checkpoint()
    with psycopg.connect(fake.connect_url(main.id), autocommit=True) as conn:
        conn.execute("INSERT INTO orders VALUES (2)")  # the change to undo

    change = client.restore_branch(main.id, source_branch_id=main.id, source_timestamp=before,
                                   preserve_under_name="pre-restore-20260113-142500")
    client.wait_for_operations(change.operations)

    assert change.branch.id == main.id
    preserved = client.find_branch_by_name("pre-restore-20260113-142500")
    assert preserved is not None and preserved.id != main.id
    with psycopg.connect(fake.connect_url(main.id)) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    with psycopg.connect(fake.connect_url(preserved.id)) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    assert client.get_branch(main.id).current_state == "ready"


def test_a_bad_key_is_an_auth_error(fake: FakeNeon) -> None:
    with NeonClient("not-the-key", fake.project_id, base_url=fake.url,
                    sleep=lambda seconds: None) as neon, pytest.raises(NeonAuthError) as caught:
        neon.get_project()
    assert caught.value.message == "authentication failed"
    assert caught.value.status == 401 and caught.value.request_id
    assert explain_neon_error(caught.value).startswith("Neon refused the API key.")
    assert "not-the-key" not in str(caught.value)
    assert len(fake.requests) == 1


def test_the_project_tells_its_restore_window_and_branch_limit(fake: FakeNeon,
                                                               client: NeonClient) -> None:
    fake.branch_limit = 25
    fake.history_retention_seconds = 86400
    project = client.get_project()
    assert project.id == fake.project_id
    assert project.history_retention_seconds == 86400
    assert project.branches_limit == 25
