"""Verification of a restored (or promoted) branch: connect to it and to its source, and
compare their tables, row counts and newest timestamps, then run the team's own checks.

Both sides are read at the same time (one thread and one connection each), inside one
read-only REPEATABLE READ transaction per side, so every figure of a side comes from the
same snapshot and nothing can be written by a verification or by a custom check.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

APPLICATION_NAME = "lifeguard-verify"
# Estimated counts are never exact: a fresh ANALYZE on one side alone moves the estimate
# by a few percent on a big table. Below this relative gap the estimates "match".
ESTIMATE_TOLERANCE = 0.05
MAX_LISTED = 5  # tables named in a summary before "and N more"

TableKey = tuple[str, str]

# One query per side for every user table. pg_relation_size lets the estimate follow the
# table's current size, as the planner does, when reltuples is stale. Timestamp columns
# (name ending in _at) come along, with whether a btree index leads with them: a table too
# big to count is only asked for the max of indexed columns, which needs no scan.
_CATALOG = sql.SQL(r"""
SELECT n.nspname, c.relname, c.reltuples::float8, c.relpages,
       pg_relation_size(c.oid) / current_setting('block_size')::int8 AS pages,
       coalesce(array_agg(a.attname ORDER BY a.attnum)
                FILTER (WHERE a.attname IS NOT NULL), '{}') AS timestamp_columns,
       coalesce(array_agg(a.attname ORDER BY a.attnum)
                FILTER (WHERE a.attname IS NOT NULL AND EXISTS (
                    SELECT 1 FROM pg_index i
                    JOIN pg_class ic ON ic.oid = i.indexrelid
                    JOIN pg_am am ON am.oid = ic.relam
                    WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum AND i.indisvalid
                      AND i.indpred IS NULL AND am.amname = 'btree')), '{}') AS indexed
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     AND a.atttypid IN ('timestamp'::regtype, 'timestamptz'::regtype)
     AND lower(a.attname) LIKE '%\_at'
WHERE c.relkind = 'r'  -- partitions are 'r' too; a partitioned parent holds no rows itself
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
  -- schemas and tables that belong to an extension are the extension's, not the user's
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass
                    AND ((d.classid = 'pg_namespace'::regclass AND d.objid = n.oid)
                      OR (d.classid = 'pg_class'::regclass AND d.objid = c.oid)))
GROUP BY n.nspname, c.relname, c.oid, c.reltuples, c.relpages
ORDER BY 1, 2
""")


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
        """One or two sentences for the Slack card."""
        against = f" against {self.compared_with}" if self.compared_with else ""
        if self.error:
            return f"Verification{against} failed: {self.error}"
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
            parts.append(f"Missing here: {_listing(list(self.missing_in_target))}.")
        if self.extra_in_target:
            parts.append(f"Only here, not in the source: {_listing(list(self.extra_in_target))}.")
        failed = [c for c in self.checks if not c.passed]
        if failed:
            said = [f"{c.name} (error: {c.error})" if c.error else f"{c.name} (got {c.value})"
                    for c in failed]
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
        return f"; newest {column} {text} ({table}), the same in the source"

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


class Verifier(Protocol):
    """What restores and drills call to verify a branch: `verify_branch` with the
    settings' custom checks and row limit bound."""

    def __call__(self, target_url: str, source_url: str, *, compared_with: str,
                 allow_differences: bool) -> VerificationReport: ...


