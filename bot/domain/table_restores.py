"""Surgical restores: one table (or some of its rows) back into the live branch.

What `/restore table` accepts, the plan part a table restore adds to a change request
(bound by its hash), how tables are named and shown, and the rules every table restore
keeps. Reading the databases is bot/services/table_copy.py's.

Table names are read as PostgreSQL reads identifiers: unquoted words are folded to lower
case, a name in double quotes keeps its text exactly (two double quotes inside stand for
one), and `schema.table` names the schema. So `Weird` means the table `weird`, and the
table `Weird "Name"` in the schema `my schema` is typed with its quotes doubled, as SQL
has it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.domain.backups import is_backup_name, validate_reason
from bot.domain.echo import echo
from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.text import escape
from bot.domain.when import WHEN_FORMATS, split_when

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
MAX_CONDITION_LENGTH = 1000
RESTORED_SUFFIX = "_restored_"
# restore-… branches are Lifeguard's restores; backup-YYYYMMDD-HHMMSS its backups
_RESTORE_BRANCH = re.compile(r"\Arestore-[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_PLAIN_IDENTIFIER = re.compile(r"\A[a-z_][a-z0-9_$]*\Z")
_UNQUOTED = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")

TABLE_USAGE = escape(
    "`/restore table <table> from <branch>|at <when> [--merge|--replace] [--rows <condition>] "
    "[reason]` one table back into the live branch: by default into a new table "
    "`<table>_restored_YYYYMMDD_HHMMSS` beside the live one; `--merge` adds only the rows "
    "whose primary key the live table lacks; `--replace` replaces the live table's rows "
    "(both take a backup of the live branch first); `--rows \"id <= 5\"` copies only the "
    "rows matching an SQL condition (in double quotes or backticks). Quote names as in SQL: "
    "`\"my schema\".\"Orders\"`"
)


class TableMode(StrEnum):
    NEW = "new"  # into a new table beside the live one; nothing live is touched
    MERGE = "merge"  # only the rows whose primary key the live table lacks
    REPLACE = "replace"  # the live table's rows replaced by the source's


MODE_TEXT = {
    TableMode.NEW: "into a new table; nothing live is touched",
    TableMode.MERGE: "merge: only rows whose primary key the live table lacks are added; "
                     "nothing existing changes",
    TableMode.REPLACE: "replace: the live table's rows are replaced by the source's, in one "
                       "transaction",
}


@dataclass(frozen=True)
class TableName:
    """A table as typed: its schema (None when not given) and name, exact."""

    schema: str | None
    name: str


@dataclass(frozen=True)
class RestoreTable:
    """`/restore table …`, read."""

    table: TableName
    branch_name: str | None  # `from <branch>`
    when_text: str | None  # `at <when>`, resolved later in the requester's zone
    mode: TableMode
    condition: str | None
    reason: str


@dataclass(frozen=True)
class TableCopy:
    """What a table restore copies: part of the request's plan, bound by its hash."""

    schema: str
    table: str  # the table in the source
    mode: TableMode
    condition: str | None  # verbatim, as shown on the card
    target_table: str  # the new table (default mode) or the live table itself

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "mode": self.mode.value,
                "condition": self.condition, "target_table": self.target_table}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableCopy:
        return cls(schema=str(data["schema"]), table=str(data["table"]),
                   mode=TableMode(data["mode"]), condition=data.get("condition"),
                   target_table=str(data["target_table"]))


# --- names ---------------------------------------------------------------------------


