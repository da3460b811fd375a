"""The steps of an export on the one engine (bot.services.work), in the order
bot.domain.export_jobs draws them. Each step is idempotent: run again after a crash it
finds what the last try did (the branch by its name, the folder it claimed) and goes on.

- create_branch: the store is checked (bucket, credentials) before anything is made; the
  folder must be empty, and is then claimed; the branch `export-<id>` is made from the
  default branch or the named backup branch, with a compute endpoint and an expiry, so
  Neon removes it even if Lifeguard never comes back.
- wait_branch: Neon's operations, then the branch's databases are listed.
- dump: one database per run of the step, so a crash resumes at the database; whatever an
  interrupted try left of that database's file is discarded first.
- finish: SHA256SUMS, then manifest.json, from what is recorded, so a retry writes the
  same bytes.
- verify: every file read back; a mismatch fails the export.
- drop_branch: the temporary branch deleted; the export stands even if that fails.
- cleanup (after a failure): the claimed folder's objects and the branch removed.
- delete (retention): a succeeded export's folder removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.errors import LifeguardError
from bot.domain.export_errors import ExportError
from bot.domain.export_jobs import Export, ExportState, ExportStep
from bot.domain.export_manifest import Manifest
from bot.domain.exports import dump_file_name
from bot.domain.text import escape
from bot.neon.errors import NeonError, NeonNotFound, NeonOperationTimeout
from bot.neon.models import BranchChange, Database
from bot.services.branches import BranchLifecycle
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import ExportArchive
from bot.services.work import TRANSIENT_ERRORS, WAIT, Change, Wait

log = logging.getLogger("lifeguard.exports")

WAIT_CHUNK_SECONDS = 5.0
CREATION_DEADLINE = timedelta(minutes=30)
BRANCH_LIFETIME = timedelta(days=7)  # Neon's own clean-up if Lifeguard never comes back
PROGRESS_EVERY_SECONDS = 2.0


class ExportNeon(BranchLifecycle, Protocol):
    """The part of the Neon client exports use."""

    def list_databases(self, branch_id: str) -> list[Database]: ...
    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str: ...


class ProgressShown(Protocol):
    def export_progress(self, export: Export, written: int, database: str) -> None: ...


class ExportSteps:
    def __init__(self, neon: ExportNeon, archive: ExportArchive, progress: ProgressShown, *,
                 project_id: str, source_branch_id: Callable[[str], str],
                 now: Callable[[], datetime]) -> None:
        self.neon = neon
        self.archive = archive
        self.progress = progress
        self.project_id = project_id
        self.source_branch_id = source_branch_id  # a backup's name -> its branch id
        self.now = now

    def table(self) -> dict[str, Callable[[Export], Change[Export] | Wait]]:
        steps: dict[str, Callable[[Export], Change[Export] | Wait]] = {
            ExportStep.CREATE_BRANCH: self.create_branch,
            ExportStep.WAIT_BRANCH: self.wait_branch,
            ExportStep.DUMP: self.dump,
            ExportStep.FINISH: self.finish,
            ExportStep.VERIFY: self.verify,
            ExportStep.DROP_BRANCH: self.drop_branch,
            ExportStep.CLEANUP: self.cleanup,
            ExportStep.DELETE: self.delete}
        return {name: _worded(step) for name, step in steps.items()}

    # --- running ------------------------------------------------------------------------

    def create_branch(self, export: Export) -> Change[Export]:
        self.archive.check()
        if not export.folder_claimed:
            found = self.archive.objects(export.folder)
            if found:
                raise ExportError(
                    f"{self.archive.where(export.folder)} already holds {len(found)} "
                    "object(s) Lifeguard did not write; an export never overwrites, so "
                    "nothing was written and nothing there was touched")
        existing = self.neon.find_branch_by_name(export.branch_name)
        if export.source_backup is not None:
            parent_id = self.source_branch_id(export.source_backup)
            parent = self.neon.get_branch(parent_id)
        else:
            parent = self.neon.default_branch()
        if existing is not None:  # a create that Neon accepted before a crash
            change = BranchChange(branch=existing)
        else:
            change = self.neon.create_branch(
                export.branch_name, parent_id=parent.id, with_endpoint=True,
                expires_at=export.created_at + BRANCH_LIFETIME)
        operation_ids = tuple(op.id for op in change.operations)
        return Change(
            replace(export, step=ExportStep.WAIT_BRANCH, folder_claimed=True,
                    source_branch_id=parent.id, source_branch_name=parent.name,
                    branch_id=change.branch.id, operation_ids=operation_ids),
            "export.branch_creating",
            {"export_id": export.id, "branch": export.branch_name,
             "branch_id": change.branch.id, "source_branch_id": parent.id,
             "source_branch": parent.name, "operation_ids": operation_ids,
             "folder": self.archive.where(export.folder)})

    def wait_branch(self, export: Export) -> Change[Export] | Wait:
        assert export.branch_id is not None
        try:
            if export.operation_ids:
                self.neon.wait_for_operations(list(export.operation_ids),
                                              timeout=WAIT_CHUNK_SECONDS)
            self.neon.wait_for_branch_ready(export.branch_id, timeout=WAIT_CHUNK_SECONDS)
        except NeonOperationTimeout:
            if self.now() - export.created_at > CREATION_DEADLINE:
                raise ExportError("Neon did not finish creating the export's branch within "
                                  f"{CREATION_DEADLINE}") from None
            return WAIT
        databases = tuple(sorted(d.name for d in self.neon.list_databases(export.branch_id)))
        if not databases:
            raise ExportError(f"the branch {export.source} has no database to export")
        return Change(replace(export, step=ExportStep.DUMP, databases=databases),
                      "export.branch_ready",
                      {"export_id": export.id, "branch_id": export.branch_id,
                       "databases": databases})

    def dump(self, export: Export) -> Change[Export]:
        assert export.branch_id is not None
        database = export.next_database()
        assert database is not None, "the dump step runs while a database is left"
        owner = {d.name: d.owner_name for d in self.neon.list_databases(export.branch_id)}
        if database not in owner:
            raise ExportError(f"database {database!r} is no longer on the export's branch")
        uri = self.neon.connection_uri(export.branch_id, database, owner[database])
        started = time.monotonic()
        for_card = _Throttled(self.progress, export, database)
        # A try killed half-way left parts or a whole file no record mentions: redo it.
        self.archive.discard_file(export.folder, dump_file_name(database))
        done = self.archive.dump_database(export.folder, uri, database,
                                          progress=for_card.written)
        dumps = (*export.dumps, done)
        changed = replace(export, dumps=dumps)
        if changed.next_database() is None:
            changed = replace(changed, step=ExportStep.FINISH, dumps_finished_at=self.now())
        return Change(changed, "export.database_dumped", {
            "export_id": export.id, "database": database, "file": done.dumped.file,
            "size": done.dumped.size, "sha256": done.dumped.sha256,
            "tables": len(done.dumped.tables), "lsn": done.dumped.lsn,
            "seconds": round(time.monotonic() - started, 1)})

    def finish(self, export: Export) -> Change[Export]:
        assert export.dumps and export.dumps_finished_at is not None
        manifest = Manifest(
            export_id=export.id, project_id=self.project_id,
            branch_id=export.source_branch_id or "", branch_name=export.source,
            started_at=export.created_at, finished_at=export.dumps_finished_at,
            server_version=export.dumps[0].server_version,
            pg_dump_version=export.dumps[0].pg_dump_version,
            recipients=self.archive.recipients,
            databases=tuple(d.dumped for d in export.dumps),
            read_branch_name=export.branch_name)
        self.archive.finish(export.folder, manifest)
        return Change(replace(export, step=ExportStep.VERIFY), "export.manifest_written",
                      {"export_id": export.id, "size": export.size,
                       "files": [d.dumped.file for d in export.dumps]})

    def verify(self, export: Export) -> Change[Export]:
        check = self.archive.verify(export.folder)
        checked = replace(export, checked_at=self.now(), check_passed=check.passed,
                          archive_read=check.archives_read,
                          check_problems=tuple(check.failures()))
        if not check.passed:
            raise ExportError("the export did not verify: " + "; ".join(check.failures()))
        return Change(replace(checked, step=ExportStep.DROP_BRANCH), "export.verified",
                      {"export_id": export.id, "archive_read": check.archives_read,
                       "files": [c.file for c in check.files]})

    def drop_branch(self, export: Export) -> Change[Export] | Wait:
        left = self._delete_branch(export)
        if isinstance(left, Wait):
            return left
        finished = self.now()
        seconds = export.seconds(finished)
        return Change(
            replace(export, state=ExportState.SUCCEEDED, step=ExportStep.DONE,
                    finished_at=finished, branch_deleted=left is None, cleanup_error=left),
            "export.succeeded",
            {"export_id": export.id, "size": export.size, "seconds": round(seconds, 1),
             "folder": self.archive.where(export.folder), "branch_left": left})

    # --- after a failure, and retention -------------------------------------------------

    def cleanup(self, export: Export) -> Change[Export]:
        """Never raises: what could not be removed is recorded and alerted."""
        problems: list[str] = []
        removed = None
        if export.folder_claimed:
            try:
                removed = self.archive.delete(export.folder)
            except LifeguardError as error:
                problems.append(f"its objects could not be removed: {escape(str(error))}")
        try:
            left = self._delete_branch(export, wait=False)
        except Exception as error:  # recorded, never raised: cleanup must end
            left = escape(f"{type(error).__name__}: {error}")
        if isinstance(left, str):
            problems.append(f"its branch `{export.branch_name}` could not be deleted: {left}")
        cleanup_error = "; ".join(problems) or None
        return Change(
            replace(export, state=ExportState.FAILED, step=ExportStep.DONE,
                    finished_at=self.now(), objects_removed=removed,
                    branch_deleted=left is None, cleanup_error=cleanup_error),
            "export.cleaned_up",
            {"export_id": export.id, "objects_removed": removed,
             "folder_claimed": export.folder_claimed, "branch_deleted": left is None,
             "cleanup_error": cleanup_error})

    def delete(self, export: Export) -> Change[Export]:
        try:
            removed = self.archive.delete(export.folder)
        except LifeguardError as error:
            return Change(replace(export, state=ExportState.SUCCEEDED, step=ExportStep.DONE,
                                  cleanup_error="retention could not delete it: "
                                                f"{escape(str(error))}"),
                          "export.delete_failed", {"export_id": export.id,
                                                   "error": str(error)})
        return Change(replace(export, state=ExportState.DELETED, step=ExportStep.DONE,
                              objects_removed=removed),
                      "export.deleted", {"export_id": export.id, "objects_removed": removed,
                                         "folder": self.archive.where(export.folder)},
                      actor=export.deleted_by or "system")

    def _delete_branch(self, export: Export, *, wait: bool = True) -> str | Wait | None:
        """None when the branch is gone; what went wrong when it could not be deleted;
        WAIT while Neon is still deleting it."""
        branch_id = export.branch_id
        try:
            if branch_id is None:  # a create Neon accepted just before a crash
                found = self.neon.find_branch_by_name(export.branch_name)
                if found is None:
                    return None
                branch_id = found.id
            branch = self.neon.get_branch(branch_id)
            if branch.default or branch.name != export.branch_name:
                return (f"`{escape(branch.name)}` is not the export's own branch; it was "
                        "left alone")
            change = self.neon.delete_branch(branch_id)
            self.neon.wait_for_operations(list(change.operations),
                                          timeout=WAIT_CHUNK_SECONDS if wait else 60.0)
        except NeonNotFound:
            return None
        except NeonOperationTimeout:
            return WAIT if wait else "Neon did not finish deleting it in time"
        except TRANSIENT_ERRORS:
            if wait:
                raise  # the engine tries the step again
            return "Neon is busy or unreachable"
        except NeonError as error:
            return explain_neon_error(error)
        return None


class StepFailed(LifeguardError):
    """An export step failed; the message is mrkdwn-ready (escaped), as a record's stored
    error is everywhere in Lifeguard."""


def _worded(step: Callable[[Export], Change[Export] | Wait]
            ) -> Callable[[Export], Change[Export] | Wait]:
    """The step, its ExportErrors (whose messages hold bucket, database and pg_dump
    words, unescaped) turned into StepFailed."""
    def run(export: Export) -> Change[Export] | Wait:
        try:
            return step(export)
        except ExportError as error:
            raise StepFailed(escape(str(error))) from error
    return run


class _Throttled:
    """The dump's progress, shown on the card at most every PROGRESS_EVERY_SECONDS;
    showing it never stops the dump."""

    def __init__(self, shown: ProgressShown, export: Export, database: str) -> None:
        self.shown = shown
        self.export = export
        self.database = database
        self.last = 0.0
        self.lock = threading.Lock()

    def written(self, size: int) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.last < PROGRESS_EVERY_SECONDS:
                return
            self.last = now
        try:
            self.shown.export_progress(self.export, self.export.size + size, self.database)
        except Exception:
            log.exception("could not show the progress of export %s", self.export.id)
