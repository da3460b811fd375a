"""In-process stand-ins for the restore service's ports: a Neon that answers reads and
records (and refuses) mutations, a Slack directory, a silent notifier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.neon.models import Branch, BranchChange, Database, Endpoint, Operation, Project
from bot.services.restores import RestoreService, RestoreStore

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


def restore_service(store: RestoreStore, neon: RecordingNeon) -> RestoreService:
    """The real restore service on these stand-ins: one approval needed, Bob approves,
    the clock stands at NOW, verification is never reached."""
    return RestoreService(store, neon, Directory(), Notifier(),
                          lambda *a, **k: None,  # type: ignore[arg-type,return-value]
                          project_id="proj-x", required_approvals=1,
                          approval_ttl=timedelta(minutes=30), approvers_configured=True,
                          now=lambda: NOW)
