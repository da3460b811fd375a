"""Restoring an export (`python -m bot export restore` and `/restore export`): which
database of the export goes where, the digest an approval binds, and the check of a
restore against the manifest's row counts, as a verification report. Standard library and
bot/domain only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.domain.errors import InvalidInput
from bot.domain.export_manifest import DumpedDatabase, Manifest
from bot.domain.exports import MANIFEST_NAME
from bot.domain.verification import TableKey, TableResult, VerificationReport

LATEST_LISTED = 5  # export ids named when the one asked for is not there


def files_digest(manifest: Manifest) -> str:
    """SHA-256 over each file's name, size and SHA-256 as the manifest lists them: what an
    approval of `/restore export` is bound to, so a manifest rewritten after the approval
    (other files, other checksums) no longer matches it."""
    body = sorted([d.database, d.file, d.size, d.sha256] for d in manifest.databases)
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def latest_ids(export_ids: Sequence[str]) -> str:
    """`a, b, c` — the newest ids last as listed oldest first, for 'no such export' messages;
    says there is none when the list is empty."""
    if not export_ids:
        return "there are no finished exports yet"
    shown = list(export_ids)[-LATEST_LISTED:]
    return "the latest are " + ", ".join(shown)


# --- where each database goes (the command line) -----------------------------------------


@dataclass(frozen=True)
class Placement:
    """One database of the export and the database on the target server it goes into."""

    database: DumpedDatabase
    target: str  # the name of the database on the target server


def place_databases(databases: Sequence[DumpedDatabase], *, into_database: str | None,
                    pick: str | None) -> list[Placement]:
    """Where `export restore` puts each database. `into_database` is the database named in
    `--into` (None for a server URL without one); `pick` is `--database`.

    - One database (the export holds one, or `--database` picks one): into the URL's
      database, or, for a server URL, into a database of its own name.
    - Several: only into a server URL, each into a database of its own name; a URL naming
      a database is refused rather than guessed at.
    InvalidInput saying what is accepted."""
    names = [d.database for d in databases]
    if not databases:
        raise InvalidInput(f"the export's {MANIFEST_NAME} lists no database: nothing to restore")
    if pick is not None:
        chosen = [d for d in databases if d.database == pick]
        if not chosen:
            raise InvalidInput(f"the export holds no database {pick!r}; it holds "
                               + ", ".join(repr(n) for n in names))
        databases = chosen
    if len(databases) == 1:
        return [Placement(databases[0], into_database or databases[0].database)]
    if into_database is not None:
        raise InvalidInput(
            f"the export holds {len(databases)} databases ({', '.join(repr(n) for n in names)}) "
            f"and --into names one database ({into_database!r}): give --into a server URL "
            "without a database (postgresql://user@host:5432/) to restore each into a "
            "database of its own name, created if missing, or pick one with --database NAME")
    return [Placement(d, d.database) for d in databases]


# --- the check against the manifest ------------------------------------------------------


def manifest_report(expected: Sequence[DumpedDatabase],
                    found: Mapping[str, Mapping[TableKey, int]], *, seconds: float,
                    extra_databases: Sequence[str] = (),
                    errors: Mapping[str, str] | None = None) -> VerificationReport:
    """The restored databases (`found`: database -> (schema, table) -> exact rows) against
    the manifest's counts, taken in the dump's own snapshot, so every table must match
    exactly: none missing, none extra, the same rows. With several databases a table is
    named `<database>.<schema>.<table>`. `errors`: databases that could not be read."""
    several = len(expected) > 1
    tables: list[TableResult] = []
    missing: list[str] = []
    extra: list[str] = []
    for database in expected:
        prefix = f"{database.database}." if several else ""
        counted = found.get(database.database, {})
        wanted = {(t.schema, t.table): t.rows for t in database.tables}
        for (schema, table), rows in wanted.items():
            if (schema, table) not in counted:
                missing.append(f"{prefix}{schema}.{table}")
                continue
            here = counted[(schema, table)]
            differs = here != rows
            note = (f"rows {here} here, {rows} in the export" if differs
                    else f"{rows} rows, as in the export (exact)")
            tables.append(TableResult(f"{prefix}{schema}" if several else schema, table,
                                      rows, here, True, {}, differs, note))
        extra += [f"{prefix}{schema}.{table}" for schema, table in counted
                  if (schema, table) not in wanted]
    extra += [f"{name} (a database the export does not hold)" for name in extra_databases]
    problems = [f"{name}: {problem}" for name, problem in (errors or {}).items()]
    ok = not problems and not missing and not extra and not any(t.differs for t in tables)
    return VerificationReport(
        ok=ok, compared_tables=len(tables), tables=tuple(tables),
        missing_in_target=tuple(missing), extra_in_target=tuple(extra), checks=(),
        seconds=round(seconds, 3), error=" ".join(problems) or None,
        compared_with="the export's manifest")


def report_lines(report: VerificationReport) -> list[str]:
    """The report as plain lines for a terminal: every table, then what is wrong."""
    lines = [f"  {'ok' if not t.differs else 'MISMATCH'}  {t.schema}.{t.table}: {t.note}"
             for t in report.tables]
    lines += [f"  MISSING  {name}: in the export, not restored" for name in
              report.missing_in_target]
    lines += [f"  EXTRA    {name}: restored, but not in the export" for name in
              report.extra_in_target]
    if report.error:
        lines.append(f"  ERROR    {report.error}")
    return lines
