"""The copy of an approved table restore: rows streamed with COPY from the source's
read-only snapshot into the live branch, in one live transaction that checks its counts
before it commits.

The rows never sit in memory: psycopg's COPY TO STDOUT on the source hands over each row
as PostgreSQL sends it, and COPY FROM STDIN on the live side takes it on (psycopg writes in
the background, so both servers work at once). The live transaction's id is stored on the
request before the first row is written (`started`) and its figures before it commits
(`checked`): if Lifeguard dies in between, `transaction_state` tells afterwards whether
the copy committed (every row is there) or not (none is), instead of guessing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bot.domain.errors import LifeguardError, NotAllowed
from bot.domain.table_restores import TableCopy, TableMode, qualified
from bot.domain.text import escape
from bot.services.table_source import (
    APPLICATION_NAME,
    CONNECT_TIMEOUT_SECONDS,
    TableDefinition,
    check_one_expression,
    definition,
    filtered,
)
from bot.services.verification import plain_error

WRITE_CHUNK_BYTES = 256 * 1024  # rows are handed to the live side in chunks of about this
LOCK_TIMEOUT = "30s"  # waiting for the live table's writers; then it fails, saying so
COPY_TIMEOUT_MS = 6 * 3600 * 1000  # a bound on one statement of the copy


@dataclass(frozen=True)
class CopyResult:
    read: int  # rows read from the source
    copied: int  # rows written into the target table (merge: rows the live table lacked)
    live_before: int | None  # the target's rows before (None: it is new)
    live_after: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "copied": self.copied, "live_before": self.live_before,
                "live_after": self.live_after, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopyResult:
        return cls(int(data["read"]), int(data["copied"]), data.get("live_before"),
                   int(data["live_after"]), float(data["seconds"]))


class CopyFailed(LifeguardError):
    """The copy did not happen; the live transaction was rolled back."""


def transaction_state(live_url: str, xid: str) -> str | None:
    """PostgreSQL's word for a transaction: committed, aborted, in progress (None: too
    old to know, or never given an id)."""
    with psycopg.connect(live_url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                         application_name=APPLICATION_NAME, autocommit=True) as conn:
        row = conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
    return None if row is None else row[0]


def copy_table(source_url: str, live_url: str, plan: TableCopy, columns: tuple[str, ...], *,
               started: Callable[[str], None],
               checked: Callable[[CopyResult], None]) -> CopyResult:
    """Copy the plan's rows; `columns` are those shown on the approved card. Raises
    CopyFailed (or a LifeguardError) saying why; nothing is written live then."""
    began = time.perf_counter()
    try:
        with _connect(source_url) as source, _connect(live_url) as live:
            source.read_only = True
            source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            _bound(source, lock=False)
            table = definition(source, plan.schema, plan.table)
            if table.copied != columns:
                raise NotAllowed(f"The columns of `{escape(table.shown)}` in the source changed "
                                 "since the request was made; nothing was copied. Ask again.")
            if plan.condition is not None:
                check_one_expression(plan.condition)
            _bound(live, lock=True)
            xid_row = live.execute("SELECT pg_current_xact_id()::text").fetchone()
            assert xid_row is not None
            started(str(xid_row[0]))
            result = _copy(source, live, plan, table, began)
            checked(result)
            try:
                live.commit()
            except psycopg.Error:
                # The connection broke during COMMIT: ask the server what came of it.
                if _committed(live_url, str(xid_row[0])):
                    return result
                raise
            return result
    except psycopg.Error as error:
        raise CopyFailed(f"The copy failed and was rolled back, so the live branch is as it "
                         f"was: {escape(plain_error(error, source_url, live_url))}.") from None


def _committed(live_url: str, xid: str) -> bool:
    try:
        return transaction_state(live_url, xid) == "committed"
    except psycopg.Error:
        raise CopyFailed("The connection to the live branch broke while the copy was being "
                         "committed, and whether it was could not be read; look at the live "
                         "table before asking again.") from None


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                           application_name=APPLICATION_NAME)


def _bound(conn: psycopg.Connection[Any], *, lock: bool) -> None:
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(COPY_TIMEOUT_MS),))
    if lock:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))


def _copy(source: psycopg.Connection[Any], live: psycopg.Connection[Any], plan: TableCopy,
          table: TableDefinition, began: float) -> CopyResult:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in table.copied)
    live_table = sql.Identifier(plan.schema, plan.target_table)
    before: int | None = None
    if plan.mode == TableMode.NEW:
        live.execute(_create_table(plan, table))
        into = live_table
    else:
        # Writers wait while the rows are replaced or merged (readers go on), so the
        # counts before and after are the table's own and no write slips in between.
        live.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(live_table))
        before = _count(live, live_table)
        if plan.mode == TableMode.REPLACE:
            live.execute(sql.SQL("DELETE FROM {}").format(live_table))
            into = live_table
        else:
            into = sql.Identifier("lifeguard_merged_rows")
            live.execute(sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} "
                                 "WITH NO DATA").format(into, names, live_table))
    read, written = _stream(source, live, filtered(plan.schema, plan.table, plan.condition,
                                                     names), into, names)
    if written != read:
        raise CopyFailed(f"{read} rows were read from the source but {written} written; the "
                         "copy was rolled back, so the live branch is as it was.")
    copied = written
    if plan.mode == TableMode.MERGE:
        copied = live.execute(_merge(plan, table, into, names)).rowcount
    # A new table holds only what was written; a live one is counted again.
    after = written if plan.mode == TableMode.NEW else _count(live, live_table)
    expected = copied + (before or 0) if plan.mode != TableMode.REPLACE else copied
    if after != expected:
        raise CopyFailed(f"The live table would hold {after} rows instead of {expected}; the "
                         "copy was rolled back, so the live branch is as it was.")
    return CopyResult(read, copied, before, after, round(time.perf_counter() - began, 3))


def _stream(source: psycopg.Connection[Any], live: psycopg.Connection[Any],
            query: sql.Composed, into: sql.Identifier, names: sql.Composable) -> tuple[int, int]:
    """Rows from the source's query into `into`, streamed; the counts each side reports."""
    out_cursor, in_cursor = source.cursor(), live.cursor()
    copy_out = sql.SQL("COPY ({}) TO STDOUT").format(query)
    copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(into, names)
    with out_cursor.copy(copy_out) as rows_out, in_cursor.copy(copy_in) as rows_in:
        chunk = bytearray()  # one write per chunk, not per row: the Python work per row is
        for row in rows_out:  # what would slow the copy below a bare COPY pipe
            chunk += row
            if len(chunk) >= WRITE_CHUNK_BYTES:
                rows_in.write(chunk)
                chunk = bytearray()
        if chunk:
            rows_in.write(chunk)
    return out_cursor.rowcount, in_cursor.rowcount


