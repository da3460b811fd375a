"""`/restore export <export-id>`: what a change request needs from an export, and the steps
that restore one on the engine for long work (the request Kind of
bot/services/request_steps.py, which calls these).

Asked: exports must be configured, EXPORT_IDENTITY set (the bot cannot decrypt without it),
the export found and its manifest readable; the plan binds the export id and the digest of
its files' SHA-256s (bot.domain.export_restores.files_digest).

Run, each step idempotent and checked against that digest first:

    check_export      every file's size and SHA-256 against the manifest, read whole
                      (before Neon is touched: a corrupt export makes no branch)
    create_branch     restore-… from the default branch (request_steps)
    wait_branch
    empty_databases   every database of the branch deleted through Neon's API
    restore_databases one database at a time: created empty (deleted first if a crash
                      left it half restored), pg_restore over the branch's unpooled
                      connection, its bytes checked again as they stream
    verify            every table's rows against the manifest; no table and no database
                      the export lacks

then the normal `/restore promote` path applies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from bot.domain.errors import InvalidInput, LifeguardError, NotAllowed, NotFound
from bot.domain.export_archive import FoundExport
from bot.domain.export_errors import ExportError
from bot.domain.export_restores import files_digest, latest_ids, manifest_report
from bot.domain.requests import ChangeRequest, RequestState, Step
from bot.domain.verification import TableKey
from bot.neon.models import Branch, Database, Endpoint, Operation, Role
from bot.services.ports import ExportArchive
from bot.services.verification import count_rows
from bot.services.work import Change

DATABASE_WAIT_SECONDS = 120.0
EXPORT_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")  # bot.domain.exports' ids

NOT_CONFIGURED = ("Exports are not configured, so there is nothing to restore from: set "
                  "EXPORT_URL (s3://bucket/prefix), EXPORT_RECIPIENTS (age public keys) and, "
                  "to restore, EXPORT_IDENTITY (the path of an age identity file), then "
                  "restart Lifeguard.")
NO_IDENTITY = ("EXPORT_IDENTITY is not set, so Lifeguard cannot decrypt an export: restoring "
               "one needs the age identity file of one of EXPORT_RECIPIENTS' keys. Set "
               "EXPORT_IDENTITY to its path and restart Lifeguard.")


class ExportRestoreNeon(Protocol):
    """The part of the Neon client an export restore uses."""

    def default_branch(self) -> Branch: ...
    def list_databases(self, branch_id: str) -> list[Database]: ...
    def list_roles(self, branch_id: str) -> list[Role]: ...
    def create_database(self, branch_id: str, name: str,
                        owner_name: str) -> tuple[Database, tuple[Operation, ...]]: ...
    def delete_database(self, branch_id: str, name: str) -> tuple[Operation, ...]: ...
    def list_endpoints(self) -> list[Endpoint]: ...
    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str: ...
    def wait_for_operations(self, operations: Any, *,
                            timeout: float | None = None) -> list[Operation]: ...


Counter = Callable[[str, str], dict[TableKey, int]]  # (url, label) -> rows per table


def _count(url: str, label: str) -> dict[TableKey, int]:
    return count_rows(url, label=label)


def find_restorable(archive: ExportArchive, export_id: str, *, listed_by: str) -> FoundExport:
    """The finished export `export_id` with its manifest; NotFound naming the latest ids
    (and `listed_by`, the command that lists them), or NotAllowed when its manifest cannot
    be read."""
    found = archive.find(export_id)
    if found is None:
        ids = [export.export_id for export in archive.list_exports()]
        raise NotFound(f"There is no finished export `{export_id}` in {archive.where()}: "
                       f"{latest_ids(ids)}. {listed_by} lists them.")
    if found.manifest is None:
        raise NotAllowed(f"Export `{export_id}` cannot be restored: {found.problem}")
    return found


def export_facts(found: FoundExport) -> dict[str, Any]:
    """What the card shows of the export, stored with the request when it is asked."""
    manifest = found.manifest
    assert manifest is not None
    return {"export": {
        "id": found.export_id, "folder": found.folder,
        "started_at": manifest.started_at.isoformat(),
        "branch_name": manifest.branch_name,
        "databases": [{"name": d.database, "size": d.size, "tables": len(d.tables)}
                      for d in manifest.databases],
    }}


class ExportRestores:
    def __init__(self, archive: ExportArchive | None, neon: ExportRestoreNeon, *,
                 counter: Counter = _count) -> None:
        self.archive = archive
        self.neon = neon
        self.counter = counter

    # --- asking -------------------------------------------------------------------------

    def prepare(self, export_id: str) -> FoundExport:
        """The export a `/restore export` names, or NotAllowed/NotFound/InvalidInput saying
        why it cannot be restored (nothing is recorded then)."""
        archive = self._archive()
        if not archive.can_decrypt:
            raise NotAllowed(NO_IDENTITY)
        if not EXPORT_ID.match(export_id):
            raise InvalidInput("An export id is letters, digits, '-' and '_' (`/backup "
                               "exports` lists them).")
        return find_restorable(archive, export_id, listed_by="`/backup exports`")

    def _archive(self) -> ExportArchive:
        if self.archive is None:
            raise NotAllowed(NOT_CONFIGURED)
        return self.archive

    def _export(self, request: ChangeRequest) -> FoundExport:
        """The approved export, still there and still the one approved."""
        plan = request.plan
        assert plan.export_id is not None
        found = self._archive().find(plan.export_id)
        if found is None or found.manifest is None:
            raise ExportError(f"Export {plan.export_id} is no longer in the bucket (or its "
                              "manifest cannot be read).")
        if files_digest(found.manifest) != plan.export_digest:
            raise NotAllowed(f"Export {plan.export_id}'s manifest changed after the request "
                             "was approved (its files' checksums are not the approved ones). "
                             "Nothing was restored; ask for a new request.")
        return found

    # --- the steps ----------------------------------------------------------------------

    def check(self, request: ChangeRequest) -> Change[ChangeRequest]:
        found = self._export(request)
        checked = self._archive().verify(found.folder)
        if not checked.passed:
            raise ExportError("The export does not match its manifest, so nothing was "
                              "restored: " + "; ".join(checked.failures()))
        return Change(replace(request, step=Step.CREATE_BRANCH), "request.export_checked",
                      {"export_id": found.export_id, "files": len(checked.files),
                       "archives_read": checked.archives_read})

    def empty(self, request: ChangeRequest) -> Change[ChangeRequest]:
        """Delete every database of the new branch: it must hold what the export holds and
        nothing else. The owner of the databases made next is the branch's."""
        branch_id = self._branch(request)
        databases = self.neon.list_databases(branch_id)
        owner = request.extra.get("export_owner") or (
            databases[0].owner_name if databases else self._first_role(branch_id))
        for database in databases:
            self._wait(self.neon.delete_database(branch_id, database.name))
        return Change(replace(request, step=Step.RESTORE_DATABASES,
                              extra={**request.extra, "export_owner": owner,
                                     "restored": []}),
                      "request.databases_emptied",
                      {"deleted": [d.name for d in databases]})

    def restore_next(self, request: ChangeRequest) -> Change[ChangeRequest]:
        """Restore the next database not restored yet; once all are, on to verify."""
        found = self._export(request)
        assert found.manifest is not None
        done = list(request.extra.get("restored") or [])
        pending = [d for d in found.manifest.databases if d.database not in done]
        if not pending:
            return Change(replace(request, step=Step.VERIFY))
        database = pending[0]
        branch_id, owner = self._branch(request), str(request.extra["export_owner"])
        if any(d.name == database.database for d in self.neon.list_databases(branch_id)):
            # a try before a crash left it half restored: start it afresh
            self._wait(self.neon.delete_database(branch_id, database.database))
        _, operations = self.neon.create_database(branch_id, database.database, owner)
        self._wait(operations)
        began = time.monotonic()
        self._archive().restore_file(found.folder, database.file,
                                     self._uri(branch_id, database.database, owner),
                                     expected_sha256=database.sha256)
        return Change(replace(request, extra={**request.extra,
                                              "restored": [*done, database.database]}),
                      "request.database_restored",
                      {"database": database.database, "file": database.file,
                       "seconds": round(time.monotonic() - began, 1)})

    def verify(self, request: ChangeRequest, finished_at: datetime) -> Change[ChangeRequest]:
        found = self._export(request)
        assert found.manifest is not None
        branch_id, owner = self._branch(request), str(request.extra["export_owner"])
        expected = found.manifest.databases
        began = time.monotonic()
        held = [d.name for d in self.neon.list_databases(branch_id)]
        counted: dict[str, dict[TableKey, int]] = {}
        errors: dict[str, str] = {}
        for database in expected:
            if database.database not in held:
                errors[database.database] = "the branch has no such database"
                continue
            try:
                counted[database.database] = self.counter(
                    self._uri(branch_id, database.database, owner),
                    f"database {database.database} of the restore branch")
            except LifeguardError as error:  # RowCountError: said plainly, no secret
                errors[database.database] = str(error)
        wanted = {d.database for d in expected}
        report = manifest_report(expected, counted, seconds=time.monotonic() - began,
                                 extra_databases=[n for n in held if n not in wanted],
                                 errors=errors)
        details = {"ok": report.ok, "summary": report.summary(),
                   "tables": report.compared_tables}
        if not report.ok:
            reason = (f"Verification failed: {report.summary()} The restore branch "
                      f"`{request.plan.target_branch_name}` is kept so you can look into "
                      "it; delete it in the Neon console (Branches) when done.")
            return Change(replace(request, state=RequestState.FAILED, error=reason,
                                  verification=report.to_dict(), finished_at=finished_at),
                          "request.verification_failed", details | {"error": reason})
        return Change(replace(request, state=RequestState.SUCCEEDED, step=Step.DONE,
                              verification=report.to_dict(), finished_at=finished_at),
                      "request.succeeded", details)

    # --- Neon ---------------------------------------------------------------------------

    @staticmethod
    def _branch(request: ChangeRequest) -> str:
        assert request.branch_id is not None, "the restore branch is made before this step"
        return request.branch_id

    def _first_role(self, branch_id: str) -> str:
        roles = self.neon.list_roles(branch_id)
        if not roles:
            raise ExportError("The restore branch has no role to own the restored databases.")
        return roles[0].name

    def _uri(self, branch_id: str, database: str, owner: str) -> str:
        """The branch's unpooled read-write connection to `database`: pg_restore needs a
        session of its own, which a transaction pooler does not give. Never shown."""
        endpoint = next((e for e in self.neon.list_endpoints()
                         if e.branch_id == branch_id and e.type == "read_write"), None)
        if endpoint is None:
            raise ExportError("The restore branch has no read-write compute to restore into.")
        return self.neon.connection_uri(branch_id, database, owner, pooled=False,
                                        endpoint_id=endpoint.id)

    def _wait(self, operations: tuple[Operation, ...]) -> None:
        if operations:
            self.neon.wait_for_operations(list(operations), timeout=DATABASE_WAIT_SECONDS)
