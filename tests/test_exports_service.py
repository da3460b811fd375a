"""The export service and its steps (bot/services/exports.py, export_steps.py) over a real
SQLite store, with in-process fakes for Neon and the export archive: the order of the steps,
resuming at the database, a folder that holds objects someone else wrote, failures that
clean up, a cleanup that breaks, GFS retention, and outside text escaped on cards and
alerts. The e2e tests run the same with the real parts."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain.audit import AuditEvent
from bot.domain.backups import Backup, BackupStatus, validate_reason
from bot.domain.errors import InvalidInput
from bot.domain.export_archive import DatabaseDump, ExportCheck, FileCheck, FoundExport
from bot.domain.export_commands import BackupExport, BackupExports, parse_export_command
from bot.domain.export_errors import DumpFailed, ObjectStoreError
from bot.domain.export_jobs import Export, ExportState, ExportStep
from bot.domain.export_manifest import DumpedDatabase, Manifest, TableRows
from bot.domain.retention import RetentionPolicy
from bot.neon.errors import NeonError
from bot.neon.models import Branch, BranchChange, Database
from bot.services.alerts import Alert, Alerts
from bot.services.exports import ExportService, ExportsOff
from bot.services.ports import MessageRef
from handlers.export_blocks import export_card
from storage import SqlStore

PROJECT = "wispy-sun-123"
KEY = "age1" + "q" * 58
NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


class FakeNeon:
    def __init__(self, databases: tuple[str, ...] = ("app", "neondb")) -> None:
        self.branches: dict[str, Branch] = {}
        self.main = self._branch("main", default=True)
        self.databases = databases
        self.deleted: list[str] = []
        self.refuse_delete: NeonError | None = None

    def _branch(self, name: str, *, default: bool = False, parent: str | None = None) -> Branch:
        branch = Branch(id=f"br-{uuid.uuid4().hex[:8]}", project_id=PROJECT, name=name,
                        current_state="ready", default=default, protected=False,
                        created_at=NOW, updated_at=NOW, parent_id=parent)
        self.branches[branch.id] = branch
        return branch

    def default_branch(self) -> Branch:
        return self.main

    def get_branch(self, branch_id: str) -> Branch:
        from bot.neon.errors import NeonNotFound

        if branch_id not in self.branches:
            raise NeonNotFound("no such branch", status=404)
        return self.branches[branch_id]

    def find_branch_by_name(self, name: str) -> Branch | None:
        return next((b for b in self.branches.values() if b.name == name), None)

    def create_branch(self, name: str, **options: Any) -> BranchChange:
        assert options["with_endpoint"] and options["expires_at"] is not None
        return BranchChange(branch=self._branch(name, parent=options["parent_id"]))

    def delete_branch(self, branch_id: str) -> BranchChange:
        if self.refuse_delete is not None:
            raise self.refuse_delete
        branch = self.branches.pop(branch_id)
        self.deleted.append(branch.name)
        return BranchChange(branch=branch)

    def wait_for_operations(self, operations: Any, *, timeout: float | None = None) -> list:
        return []

    def wait_for_branch_ready(self, branch_id: str, timeout: float | None = None) -> Branch:
        return self.branches[branch_id]

    def list_databases(self, branch_id: str) -> list[Database]:
        return [Database(name=name, owner_name="owner") for name in self.databases]

    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str:
        assert not pooled  # pg_dump reads the unpooled connection
        return f"postgresql://{role_name}@db/{database_name}?branch={branch_id}"


class FakeArchive:
    """Objects in memory, keyed by folder + name; writes in order in `writes`."""

    recipients = (KEY,)
    can_decrypt = True

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.discarded: list[str] = []
        self.fail_dump: Callable[[str], Exception | None] = lambda database: None
        self.fail_delete: Exception | None = None
        self.tamper = False
        self.progress_calls = 0

    def where(self, folder: str = "") -> str:
        return f"s3://bucket/{folder}"

    def check(self) -> None:
        pass

    def objects_in(self, folder: str) -> dict[str, bytes]:
        return {k[len(folder):]: v for k, v in self.stored.items() if k.startswith(folder)}

    def objects(self, folder: str) -> dict[str, int]:
        return {name: len(body) for name, body in self.objects_in(folder).items()}

    def dump_database(self, folder: str, uri: str, database: str, *,
                      progress: Any = None) -> DatabaseDump:
        error = self.fail_dump(database)
        if error is not None:
            raise error
        key = f"{folder}{database}.dump.zst.age"
        assert key not in self.stored, "never overwritten"
        self.stored[key] = b"x" * 100
        self.writes.append(key)
        if progress:
            progress(100)
            self.progress_calls += 1
        dumped = DumpedDatabase(database, f"{database}.dump.zst.age", 100, "a" * 64, NOW,
                                "0/16B3748", (TableRows("public", "t", 3),))
        return DatabaseDump(dumped, "17.5", "18.1")

    def discard_file(self, folder: str, file: str) -> None:
        self.discarded.append(file)
        self.stored.pop(folder + file, None)

    def finish(self, folder: str, manifest: Manifest) -> None:
        for name in ("SHA256SUMS", "manifest.json"):
            self.stored[folder + name] = name.encode()
            self.writes.append(folder + name)
        self.manifest = manifest

    def list_exports(self) -> list[FoundExport]:
        return []

    def find(self, export_id: str) -> FoundExport | None:
        return None

    def verify(self, folder: str) -> ExportCheck:
        files = tuple(FileCheck(name, not self.tamper, True,
                                f"{name}: SHA-256 differs" if self.tamper else None)
                      for name in self.objects_in(folder) if name.endswith(".age"))
        return ExportCheck(folder, files)

    def restore_file(self, folder: str, file: str, target_uri: str) -> None:
        raise AssertionError("not used by exports")

    def delete(self, folder: str) -> int:
        if self.fail_delete is not None:
            raise self.fail_delete
        found = [k for k in self.stored if k.startswith(folder)]
        for key in found:
            del self.stored[key]
        return len(found)


class Shown:
    def __init__(self) -> None:
        self.cards: list[Export] = []
        self.progress: list[tuple[int, str]] = []

    def export_changed(self, export: Export) -> MessageRef | None:
        self.cards.append(export)
        return MessageRef("C0OPS", "1.0") if export.card_ts is None else None

    def export_progress(self, export: Export, written: int, database: str) -> None:
        self.progress.append((written, database))


class Poster:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def post_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


@pytest.fixture
def store(tmp_path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'lifeguard.db'}")


def service(store: SqlStore, neon: FakeNeon, archive: FakeArchive | None, *,
            policy: RetentionPolicy | None = None,
            ids: Callable[[], str] | None = None,
            now: Callable[[], datetime] = lambda: NOW) -> tuple[ExportService, Shown, Poster]:
    shown, poster = Shown(), Poster()
    counter = itertools.count(1)
    made = ExportService(store, neon, archive, shown, Alerts(poster, store), project_id=PROJECT,
                         policy=policy or RetentionPolicy(0, 8, 12), now=now,
                         new_id=ids or (lambda: f"exp{next(counter):04d}"))
    return made, shown, poster


def actions(store: SqlStore, subject: str) -> list[str]:
    return [e.action for e in store.audit_for(subject) if e.action.startswith("export.")]


def test_an_export_dumps_each_database_then_writes_the_manifest_last(store):
    neon, archive = FakeNeon(), FakeArchive()
    exports, shown, poster = service(store, neon, archive)
    export = exports.request_export("U0ALICE", None, "offsite", channel_id="C0OPS",
                                    response_url=None)
    assert store.exports.get(export.id) is not None  # recorded before anything runs
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.SUCCEEDED
    assert [w.rsplit("/", 1)[1] for w in archive.writes] == [
        "app.dump.zst.age", "neondb.dump.zst.age", "SHA256SUMS", "manifest.json"]
    assert archive.manifest.read_branch_name == "export-exp0001"
    assert archive.manifest.branch_name == "main" and archive.manifest.recipients == (KEY,)
    assert neon.deleted == ["export-exp0001"] and done.branch_deleted
    assert actions(store, export.id) == [
        "export.requested", "export.branch_creating", "export.branch_ready",
        "export.database_dumped", "export.database_dumped", "export.manifest_written",
        "export.verified", "export.succeeded"]
    assert done.check_passed and done.archive_read and done.size == 200
    assert shown.cards[-1].state == ExportState.SUCCEEDED and poster.alerts == []


def test_a_resumed_dump_discards_what_the_interrupted_try_left_and_goes_on(store):
    neon, archive = FakeNeon(), FakeArchive()
    exports, _, _ = service(store, neon, archive)
    export = exports.request_export("U0ALICE", None, "", channel_id=None, response_url=None)
    archive.fail_dump = lambda database: KeyboardInterrupt() if database == "neondb" else None
    with pytest.raises(KeyboardInterrupt):  # the process dies in the second database
        exports.advance(export.id)
    crashed = store.exports.get(export.id)
    assert crashed is not None and crashed.step == ExportStep.DUMP
    assert [d.dumped.database for d in crashed.dumps] == ["app"]
    archive.stored[f"{crashed.folder}neondb.dump.zst.age"] = b"half"  # its leftovers
    archive.fail_dump = lambda database: None
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.SUCCEEDED
    assert archive.discarded[-1] == "neondb.dump.zst.age"
    assert archive.stored[f"{done.folder}neondb.dump.zst.age"] == b"x" * 100
    assert [d.dumped.database for d in done.dumps] == ["app", "neondb"]


def test_an_export_left_unfinished_while_exports_are_off_waits_for_them(store):
    neon, archive = FakeNeon(), FakeArchive()
    exports, _, _ = service(store, neon, archive)
    export = exports.request_export("U0ALICE", None, "", channel_id=None, response_url=None)
    switched_off, _, _ = service(store, neon, None)  # a restart without EXPORT_URL
    assert switched_off.unfinished() == []  # the reconciler leaves it alone
    assert store.exports.get(export.id).state == ExportState.RUNNING  # type: ignore[union-attr]
    switched_on, _, _ = service(store, neon, archive)
    assert [e.id for e in switched_on.unfinished()] == [export.id]
    done = switched_on.advance(export.id)
    assert done is not None and done.state == ExportState.SUCCEEDED


def test_a_folder_holding_objects_is_never_written_to_nor_cleaned_up(store):
    neon, archive = FakeNeon(), FakeArchive()
    exports, _, poster = service(store, neon, archive)
    export = exports.request_export("U0ALICE", None, "", channel_id=None, response_url=None)
    archive.stored[f"{export.folder}theirs.txt"] = b"not ours"
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.FAILED
    assert "already holds 1 object(s)" in (done.error or "")
    assert archive.stored == {f"{export.folder}theirs.txt": b"not ours"}
    assert archive.writes == [] and neon.find_branch_by_name(export.branch_name) is None
    assert [a.kind for a in poster.alerts] == ["export.failed"]


@pytest.mark.parametrize("step", ["dump", "verify"])
def test_a_failure_removes_what_was_written_and_the_branch_and_alerts_once(store, step):
    neon, archive = FakeNeon(), FakeArchive()
    exports, _, poster = service(store, neon, archive)
    if step == "dump":
        archive.fail_dump = lambda database: (
            DumpFailed("pg_dump exited with code 1: <!channel> broke") if database == "neondb"
            else None)
    else:
        archive.tamper = True
    export = exports.request_export("U0ALICE", None, "", channel_id="C0OPS", response_url=None)
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.FAILED
    assert done.failed_step == step and archive.stored == {}
    assert neon.deleted == [export.branch_name] and done.branch_deleted
    assert actions(store, export.id)[-2:] == ["export.failed", "export.cleaned_up"]
    [alert] = poster.alerts
    assert alert.subject == export.id and "<!channel>" not in (alert.error or "")
    exports.work.show(done)  # shown again: alerted once only
    assert len(poster.alerts) == 1
    assert "<!channel>" not in str(export_card(done, NOW))


def test_a_cleanup_that_cannot_remove_the_objects_ends_failed_and_says_so(store):
    neon, archive = FakeNeon(), FakeArchive()
    exports, _, poster = service(store, neon, archive)
    archive.fail_dump = lambda database: DumpFailed("pg_dump was killed (SIGKILL)")
    archive.fail_delete = ObjectStoreError("cannot reach the object store", "unreachable")
    export = exports.request_export("U0ALICE", None, "", channel_id=None, response_url=None)
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.FAILED
    assert "its objects could not be removed" in (done.cleanup_error or "")
    assert "could not be removed" in poster.alerts[0].tried


def test_a_branch_that_cannot_be_deleted_leaves_a_verified_export_standing(store):
    neon, archive = FakeNeon(), FakeArchive()
    neon.refuse_delete = NeonError("branch has children", status=422)
    exports, _, _ = service(store, neon, archive)
    export = exports.request_export("U0ALICE", None, "", channel_id=None, response_url=None)
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.SUCCEEDED
    assert "branch has children" in (done.cleanup_error or "") and not done.branch_deleted
    assert "manifest.json" in str(archive.stored)


def test_a_backup_branch_is_exported_and_anything_else_refused_with_what_is_accepted(store):
    neon, archive = FakeNeon(), FakeArchive()
    backup_branch = neon._branch("backup-20261128-030000", parent=neon.main.id)
    store.backups.add(Backup(id="b1", branch_name=backup_branch.name,
                             status=BackupStatus.READY, requested_by="U0BOB", reason="",
                             created_at=NOW, expires_at=NOW + timedelta(days=7), updated_at=NOW,
                             branch_id=backup_branch.id),
                      AuditEvent("U0BOB", "backup.requested", backup_branch.name, {}))
    exports, _, _ = service(store, neon, archive)
    export = exports.request_export("U0ALICE", backup_branch.name, "", channel_id=None,
                                    response_url=None)
    done = exports.advance(export.id)
    assert done is not None and done.state == ExportState.SUCCEEDED
    assert done.source_branch_id == backup_branch.id
    assert archive.manifest.branch_name == backup_branch.name
    with pytest.raises(InvalidInput) as refused:
        exports.request_export("U0ALICE", "backup-<@U0EVIL>", "", channel_id=None,
                               response_url=None)
    assert "`backup-&lt;@U0EVIL&gt;` is not a backup branch" in str(refused.value)
    assert "`backup-20261128-030000`" in str(refused.value)
    assert [e.action for e in store.audit_for("export")] == ["export.refused"]


def test_exports_switched_off_are_refused_naming_the_settings(store):
    exports, _, _ = service(store, FakeNeon(), None)
    with pytest.raises(ExportsOff) as refused:
        exports.request_export("U0ALICE", None, "", channel_id=None, response_url=None)
    assert "`EXPORT_URL`" in str(refused.value) and "`EXPORT_RECIPIENTS`" in str(refused.value)
    assert exports.scheduled_job().ok  # the schedule does nothing, quietly


def test_retention_keeps_the_policy_and_deletes_only_recorded_exports(store):
    neon, archive = FakeNeon(("neondb",)), FakeArchive()
    clock = {"now": NOW - timedelta(weeks=20)}
    exports, _, _ = service(store, neon, archive, policy=RetentionPolicy(0, 2, 1),
                            now=lambda: clock["now"])
    made = []
    for week in range(6):
        clock["now"] = NOW - timedelta(weeks=5 - week)
        export = exports.request_export("scheduler", None, "", channel_id=None,
                                        response_url=None)
        made.append(exports.advance(export.id))
    archive.stored["wispy-sun-123/20200101-000000-stranger/manifest.json"] = b"{}"
    deleted = exports.prune("scheduler")
    # weekly 2 keeps the two newest weeks; monthly 1 keeps the newest of its month too
    kept = {e.id for e in store.exports.list((ExportState.SUCCEEDED,))}
    assert kept == {made[-1].id, made[-2].id}
    assert set(deleted) == {e.id for e in made} - kept
    assert all(store.exports.get(i).state == ExportState.DELETED for i in deleted)
    for export_id in deleted:
        assert not any(export_id in key for key in archive.stored)
    assert "wispy-sun-123/20200101-000000-stranger/manifest.json" in archive.stored
    assert actions(store, deleted[0]) [-2:] == ["export.delete_planned", "export.deleted"]


def test_the_card_shows_progress_then_size_duration_throughput_and_id(store):
    neon, archive = FakeNeon(("neondb",)), FakeArchive()
    exports, _, _ = service(store, neon, archive)
    export = exports.request_export("U0ALICE", None, "nightly <b>", channel_id="C0OPS",
                                    response_url=None)
    running = replace(export, step=ExportStep.DUMP, databases=("neondb",))
    card = str(export_card(running, NOW + timedelta(seconds=75), written=3 * 1024 * 1024,
                           database="neondb"))
    assert "dumping database `neondb`" in card and "3.0 MiB written" in card
    assert "1 min 15 s elapsed" in card and "nightly &lt;b&gt;" in card
    done = exports.advance(export.id)
    assert done is not None
    finished = replace(done, finished_at=NOW + timedelta(seconds=10))
    card = str(export_card(finished, NOW))
    assert "100 B in 1 file(s)" in card and "took 10 s" in card and "10 B/s" in card
    assert f"Export id `{export.id}`" in card


@pytest.mark.parametrize(("text", "expected"), [
    ("", BackupExport(None, "")),
    ("before the migration", BackupExport(None, "before the migration")),
    ("backup-20261121-142500", BackupExport("backup-20261121-142500", "")),
    ("backup-20261121-142500 for the auditors", BackupExport("backup-20261121-142500",
                                                             "for the auditors")),
    ("br-aged-salad-123 x", BackupExport("br-aged-salad-123", "x")),
    ("  weekly   offsite\tcopy ", BackupExport(None, "weekly offsite copy")),
])
def test_what_backup_export_accepts(text, expected):
    assert parse_export_command("export", text, validate_reason) == expected


def test_backup_exports_takes_nothing_and_long_input_is_refused():
    assert parse_export_command("exports", " ", validate_reason) == BackupExports()
    with pytest.raises(InvalidInput, match="takes nothing"):
        parse_export_command("exports", "<!here>", validate_reason)
    with pytest.raises(InvalidInput, match="at most 500"):
        parse_export_command("export", "x" * 600, validate_reason)
    with pytest.raises(InvalidInput, match="longer than any"):
        parse_export_command("export", "backup-" + "x" * 200, validate_reason)