def verify_branch(target_url: str, source_url: str, *, compared_with: str,
                  exact_row_limit: int = 1_000_000,
                  custom_checks: Mapping[str, str] = {},  # only read, never changed
                  connect_timeout: float = 10, statement_timeout_ms: int = 60_000,
                  allow_differences: bool = False) -> VerificationReport:
    """Compare the branch at `target_url` with `source_url`. Never raises for database
    trouble: the report says what went wrong, without passwords or connection strings."""
    began = time.perf_counter()
    secrets = _secrets_of(target_url, source_url)
    target = _Side("the branch being verified", target_url, secrets)
    source = _Side(f"the source ({compared_with})" if compared_with else "the source",
                   source_url, secrets)

    def report(**fields: Any) -> VerificationReport:
        defaults: dict[str, Any] = {
            "ok": False, "compared_tables": 0, "tables": (), "missing_in_target": (),
            "extra_in_target": (), "checks": (), "error": None}
        return VerificationReport(**{**defaults, **fields}, compared_with=compared_with,
                                   seconds=round(time.perf_counter() - began, 3))

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        try:
            # Phase 1: connect and list tables on both sides at once.
            opened = [pool.submit(side.open, connect_timeout, statement_timeout_ms)
                      for side in (target, source)]
            errors = [e for e in (f.exception() for f in opened) if e is not None]
            if errors:
                return report(error=" ".join(_message(e) for e in errors))
            target_tables, source_tables = opened[0].result(), opened[1].result()

            both = [key for key in source_tables if key in target_tables]
            missing = tuple(_qualified(k) for k in source_tables if k not in target_tables)
            extra = tuple(_qualified(k) for k in target_tables if k not in source_tables)
            plans = {key: _plan(source_tables[key], target_tables[key], exact_row_limit)
                     for key in both}

            # Phase 2: count and read the newest timestamps on both sides at once; the
            # target then runs the custom checks while the source is done.
            measured = [pool.submit(target.measure, plans, custom_checks),
                        pool.submit(source.measure, plans, {})]
            (target_values, target_error, checks) = _outcome(measured[0], target)
            (source_values, source_error, _) = _outcome(measured[1], source)
        finally:
            for side in (target, source):
                side.close()

    tables: list[TableResult] = []
    for key in both:
        if key in source_values and key in target_values:
            tables.append(_compare(key, plans[key], source_tables[key], target_tables[key],
                                   source_values[key], target_values[key]))
    error = " ".join(e for e in (target_error, source_error) if e) or None
    differing = any(t.differs for t in tables)
    ok = (error is None
          and (len(tables) >= 1 or not source_tables)
          and len(tables) == len(both)
          # against live production, a table may have been added since the instant
          and (allow_differences or (not differing and not extra and not missing))
          and all(c.passed for c in checks))
    return report(ok=ok, compared_tables=len(tables), tables=tuple(tables),
                  missing_in_target=missing, extra_in_target=extra, checks=tuple(checks),
                  error=error)


# --- one side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A table as one side's catalog describes it."""

    schema: str
    name: str
    estimate: int | None  # None: never analysed (reltuples -1), so unknown
    timestamp_columns: tuple[str, ...]
    indexed_columns: frozenset[str]


@dataclass(frozen=True)
class _Plan:
    exact: bool
    columns: tuple[str, ...]  # timestamp columns whose max is read on both sides


@dataclass
class _Measured:
    rows: int | None  # None when estimated: the estimate is in the catalog row
    newest: dict[str, str | None] = field(default_factory=dict)


_Outcome = tuple[dict[TableKey, "_Measured"], str | None, list[CheckResult]]


class _SideError(Exception):
    """A failure already put in plain words, without secrets."""


