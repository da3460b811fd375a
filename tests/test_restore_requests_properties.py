"""Property: whatever text follows /restore, nothing changes in Neon before an approval,
and input that is refused records no request. In-process: the real parser, the real
restore service and a real SQLite store; Neon and Slack are recording stand-ins."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.errors import LifeguardError
from bot.domain.restores import RestoreAt, RestoreFrom, RestorePromote, parse_restore_command
from bot.neon.models import Branch, BranchChange, Database, Endpoint, Operation, Project
from bot.services.restores import RestoreService
from storage import SqlStore

NOW = datetime(2026, 11, 21, 14, 30, tzinfo=UTC)
MUTATIONS = ("create_branch", "restore_branch", "create_endpoint", "delete_branch")


def branch(name: str, *, default: bool = False) -> Branch:
    return Branch(id=f"br-{abs(hash(name)) % 10**8}", project_id="proj-x", name=name,
                  current_state="ready", default=default, protected=False,
                  created_at=NOW - timedelta(days=3), updated_at=NOW)


class RecordingNeon:
    """Answers reads like a project with main and one backup; records every mutation."""

    def __init__(self) -> None:
        self.mutations: list[str] = []
        self.main = branch("main", default=True)
        self.backup = branch("backup-20261120-101500")

    def get_project(self) -> Project:
        return Project(id="proj-x", name="x", region_id="aws-eu-central-1", pg_version=16,
                       history_retention_seconds=7 * 86400, created_at=NOW - timedelta(days=90))

    def default_branch(self) -> Branch:
        return self.main

    def get_branch(self, branch_id: str) -> Branch:
        return self.main

    def find_branch_by_name(self, name: str) -> Branch | None:
        return {b.name: b for b in (self.main, self.backup)}.get(name)

    def list_databases(self, branch_id: str) -> list[Database]:
        return [Database("neondb", "neondb_owner")]

    def list_endpoints(self) -> list[Endpoint]:
        return []

    def __getattr__(self, name: str) -> Any:
        if name in MUTATIONS or name.startswith("wait"):
            def record(*args: Any, **kwargs: Any) -> BranchChange | list[Operation]:
                self.mutations.append(name)
                raise AssertionError(f"Neon was called to {name} before any approval")
            return record
        raise AttributeError(name)


class Directory:
    def time_zone(self, user_id: str) -> ZoneInfo:
        return ZoneInfo("Europe/Berlin")

    def is_approver(self, user_id: str) -> bool | None:
        return user_id == "U0BOB"


class Notifier:
    def request_changed(self, request: Any) -> None:
        return None

    def ask_approvers(self, request: Any) -> None:
        return None


_folder = Path(tempfile.mkdtemp(prefix="lifeguard-props-"))
STORE = SqlStore(f"sqlite:///{_folder / 'store.db'}")
NEON = RecordingNeon()
SERVICE = RestoreService(STORE, NEON, Directory(), Notifier(),  # type: ignore[arg-type]
                         lambda *a, **k: None,  # type: ignore[arg-type,return-value]
                         project_id="proj-x", required_approvals=1,
                         approval_ttl=timedelta(minutes=30), approvers_configured=True,
                         now=lambda: NOW)

FRAGMENTS = st.sampled_from([
    "from", "promote", "status", "cancel", "log", "help", "ago", "minutes", "hours", "days",
    "14:25", "25:99", "2026-11-21", "2026-11-21T14:25:00Z", "2027-01-01 00:00", "UTC",
    "Europe/Berlin", "Mars/Olympus", "+01:00", "backup-20261120-101500", "restore-x",
    "pre-restore-20261121-101010", "main", "-", ":", "T", "Z", "0", "999999", "`", "<!channel>",
])
BRANCH_COMMANDS = st.tuples(
    st.sampled_from(["from", "promote", "FROM", "promote  "]),
    st.sampled_from(["backup-20261120-101500", "restore-20261121-1425", "main",
                     "pre-restore-20261121-101010", "backup-2026", "x" * 300]),
    st.text(max_size=20)).map(" ".join)
TEXTS = st.one_of(st.text(max_size=80), st.lists(FRAGMENTS, max_size=6).map(" ".join),
                  BRANCH_COMMANDS)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_no_neon_mutation_and_no_request_for_refused_input(text: str) -> None:
    before = len(STORE.list_requests(limit=10_000))
    recorded = False
    try:
        parsed = parse_restore_command(text)
        where: dict[str, Any] = {"channel_id": "C0OPS", "response_url": None}
        if isinstance(parsed, RestoreAt):
            SERVICE.request_point_in_time("U0ALICE", parsed.when_text, parsed.reason, **where)
            recorded = True
        elif isinstance(parsed, RestoreFrom):
            SERVICE.request_from_branch("U0ALICE", parsed.branch_name, parsed.reason, **where)
            recorded = True
        elif isinstance(parsed, RestorePromote):
            SERVICE.request_promotion("U0ALICE", parsed.branch_name, parsed.reason, **where)
            recorded = True
    except LifeguardError:
        pass
    assert NEON.mutations == []
    after = len(STORE.list_requests(limit=10_000))
    assert after == before + (1 if recorded else 0)
