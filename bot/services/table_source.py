"""What a table restore reads before it asks for approval: the table in the source and in
the live branch, its columns and primary key, whether the row condition is one valid
expression on it, and how many rows it will copy.

Both sides are read in read-only transactions (the source's in one REPEATABLE READ
snapshot). The condition is checked twice: PostgreSQL's own parser (pglast, libpg_query)
must read the statement it goes into as one plain SELECT whose WHERE is the condition, so
it cannot end the statement or add to it; then the source's server plans that single
statement (a prepared statement, which never holds two commands) and counts the rows in
a read-only transaction under a statement timeout, so a condition that writes, sleeps or
names an unknown column is refused before anyone approves it. Identifiers go through
psycopg.sql, never by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pglast
import psycopg
from pglast import ast
from pglast.enums import SetOperation
from psycopg import errors, sql

from bot.domain.errors import ExternalServiceError, InvalidInput, NotAllowed, NotFound
from bot.domain.table_restores import TableMode, TableName, closest_names, qualified
from bot.domain.text import escape
from bot.services.verification import plain_error

APPLICATION_NAME = "lifeguard-table-restore"
CONNECT_TIMEOUT_SECONDS = 10
COUNT_TIMEOUT_MS = 15_000  # counting the rows to copy, when the request is made

_TABLES = sql.SQL(r"""
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY 1, 2
""")
_COLUMNS = sql.SQL("""
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> ''
FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
""")
_KEY = sql.SQL("""
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
""")
_REFERENCED_BY = sql.SQL("""
SELECT conrelid::regclass::text FROM pg_constraint
WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid
ORDER BY 1
""")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type writes it, e.g. `character varying(20)`
    not_null: bool
    generated: bool  # a generated column is computed, never copied


@dataclass(frozen=True)
class TableDefinition:
    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the primary key's columns, in order; () without one

    @property
    def copied(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not c.generated)

    @property
    def shown(self) -> str:
        return qualified(self.schema, self.name)


@dataclass(frozen=True)
class Inspection:
    """What the card shows, read when the request is made."""

    table: TableDefinition
    rows: int  # rows the copy will read from the source
    live_rows: int | None  # rows of the live table now (None: it does not exist live)


# --- connections ---------------------------------------------------------------------


@contextmanager
def read_only(url: str, label: str, *, snapshot: bool = False,
              timeout_ms: int = COUNT_TIMEOUT_MS) -> Iterator[psycopg.Connection[Any]]:
    """A connection in a read-only transaction (one snapshot when `snapshot`), rolled
    back at the end. Connection trouble is said plainly, without secrets."""
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               application_name=APPLICATION_NAME)
    except psycopg.Error as error:
        raise InvalidInput(f"Could not connect to {label}: "
                           f"{escape(plain_error(error, url))}.") from None
    try:
        conn.read_only = True
        if snapshot:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
        yield conn
    finally:
        conn.rollback()
        conn.close()


def table_keys(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(_TABLES).fetchall()]


def regclass(schema: str, name: str) -> str:
    """The text `::regclass` reads as exactly this table (quoted by psycopg.sql)."""
    return sql.Identifier(schema, name).as_string(None)


def definition(conn: psycopg.Connection[Any], schema: str, name: str) -> TableDefinition:
    oid = regclass(schema, name)
    columns = tuple(Column(r[0], r[1], bool(r[2]), bool(r[3]))
                    for r in conn.execute(_COLUMNS, (oid,)).fetchall())
    key = tuple(r[0] for r in conn.execute(_KEY, (oid,)).fetchall())
    return TableDefinition(schema, name, columns, key)


def resolve(wanted: TableName, tables: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The table `wanted` names among `tables`: with its schema exactly; without one, in
    public, else the only schema that has it."""
    if wanted.schema is not None:
        return (wanted.schema, wanted.name) if (wanted.schema, wanted.name) in tables else None
    if ("public", wanted.name) in tables:
        return "public", wanted.name
    found = [key for key in tables if key[1] == wanted.name]
    if len(found) > 1:
        raise InvalidInput(f"Several schemas have a table `{escape(wanted.name)}`: "
                           + ", ".join(f"`{escape(qualified(*k))}`" for k in found)
                           + ". Name it with its schema.")
    return found[0] if found else None


# --- the row condition ---------------------------------------------------------------