def quote_name(name: str) -> str:
    """`name` as SQL would have it typed: bare when it reads back the same, else quoted."""
    if _PLAIN_IDENTIFIER.match(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """`schema.table` as typed in SQL; the public schema is left out."""
    return quote_name(table) if schema == "public" else f"{quote_name(schema)}.{quote_name(table)}"


def restored_table_name(table: str, at: datetime) -> str:
    """`<table>_restored_<YYYYMMDD_HHMMSS>` (UTC), the table shortened so the whole name
    fits PostgreSQL's 63 bytes (a longer name would be cut silently by the server)."""
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    suffix = RESTORED_SUFFIX + at.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    room = MAX_IDENTIFIER_BYTES - len(suffix.encode())
    head = table
    while len(head.encode()) > room:
        head = head[:-1]
    return head + suffix


def closest_names(wanted: str, names: list[str], limit: int = 8) -> list[str]:
    """`names`, the closest to `wanted` first (case and quoting ignored)."""
    def score(name: str) -> float:
        return difflib.SequenceMatcher(None, wanted.lower(), name.lower()).ratio()
    return sorted(names, key=lambda n: (-score(n), n))[:limit]


def check_table_source(branch_name: str) -> None:
    """A table comes back only from a backup or a restore branch Lifeguard made."""
    if not (is_backup_name(branch_name) or _RESTORE_BRANCH.match(branch_name)):
        raise NotAllowed(
            f"`{echo(branch_name)}` "
            + escape("is neither a backup (backup-YYYYMMDD-HHMMSS) nor a restore branch "
                     "(restore-…), so `/restore table` will not copy from it. `/backup list` "
                     "shows the backups; `at <when>` copies the table as it was at a "
                     "moment."))


# --- reading the command -------------------------------------------------------------


def parse_table_restore(text: str) -> RestoreTable:
    """Read what follows `/restore table`. Raises InvalidInput saying what is accepted."""
    table, rest = _table_name(text.strip())
    words = rest.split(maxsplit=1)
    if not words or words[0].lower() not in ("from", "at"):
        raise InvalidInput(escape("Say where the table comes from: `from <branch>` or "
                                  "`at <when>` after the table name.\n") + TABLE_USAGE)
    branch_name = when_text = None
    rest = words[1] if len(words) > 1 else ""
    if words[0].lower() == "from":
        parts = rest.split(maxsplit=1)
        if not parts:
            raise InvalidInput(f"`from` needs a branch name, such as "
                               f"`from backup-20261121-142500`.\n{TABLE_USAGE}")
        branch_name, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        check_table_source(branch_name)
    else:
        try:
            when_text, rest = split_when(rest)
        except InvalidInput as error:
            raise InvalidInput(f"{error}\n{escape('`<when>`')} is {WHEN_FORMATS}.") from error
    mode, condition, reason = _options(rest)
    return RestoreTable(table=table, branch_name=branch_name, when_text=when_text, mode=mode,
                        condition=condition, reason=validate_reason(reason))


def _table_name(text: str) -> tuple[TableName, str]:
    parts: list[str] = []
    position = 0
    while True:
        part, position = _identifier(text, position)
        parts.append(part)
        if position < len(text) and text[position] == ".":
            position += 1
            continue
        break
    if len(parts) > 2:
        raise InvalidInput(f"`{echo(text[:position])}` has more than one dot: name a table as "
                           f"`table` or `schema.table`.\n{TABLE_USAGE}")
    if position < len(text) and not text[position].isspace():
        raise InvalidInput(f"`{echo(text)}` is not a table name: after "
                           f"`{echo(text[:position])}` comes `{echo(text[position])}`. Quote "
                           f"names with spaces or other signs in double quotes, as in "
                           f"SQL.\n{TABLE_USAGE}")
    for part in parts:
        if any(unicodedata.category(c).startswith("C") for c in part):
            raise InvalidInput("The table name contains control or invisible characters.")
        if len(part.encode()) > MAX_IDENTIFIER_BYTES:
            raise InvalidInput(f"`{echo(part)}` is longer than PostgreSQL's 63 bytes for a "
                               "name, so no table is called that.")
    name = TableName(None, parts[0]) if len(parts) == 1 else TableName(parts[0], parts[1])
    return name, text[position:]


def _identifier(text: str, position: int) -> tuple[str, int]:
    if position < len(text) and text[position] == '"':
        out, i = [], position + 1
        while i < len(text):
            if text[i] == '"':
                if text[i + 1:i + 2] == '"':
                    out.append('"')
                    i += 2
                    continue
                if not out:
                    raise InvalidInput('`""` is an empty name; no table is called that.')
                return "".join(out), i + 1
            out.append(text[i])
            i += 1
        raise InvalidInput(f"`{echo(text)}`: a double quote is not closed. Quote names as in "
                           f"SQL, `\"Weird \"\"Name\"\"\"`.\n{TABLE_USAGE}")
    match = _UNQUOTED.match(text, position)
    if match is None:
        shown = text[position:position + 20] or "(nothing)"
        raise InvalidInput(f"`/restore table` needs a table name first (got `{echo(shown)}`)."
                           f"\n{TABLE_USAGE}")
    return match.group(0).lower(), match.end()  # unquoted names fold to lower case, as in SQL


_CLOSING = {'"': '"', "\u201c": "\u201d", "`": "`"}


def _options(text: str) -> tuple[TableMode, str | None, str]:
    mode: TableMode | None = None
    condition: str | None = None
    rest = text.strip()
    while rest.startswith(("--", "\u2014")):  # Slack may turn -- into an em dash
        word, _, after = rest.partition(" ")
        option = word.lower().lstrip("-\u2014")
        if option in ("merge", "replace"):
            chosen = TableMode(option)
            if mode is not None and mode != chosen:
                raise InvalidInput("Choose one of `--merge` and `--replace`, not both.")
            mode, rest = chosen, after.strip()
        elif option == "rows":
            if condition is not None:
                raise InvalidInput("`--rows` is given twice; give one condition.")
            condition, rest = _condition(after.strip())
        else:
            raise InvalidInput(f"`{echo(word)}` is not an option of `/restore table`: it "
                               f"takes `--merge`, `--replace` and `--rows`.\n{TABLE_USAGE}")
    return mode or TableMode.NEW, condition, rest


def _condition(text: str) -> tuple[str, str]:
    """The condition after `--rows`, in double quotes (`""` inside is one `"`) or
    backticks, and the rest."""
    if not text or text[0] not in _CLOSING:
        raise InvalidInput(escape("`--rows` needs an SQL condition in double quotes or "
                                  "backticks, such as `--rows \"id <= 5\"` or "
                                  "``--rows `status = 'lost'` ``."))
    opener, closer = text[0], _CLOSING[text[0]]
    out, i = [], 1
    while i < len(text):
        c = text[i]
        if c == closer or (opener == '"' and c == "\u201d"):
            if opener == '"' and c == '"' and text[i + 1:i + 2] == '"':
                out.append('"')
                i += 2
                continue
            return _checked_condition("".join(out)), text[i + 1:].strip()
        out.append(c)
        i += 1
    raise InvalidInput("The `--rows` condition is not closed: end it with the quote or "
                       "backtick it starts with.")


def _checked_condition(condition: str) -> str:
    """What can be said of a condition before any database reads it: the database then
    checks that it is one valid expression on the table's columns."""
    condition = condition.strip()
    if not condition:
        raise InvalidInput("The `--rows` condition is empty.")
    if len(condition) > MAX_CONDITION_LENGTH:
        raise InvalidInput(f"The `--rows` condition is {len(condition)} characters long; at "
                           f"most {MAX_CONDITION_LENGTH} are accepted.")
    if "`" in condition:
        raise InvalidInput("The `--rows` condition contains a backtick, which SQL does not "
                           "use and the approval card could not show as typed.")
    if any(unicodedata.category(c).startswith("C") and c not in "\t\n" for c in condition):
        raise InvalidInput("The `--rows` condition contains control or invisible characters.")
    return condition