class _Side:
    def __init__(self, label: str, url: str,
                 secrets: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        self.label = label
        self.url = url
        self.secrets = secrets
        self.conn: psycopg.Connection[Any] | None = None
        self.statement_timeout_ms = 0

    def open(self, connect_timeout: float, statement_timeout_ms: int) -> dict[TableKey, _Table]:
        self.statement_timeout_ms = statement_timeout_ms
        try:
            self.conn = psycopg.connect(
                self.url,
                # libpq takes whole seconds; rounding up never cuts a wait short
                connect_timeout=max(1, math.ceil(connect_timeout)),
                application_name=APPLICATION_NAME,
            )
        except Exception as e:  # any failure here is "could not connect", said plainly
            raise _SideError(_sentence(f"Could not connect to {self.label}: "
                                       f"{self._clean(e)}")) from None
        try:
            self._begin()
            rows = self.conn.execute(_CATALOG).fetchall()
        except psycopg.Error as e:
            raise _SideError(_sentence(f"Could not list the tables of {self.label}: "
                                       f"{self._clean(e)}")) from None
        return {(r[0], r[1]): _Table(r[0], r[1], _estimate(r[2], r[3], r[4]), tuple(r[5]),
                                     frozenset(r[6])) for r in rows}

    def _begin(self) -> None:
        """Start the side's transaction: read-only, one snapshot for every query, UTC and
        ISO dates so timestamps read the same from both sides."""
        assert self.conn is not None
        self.conn.read_only = True
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        # SET LOCAL through set_config: it lasts for this transaction only, which also
        # holds behind a transaction-mode connection pooler.
        self.conn.execute(
            "SELECT set_config('statement_timeout', %s, true),"
            " set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true)",
            (str(self.statement_timeout_ms),))

    def measure(self, plans: Mapping[TableKey, _Plan], checks: Mapping[str, str]) -> _Outcome:
        """Counts and newest timestamps per plan, then the custom checks. Stops at the first
        failed query (it ends the transaction) and says which table it was."""
        assert self.conn is not None
        values: dict[TableKey, _Measured] = {}
        error: str | None = None
        for key, plan in plans.items():
            query = _measure_query(key, plan)
            if query is None:
                values[key] = _Measured(rows=None)
                continue
            try:
                row = self.conn.execute(query).fetchone()
            except psycopg.Error as e:
                error = _sentence(f"Reading {_qualified(key)} on {self.label} failed: "
                                  f"{self._clean(e)}")
                break
            assert row is not None
            offset = 1 if plan.exact else 0
            values[key] = _Measured(
                rows=int(row[0]) if plan.exact else None,
                newest={c: _rfc3339(row[offset + i]) for i, c in enumerate(plan.columns)})
        results: list[CheckResult] = []
        if checks:
            try:
                if error is not None:  # the failed query aborted the transaction: afresh
                    self.conn.rollback()
                    self._begin()
            except psycopg.Error as e:  # the connection itself is gone
                reason = self._clean(e)
                return values, error, [CheckResult(n, False, None, reason) for n in checks]
            results = [self._check(name, query) for name, query in checks.items()]
        return values, error, results

    def _check(self, name: str, query: str) -> CheckResult:
        assert self.conn is not None
        try:
            with self.conn.transaction():  # a savepoint: one failed check spares the others
                cur = self.conn.execute(query)  # type: ignore[arg-type]  # the team's own SQL
                if cur.description is None:
                    return CheckResult(name, False, None, "it returned no result; "
                                       "a check is a SELECT of one value")
                if len(cur.description) != 1:
                    return CheckResult(name, False, None, f"it returned "
                                       f"{len(cur.description)} columns; a check returns one")
                rows = cur.fetchmany(2)
        except psycopg.Error as e:
            return CheckResult(name, False, None, self._clean(e))
        if len(rows) != 1:
            return CheckResult(name, False, None, "it returned no row; a check returns one"
                               if not rows else "it returned several rows; a check returns one")
        value = rows[0][0]
        return CheckResult(name, _truthy(value), _value_text(value), None)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # rolls back: nothing was written anyway
            finally:
                self.conn = None

    def _clean(self, error: BaseException) -> str:
        return _scrub(_first_words(error), self.secrets)


def _outcome(future: Future[_Outcome], side: _Side) -> _Outcome:
    """A side's measurements, or what went wrong in words: verify_branch never raises."""
    error = future.exception()
    if error is None:
        return future.result()
    return {}, _sentence(f"Reading {side.label} failed: {side._clean(error)}"), []


def _estimate(reltuples: float, relpages: int, pages: int) -> int | None:
    if reltuples < 0:  # never vacuumed nor analysed: no estimate, count it
        return None
    if relpages > 0:  # scale by the current size, as the planner does, for stale stats
        return round(reltuples / relpages * pages)
    return round(reltuples)


def _plan(source: _Table, target: _Table, exact_row_limit: int) -> _Plan:
    exact = all(t.estimate is None or t.estimate < exact_row_limit for t in (source, target))
    if exact:  # the count scans the table anyway; every max rides along in that scan
        columns = tuple(c for c in source.timestamp_columns if c in target.timestamp_columns)
    else:  # no scan of a big table: only maxima an index answers
        columns = tuple(c for c in source.timestamp_columns
                        if c in source.indexed_columns and c in target.indexed_columns)
    return _Plan(exact, columns)


def _measure_query(key: TableKey, plan: _Plan) -> sql.Composed | None:
    items = [sql.SQL("count(*)")] if plan.exact else []
    # ::text: infinity and BC dates have no Python datetime; the text always exists
    items += [sql.SQL("max({})::text").format(sql.Identifier(c)) for c in plan.columns]
    if not items:
        return None
    return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items),
                                               sql.Identifier(*key))