def filtered(schema: str, name: str, condition: str | None,
             selected: sql.Composable) -> sql.Composed:
    """`SELECT <selected> FROM <table> [WHERE (<condition>)]`: the one statement every
    read of the rows uses. The newline keeps a `--` comment from reaching the bracket."""
    query = sql.SQL("SELECT {} FROM {}").format(selected, sql.Identifier(schema, name))
    if condition is None:
        return query
    return sql.SQL("{} WHERE ({}\n)").format(query, sql.SQL(condition))  # type: ignore[arg-type]


def check_one_expression(condition: str) -> None:
    """PostgreSQL's parser must read the statement the condition goes into as one plain
    SELECT whose WHERE clause is the condition: nothing before or after it, no second
    statement, no UNION, ORDER BY, LIMIT, FOR UPDATE, INTO or the like."""
    text = filtered("s", "t", condition, sql.SQL("1")).as_string(None)
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as error:
        said = str(error.args[0]) if error.args else str(error)  # not our wrapper's index
        raise InvalidInput(f"The `--rows` condition does not parse: {escape(said)}. "
                           + escape("Give one SQL condition on the table's columns, such as "
                                    "`id <= 5`.")) from None
    statement = statements[0].stmt if len(statements) == 1 else None
    clauses = ("withClause", "intoClause", "groupClause", "havingClause", "windowClause",
               "sortClause", "limitCount", "limitOffset", "lockingClause", "valuesLists",
               "distinctClause")
    if (not isinstance(statement, ast.SelectStmt) or statement.op != SetOperation.SETOP_NONE
            or len(statement.fromClause or ()) != 1 or len(statement.targetList or ()) != 1
            or statement.whereClause is None
            or any(getattr(statement, clause, None) for clause in clauses)):
        raise InvalidInput(escape("The `--rows` condition is not one SQL condition: it would "
                                  "end the statement it goes into, or add a clause or another "
                                  "statement to it. Give one condition on the table's "
                                  "columns, such as `id <= 5`."))


def count_rows(conn: psycopg.Connection[Any], table: TableDefinition, condition: str | None,
               url: str) -> int:
    """The rows matching the condition, planned then counted in the read-only transaction;
    a condition that fails is refused, saying why."""
    try:
        with conn.transaction():  # a savepoint: a refused condition leaves the rest usable
            if condition is not None:
                check_one_expression(condition)
                explained = sql.SQL("EXPLAIN {}").format(
                    filtered(table.schema, table.name, condition, sql.SQL("1")))
                conn.execute(explained, prepare=True)
            counted = filtered(table.schema, table.name, condition, sql.SQL("count(*)"))
            row = conn.execute(counted, prepare=True).fetchone()
    except errors.QueryCanceled:
        raise InvalidInput(f"Counting the rows took longer than {COUNT_TIMEOUT_MS // 1000} s, "
                           "so the condition was refused. Give a plain test of the row's "
                           "columns.") from None
    except (errors.ReadOnlySqlTransaction, errors.InsufficientPrivilege) as error:
        raise NotAllowed("The `--rows` condition tries to change data "
                         f"({escape(plain_error(error, url))}); it runs read-only, so it "
                         "was refused and nothing ran.") from None
    except psycopg.Error as error:
        raise InvalidInput(f"The `--rows` condition is not a valid condition on "
                           f"`{escape(table.shown)}`: {escape(plain_error(error, url))}. "
                           f"Its columns: {_column_list(table)}.") from None
    assert row is not None
    return int(row[0])


# --- the request's checks ------------------------------------------------------------


def inspect(source_url: str, live_url: str, wanted: TableName, mode: TableMode,
            condition: str | None, *, source_label: str, new_table: str) -> Inspection:
    """Everything the card needs, and every refusal that can be known before approval."""
    try:
        return _inspect(source_url, live_url, wanted, mode, condition,
                        source_label=source_label, new_table=new_table)
    except psycopg.Error as error:
        raise ExternalServiceError(
            f"Reading the table failed: {escape(plain_error(error, source_url, live_url))}. "
            "Nothing was asked; try again.") from None


def _inspect(source_url: str, live_url: str, wanted: TableName, mode: TableMode,
             condition: str | None, *, source_label: str, new_table: str) -> Inspection:
    with read_only(source_url, source_label, snapshot=True) as source, \
            read_only(live_url, "the live branch") as live:
        source_tables, live_tables = table_keys(source), table_keys(live)
        found = resolve(wanted, source_tables)
        if found is None:
            raise _unknown(wanted, source_tables, live_tables, source_label)
        table = definition(source, *found)
        if not table.copied:
            raise NotAllowed(f"`{escape(table.shown)}` has no columns to copy.")
        rows = count_rows(source, table, condition, source_url)
        live_rows = None
        if mode == TableMode.NEW:
            _check_new_table(live, table, new_table, live_tables)
        else:
            live_rows = _check_live_table(live, table, mode, live_tables, source_label)
    return Inspection(table, rows, live_rows)