def _count(conn: psycopg.Connection[Any], table: sql.Identifier) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    assert row is not None
    return int(row[0])


def _create_table(plan: TableCopy, table: TableDefinition) -> sql.Composed:
    """The new table with the source's columns, types, NOT NULLs and primary key. Defaults
    and generated values are left out: they may name sequences or functions the live
    branch lacks, and the copy brings every value."""
    columns = [sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.type),  # type: ignore[arg-type]
                                         sql.SQL(" NOT NULL" if c.not_null else ""))
               for c in table.columns if not c.generated]
    if table.key:
        columns.append(sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(sql.Identifier(k) for k in table.key)))
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(plan.schema, plan.target_table),
                                                  sql.SQL(", ").join(columns))


def _merge(plan: TableCopy, table: TableDefinition, rows: sql.Identifier,
           names: sql.Composable) -> sql.Composed:
    """Insert the copied rows whose primary key the live table lacks; any other clash
    (another unique key) fails the transaction rather than being skipped in silence."""
    live_table = sql.Identifier(plan.schema, plan.table)
    same_key = sql.SQL(" AND ").join(
        sql.SQL("l.{0} = r.{0}").format(sql.Identifier(k)) for k in table.key)
    selected = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c))
                                  for c in table.copied)
    return sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} r "
                   "WHERE NOT EXISTS (SELECT 1 FROM {} l WHERE {})").format(
        live_table, names, selected, rows, live_table, same_key)


def shown_target(plan: TableCopy) -> str:
    return qualified(plan.schema, plan.target_table)
