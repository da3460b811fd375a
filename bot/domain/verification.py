"""What a verification of a branch found, and the rules it compares by
(bot/services/verification.py reads both sides and calls them).

The report holds each table compared with the source, each custom check, and the one or
two sentences the Slack card says about them; it is stored with a restore or a drill as
`to_dict()` and read back with `from_dict()`. A table small enough on both sides is
counted exactly, a bigger one compared by its estimates within ESTIMATE_TOLERANCE.

Its fields hold names and messages as PostgreSQL gave them; its sentences (`summary()`,
a table's `note`) are mrkdwn-ready, with those names escaped where they are written in
(bot.domain.text)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.text import escape

# Estimated counts are never exact: a fresh ANALYZE on one side alone moves the estimate
# by a few percent on a big table. Below this relative gap the estimates "match".
ESTIMATE_TOLERANCE = 0.05
MAX_LISTED = 5  # tables named in a summary before "and N more"

TableKey = tuple[str, str]  # (schema, table)


# --- what was found ----------------------------------------------------------------------


@dataclass(frozen=True)
class TableResult:
    """One table present on both sides."""

    schema: str
    table: str
    source_rows: int | None
    target_rows: int | None
    exact: bool  # count(*) on both sides; else estimated from pg_class.reltuples
    # column -> (source max, target max), RFC 3339 UTC text; None when the table is empty
    newest: dict[str, tuple[str | None, str | None]]
    differs: bool
    note: str


@dataclass(frozen=True)
class CheckResult:
    """One custom check, run on the target."""

    name: str
    passed: bool
    value: str | None
    error: str | None


@dataclass(frozen=True)
class VerificationReport:
    ok: bool
    compared_tables: int
    tables: tuple[TableResult, ...]
    missing_in_target: tuple[str, ...]
    extra_in_target: tuple[str, ...]
    checks: tuple[CheckResult, ...]
    seconds: float
    error: str | None
    compared_with: str

    def summary(self) -> str:
        """One or two sentences for the Slack card (mrkdwn-ready)."""
        against = f" against {escape(self.compared_with)}" if self.compared_with else ""
        if self.error:
            return f"Verification{against} failed: {escape(self.error)}"
        parts: list[str] = []
        differing = [t for t in self.tables if t.differs]
        if not self.tables and not self.missing_in_target:
            parts.append(f"Verified 0 tables{against}: "
                         "there are no tables here and none in the source.")
        elif differing:
            listed = _listing([f"{_display(t.schema, t.table)} ({t.note})" for t in differing])
            head = f"{len(differing)} of {self.compared_tables} tables differ{against}"
            if self.ok:  # allowed differences: still shown, said why they do not fail it
                head += " (allowed: the source has moved on since)"
            parts.append(f"{head}: {listed}.")
        elif self.tables:
            parts.append(f"Verified {self.compared_tables} tables{against}: "
                         f"row counts match ({self._count_kinds()}){self._newest_phrase()}.")
        else:
            parts.append(f"Compared 0 tables{against}: none of the source's tables are here.")
        if self.missing_in_target:
            parts.append(f"Missing here: {_listing(_escaped(self.missing_in_target))}.")
        if self.extra_in_target:
            parts.append("Only here, not in the source: "
                         f"{_listing(_escaped(self.extra_in_target))}.")
        failed = [c for c in self.checks if not c.passed]
        if failed:
            said = [f"{escape(c.name)} (error: {escape(c.error)})" if c.error
                    else f"{escape(c.name)} (got {escape(str(c.value))})" for c in failed]
            parts.append(f"{len(failed)} of {len(self.checks)} checks failed: {_listing(said)}.")
        elif self.checks:
            parts.append(f"All {len(self.checks)} checks passed.")
        return " ".join(parts)

    def _count_kinds(self) -> str:
        estimated = sum(1 for t in self.tables if not t.exact)
        if not estimated:
            return "exact"
        if estimated == len(self.tables):
            return "estimated"
        return f"{len(self.tables) - estimated} exact, {estimated} estimated"

    def _newest_phrase(self) -> str:
        # The newest created_at across all tables says how recent the data is; another
        # *_at column stands in when no table has created_at.
        best: dict[str, tuple[datetime, str, str]] = {}
        for t in self.tables:
            for column, (_, target) in t.newest.items():
                when = _parse_rfc3339(target)
                if when is not None and (column not in best or when > best[column][0]):
                    best[column] = (when, target or "", _display(t.schema, t.table))
        if not best:
            return ""
        column = "created_at" if "created_at" in best else sorted(best)[0]
        _, text, table = best[column]
        return f"; newest {escape(column)} {escape(text)} ({table}), the same in the source"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for the store."""
        return {
            "ok": self.ok,
            "compared_tables": self.compared_tables,
            "tables": [{
                "schema": t.schema, "table": t.table,
                "source_rows": t.source_rows, "target_rows": t.target_rows,
                "exact": t.exact,
                "newest": {column: list(pair) for column, pair in t.newest.items()},
                "differs": t.differs, "note": t.note,
            } for t in self.tables],
            "missing_in_target": list(self.missing_in_target),
            "extra_in_target": list(self.extra_in_target),
            "checks": [{"name": c.name, "passed": c.passed, "value": c.value, "error": c.error}
                       for c in self.checks],
            "seconds": self.seconds,
            "error": self.error,
            "compared_with": self.compared_with,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerificationReport:
        return cls(
            ok=bool(data["ok"]),
            compared_tables=int(data["compared_tables"]),
            tables=tuple(TableResult(
                schema=t["schema"], table=t["table"],
                source_rows=t["source_rows"], target_rows=t["target_rows"],
                exact=bool(t["exact"]),
                newest={column: (pair[0], pair[1]) for column, pair in t["newest"].items()},
                differs=bool(t["differs"]), note=t["note"],
            ) for t in data["tables"]),
            missing_in_target=tuple(data["missing_in_target"]),
            extra_in_target=tuple(data["extra_in_target"]),
            checks=tuple(CheckResult(c["name"], bool(c["passed"]), c["value"], c["error"])
                         for c in data["checks"]),
            seconds=float(data["seconds"]),
            error=data["error"],
            compared_with=data["compared_with"],
        )


# --- what is compared, and whether the two sides match -----------------------------------


@dataclass(frozen=True)
class CatalogTable:
    """A table as one side's catalog describes it."""

    schema: str
    name: str
    estimate: int | None  # None: never analysed (reltuples -1), so unknown
    timestamp_columns: tuple[str, ...]
    indexed_columns: frozenset[str]


@dataclass(frozen=True)
class TablePlan:
    """How a table present on both sides is compared: counted or estimated, and which
    newest timestamps are read."""

    exact: bool
    columns: tuple[str, ...]  # timestamp columns whose max is read on both sides


@dataclass
class TableMeasurement:
    """What one side read of a table as its plan says."""

    rows: int | None  # None when estimated: the estimate is in the catalog row
    newest: dict[str, str | None] = field(default_factory=dict)


def plan_comparison(source: CatalogTable, target: CatalogTable,
                    exact_row_limit: int) -> TablePlan:
    exact = all(t.estimate is None or t.estimate < exact_row_limit for t in (source, target))
    if exact:  # the count scans the table anyway; every max rides along in that scan
        columns = tuple(c for c in source.timestamp_columns if c in target.timestamp_columns)
    else:  # no scan of a big table: only maxima an index answers
        columns = tuple(c for c in source.timestamp_columns
                        if c in source.indexed_columns and c in target.indexed_columns)
    return TablePlan(exact, columns)


def compare_table(key: TableKey, plan: TablePlan, source_table: CatalogTable,
                  target_table: CatalogTable, source: TableMeasurement,
                  target: TableMeasurement) -> TableResult:
    """Whether a table differs between the sides, and the note that says how (mrkdwn-ready:
    column names are escaped in it)."""
    if plan.exact:
        source_rows, target_rows = source.rows, target.rows
        rows_differ = source_rows != target_rows
    else:
        source_rows, target_rows = source_table.estimate, target_table.estimate
        high = max(source_rows or 0, target_rows or 0)
        rows_differ = abs((source_rows or 0) - (target_rows or 0)) > ESTIMATE_TOLERANCE * high
    newest = {c: (source.newest.get(c), target.newest.get(c)) for c in plan.columns}
    notes: list[str] = []
    if rows_differ:
        about = "" if plan.exact else "about "
        notes.append(f"rows {about}{target_rows} here, {about}{source_rows} in the source"
                     + ("" if plan.exact else " (estimated)"))
    for column, (in_source, here) in newest.items():
        if in_source != here:
            notes.append(f"newest {escape(column)} {escape(here or 'none')} here, "
                         f"{escape(in_source or 'none')} in the source")
    if not notes:
        kind = "exact" if plan.exact else "estimated"
        about = "" if plan.exact else "about "
        note = f"{about}{target_rows} rows on both sides ({kind})"
    else:
        note = "; ".join(notes)
    return TableResult(key[0], key[1], source_rows, target_rows, plan.exact, newest,
                       bool(notes), note)


# --- words -------------------------------------------------------------------------------


def _parse_rfc3339(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _display(schema: str, table: str) -> str:
    """A table's name as the summary writes it (escaped)."""
    return escape(table if schema == "public" else f"{schema}.{table}")


def _escaped(names: tuple[str, ...]) -> list[str]:
    return [escape(name) for name in names]


def _listing(items: list[str]) -> str:
    if len(items) <= MAX_LISTED:
        return ", ".join(items)
    return ", ".join(items[:MAX_LISTED]) + f" and {len(items) - MAX_LISTED} more"