def _compare(key: TableKey, plan: _Plan, source_table: _Table, target_table: _Table,
             source: _Measured, target: _Measured) -> TableResult:
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
            notes.append(f"newest {column} {here or 'none'} here, "
                         f"{in_source or 'none'} in the source")
    if not notes:
        kind = "exact" if plan.exact else "estimated"
        about = "" if plan.exact else "about "
        note = f"{about}{target_rows} rows on both sides ({kind})"
    else:
        note = "; ".join(notes)
    return TableResult(key[0], key[1], source_rows, target_rows, plan.exact, newest,
                       bool(notes), note)


# --- words and values --------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value.strip().lower() in ("t", "true")
    return False


def _value_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rfc3339(text: str | None) -> str | None:
    """PostgreSQL's ISO text (UTC for timestamptz; a timestamp without zone is taken as
    UTC, having none) as RFC 3339. Text with no such form (infinity, BC) stays as it is."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        stamp += f".{when.microsecond:06d}".rstrip("0")
    return stamp + "Z"


def _parse_rfc3339(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _display(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def _qualified(key: TableKey) -> str:
    return f"{key[0]}.{key[1]}"


def _listing(items: list[str]) -> str:
    if len(items) <= MAX_LISTED:
        return ", ".join(items)
    return ", ".join(items[:MAX_LISTED]) + f" and {len(items) - MAX_LISTED} more"


def _message(error: BaseException) -> str:
    if isinstance(error, _SideError):
        return str(error)
    # Not expected: still plain words, and still no secrets (the URL is not in scope here).
    return f"Verification failed: {type(error).__name__}."


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _first_words(error: BaseException) -> str:
    """The server's or libpq's message on one line: the primary message of a server error
    (without the LINE/caret lines), else libpq's text without its 'connection failed:'."""
    primary = error.diag.message_primary if isinstance(error, psycopg.Error) else None
    lines = [" ".join(line.split()) for line in (primary or str(error)).splitlines()]
    text = ""
    for line in filter(None, lines):  # libpq's hint comes on a line of its own
        text += (". " if text and text[-1] not in ".?!:" else " " if text else "") + line
    for prefix in ("connection failed: ", "connection is bad: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.rstrip(".") or type(error).__name__


def _secrets_of(*urls: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What must never be shown: the connection strings, and the passwords in them."""
    passwords: list[str] = []
    for url in urls:
        try:
            password = conninfo_to_dict(url).get("password")
        except Exception:  # unparsable: the patterns in _scrub still catch the usual forms
            password = None
        if password:
            passwords.append(str(password))
    # Longest first, so a whole string is replaced before a part of it.
    return (tuple(sorted({u for u in urls if u}, key=len, reverse=True)),
            tuple(sorted(set(passwords), key=len, reverse=True)))


_URI_PASSWORD = re.compile(r"(\w+://[^:/@\s]*):[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _scrub(text: str, secrets: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    urls, passwords = secrets
    for url in urls:
        text = text.replace(url, "[connection string]")
    for password in passwords:
        text = text.replace(password, "***")
    text = _URI_PASSWORD.sub(r"\1:***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)
