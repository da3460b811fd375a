"""Verification of a restored (or promoted) branch: connect to it and to its source, and
compare their tables, row counts and newest timestamps, then run the team's own checks.

Both sides are read at the same time (one thread and one connection each), inside one
read-only REPEATABLE READ transaction per side, so every figure of a side comes from the
same snapshot and nothing can be written by a verification or by a custom check. What is
compared, how two sides match and the report are bot/domain/verification.py's.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bot.domain.errors import LifeguardError
from bot.domain.verification import (
    CatalogTable,
    CheckResult,
    TableKey,
    TableMeasurement,
    TablePlan,
    TableResult,
    VerificationReport,
    compare_table,
    plan_comparison,
)

APPLICATION_NAME = "lifeguard-verify"

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
            plans = {key: plan_comparison(source_tables[key], target_tables[key],
                                          exact_row_limit)
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
            tables.append(compare_table(key, plans[key], source_tables[key],
                                        target_tables[key], source_values[key],
                                        target_values[key]))
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


def count_rows(url: str, *, label: str, connect_timeout: float = 10,
               statement_timeout_ms: int = 0) -> dict[TableKey, int]:
    """Every user table of the database at `url` with its exact row count, read in one
    read-only snapshot: for checking a restore against an export's manifest, whose counts
    are exact. RowCountError in plain words (`label` names the database), no secrets."""
    side = _Side(label, url, _secrets_of(url))
    try:
        tables = side.open(connect_timeout, statement_timeout_ms)
        values, error, _ = side.measure({key: TablePlan(True, ()) for key in tables}, {})
    except _SideError as failure:
        raise RowCountError(str(failure)) from None
    finally:
        side.close()
    if error is not None:
        raise RowCountError(error)
    return {key: measured.rows or 0 for key, measured in values.items()}


class RowCountError(LifeguardError):
    """The row counts of a database could not be read; the message says why."""


# --- one side ----------------------------------------------------------------------------


_Outcome = tuple[dict[TableKey, TableMeasurement], str | None, list[CheckResult]]


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

    def open(self, connect_timeout: float,
             statement_timeout_ms: int) -> dict[TableKey, CatalogTable]:
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
        return {(r[0], r[1]): CatalogTable(r[0], r[1], _estimate(r[2], r[3], r[4]), tuple(r[5]),
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

    def measure(self, plans: Mapping[TableKey, TablePlan], checks: Mapping[str, str]) -> _Outcome:
        """Counts and newest timestamps per plan, then the custom checks. Stops at the first
        failed query (it ends the transaction) and says which table it was."""
        assert self.conn is not None
        values: dict[TableKey, TableMeasurement] = {}
        error: str | None = None
        for key, plan in plans.items():
            query = _measure_query(key, plan)
            if query is None:
                values[key] = TableMeasurement(rows=None)
                continue
            try:
                row = self.conn.execute(query).fetchone()
            except psycopg.Error as e:
                error = _sentence(f"Reading {_qualified(key)} on {self.label} failed: "
                                  f"{self._clean(e)}")
                break
            assert row is not None
            offset = 1 if plan.exact else 0
            values[key] = TableMeasurement(
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


def _measure_query(key: TableKey, plan: TablePlan) -> sql.Composed | None:
    items = [sql.SQL("count(*)")] if plan.exact else []
    # ::text: infinity and BC dates have no Python datetime; the text always exists
    items += [sql.SQL("max({})::text").format(sql.Identifier(c)) for c in plan.columns]
    if not items:
        return None
    return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items),
                                               sql.Identifier(*key))


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



def _qualified(key: TableKey) -> str:
    return f"{key[0]}.{key[1]}"


def _message(error: BaseException) -> str:
    if isinstance(error, _SideError):
        return str(error)
    # Not expected: still plain words, and still no secrets (the URL is not in scope here).
    return f"Verification failed: {type(error).__name__}."


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def plain_error(error: BaseException, *urls: str) -> str:
    """A database error in plain words on one line, without the connection strings given
    or their passwords: for other readers of branches (table restores)."""
    return _scrub(_first_words(error), _secrets_of(*urls))


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
