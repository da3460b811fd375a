"""Disaster recovery without Slack, Neon or Lifeguard's store: an export restored into any
PostgreSQL server (`python -m bot export restore <id> --into <url> [--database NAME]`).

1. The export is found in the bucket (an unknown id: the latest ids are named).
2. Where each of its databases goes is decided (bot.domain.export_restores.place_databases)
   and each target is checked: reachable, and empty or missing (missing ones are created
   once the export has checked out). A database holding tables already is refused: a
   restore into it would mix two states.
3. Every file's size and SHA-256 are checked against the manifest (and SHA256SUMS against
   the manifest), the archive read whole, before anything is restored.
4. Each database is restored with pg_restore, then every table's rows are counted and
   compared with the manifest's counts, taken in the dump's own snapshot.

Any fault or mismatch ends with `ok` False and the reason in words; nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.domain.errors import InvalidInput, LifeguardError
from bot.domain.export_manifest import Manifest
from bot.domain.export_restores import Placement, manifest_report, place_databases
from bot.domain.verification import TableKey, VerificationReport
from bot.services.export_restore_steps import find_restorable
from bot.services.ports import ExportArchive
from bot.services.verification import count_rows


class TargetServer(Protocol):
    """The PostgreSQL server restored into (bot/exports/targets.py)."""

    named_database: str | None  # the database the URL names, None for a server URL

    def describe(self) -> str: ...
    def database_url(self, database: str) -> str: ...
    def exists(self, database: str) -> bool: ...
    def user_tables(self, database: str) -> list[str]: ...
    def create(self, database: str) -> None: ...


class RecoveryFailed(LifeguardError):
    """The restore cannot go on; the message says why and what to do."""


@dataclass
class RecoveryResult:
    export_id: str
    manifest: Manifest | None = None
    placements: list[Placement] = field(default_factory=list)
    report: VerificationReport | None = None
    problem: str | None = None  # what stopped it, when it stopped
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None and self.report is not None and self.report.ok


Counter = Callable[[str, str], dict[TableKey, int]]  # (url, label) -> rows per table


def _count(url: str, label: str) -> dict[TableKey, int]:
    return count_rows(url, label=label)


class ExportRecovery:
    def __init__(self, archive: ExportArchive, target: TargetServer, *,
                 counter: Counter = _count,
                 progress: Callable[[str], None] = lambda line: None) -> None:
        self.archive = archive
        self.target = target
        self.counter = counter
        self.progress = progress

    def restore(self, export_id: str, *, database: str | None = None) -> RecoveryResult:
        began = time.monotonic()
        result = RecoveryResult(export_id)
        try:
            self._restore(result, export_id, database)
        except LifeguardError as error:  # ExportError, InvalidInput, RecoveryFailed…
            result.problem = str(error)
        result.seconds = round(time.monotonic() - began, 1)
        return result

    def _restore(self, result: RecoveryResult, export_id: str, pick: str | None) -> None:
        found = find_restorable(self.archive, export_id,
                                listed_by="`python -m bot export list`")
        manifest = found.manifest
        assert manifest is not None
        result.manifest = manifest
        try:
            placements = place_databases(manifest.databases,
                                         into_database=self.target.named_database, pick=pick)
        except InvalidInput as error:
            raise RecoveryFailed(f"Nothing was restored: {error}.") from None
        result.placements = placements
        missing = self._check_targets(placements)

        self.progress(f"Checking the {len(manifest.databases)} file(s) of export "
                      f"{export_id} against its manifest…")
        check = self.archive.verify(found.folder)
        if not check.passed:
            raise RecoveryFailed("Nothing was restored: the export does not match its "
                                 "manifest: " + "; ".join(check.failures()))

        for placement in placements:
            name = placement.target
            if name in missing:
                self.progress(f"Creating database {name!r} on {self.target.describe()}…")
                self.target.create(name)
            self.progress(f"Restoring {placement.database.database!r} into {name!r}…")
            self.archive.restore_file(found.folder, placement.database.file,
                                      self.target.database_url(name),
                                      expected_sha256=placement.database.sha256)

        began = time.monotonic()
        counted: dict[str, dict[TableKey, int]] = {}
        errors: dict[str, str] = {}
        for placement in placements:
            try:
                counted[placement.database.database] = self.counter(
                    self.target.database_url(placement.target),
                    f"database {placement.target!r}")
            except LifeguardError as error:
                errors[placement.database.database] = str(error)
        result.report = manifest_report([p.database for p in placements], counted,
                                        seconds=time.monotonic() - began, errors=errors)

    def _check_targets(self, placements: list[Placement]) -> set[str]:
        """The target databases that do not exist yet; RecoveryFailed when one holds
        tables already (checked for all before anything is restored)."""
        missing: set[str] = set()
        for placement in placements:
            name = placement.target
            if not self.target.exists(name):
                missing.add(name)
                continue
            tables = self.target.user_tables(name)
            if tables:
                shown = ", ".join(tables[:5]) + (" and more" if len(tables) > 5 else "")
                raise RecoveryFailed(
                    f"Nothing was restored: database {name!r} on {self.target.describe()} "
                    f"holds tables already ({shown}). Restore into an empty or a new "
                    "database (one that does not exist is created).")
        return missing