def _unknown(wanted: TableName, source_tables: list[tuple[str, str]],
             live_tables: list[tuple[str, str]], source_label: str) -> NotFound:
    typed = qualified(wanted.schema or "public", wanted.name)
    if resolve(wanted, live_tables) is not None:
        return NotFound(f"`{escape(typed)}` is only in the live branch, not in {source_label}, "
                        "so there is nothing to bring back from there. Choose a backup or a "
                        "moment from before it lost its rows.")
    names = closest_names(wanted.name, [qualified(*k) for k in source_tables])
    listing = ", ".join(f"`{escape(n)}`" for n in names) or "none"
    more = len(source_tables) - len(names)
    return NotFound(f"{source_label[:1].upper()}{source_label[1:]} has no table "
                    f"`{escape(typed)}`. Its tables, the closest first: {listing}"
                    + (f" and {more} more" if more > 0 else "")
                    + ". Unquoted names are read in lower case, as in SQL: quote "
                    "`\"Upper Case\"` names.")


def _check_new_table(live: psycopg.Connection[Any], table: TableDefinition, new_table: str,
                     live_tables: list[tuple[str, str]]) -> None:
    if (table.schema, new_table) in live_tables:
        shown = escape(qualified(table.schema, new_table))
        raise NotAllowed(f"The live branch has a table `{shown}` already; ask again in a "
                         "second for a new name.")
    if live.execute("SELECT to_regnamespace(%s)", (sql.Identifier(table.schema)
                                                    .as_string(None),)).fetchone() == (None,):
        raise NotAllowed(f"The live branch has no schema `{escape(table.schema)}` to create "
                         f"the table in. Create it first (`CREATE SCHEMA`), then ask again.")
    for column in table.columns:
        if live.execute("SELECT to_regtype(%s)", (column.type,)).fetchone() == (None,):
            raise NotAllowed(f"Column `{escape(column.name)}` is of type "
                             f"`{escape(column.type)}`, which the live branch does not have. "
                             "Create the type first, then ask again.")


def _check_live_table(live: psycopg.Connection[Any], table: TableDefinition, mode: TableMode,
                      live_tables: list[tuple[str, str]], source_label: str) -> int:
    flag = f"--{mode.value}"
    if (table.schema, table.name) not in live_tables:
        raise NotAllowed(f"`{escape(table.shown)}` is only in {source_label}, not in the live "
                         f"branch, so `{flag}` has nothing to add to. Without `--merge` or "
                         "`--replace` it comes back as a new table beside the live ones.")
    live_table = definition(live, table.schema, table.name)
    missing = [c for c in table.copied if c not in live_table.copied]
    if missing:
        raise NotAllowed(f"The live `{escape(table.shown)}` lacks the column(s) "
                         + ", ".join(f"`{escape(c)}`" for c in missing)
                         + f" of {source_label}, so `{flag}` cannot copy into it. Without an "
                         "option the rows come back as a new table.")
    if mode == TableMode.MERGE:
        if not table.key:
            raise NotAllowed(f"`{escape(table.shown)}` has no primary key, so `--merge` cannot "
                             "tell which rows the live table lacks. Use no option (a new "
                             "table beside the live one) or `--replace`.")
        if live_table.key != table.key:
            raise NotAllowed(f"The primary key of `{escape(table.shown)}` differs between "
                             f"{source_label} and the live branch, so `--merge` cannot match "
                             "rows. Use no option: the rows come back as a new table.")
    if mode == TableMode.REPLACE:
        referencing = [r[0] for r in live.execute(
            _REFERENCED_BY, (regclass(table.schema, table.name),)).fetchall()]
        if referencing:
            raise NotAllowed(f"Foreign keys of {', '.join(f'`{escape(r)}`' for r in referencing)} "
                             f"point at `{escape(table.shown)}`, so replacing its rows could "
                             "remove or orphan theirs. Use `--merge`, or no option.")
    row = live.execute(filtered(table.schema, table.name, None, sql.SQL("count(*)")),
                       prepare=True).fetchone()
    assert row is not None
    return int(row[0])


def _column_list(table: TableDefinition, limit: int = 20) -> str:
    names = [f"`{escape(c.name)}`" for c in table.columns]
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")

