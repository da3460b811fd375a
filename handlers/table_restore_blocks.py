"""Block Kit for table restores: what the approval card says will be copied, and what came
of it. Pure functions; names from PostgreSQL and Neon and the typed condition are escaped
where they are written in (bot.domain.text)."""

from __future__ import annotations

from typing import Any

from bot.domain.requests import ChangeRequest, RequestState, Step
from bot.domain.table_restores import MODE_TEXT, TableCopy, TableMode, qualified, quote_name
from bot.domain.text import escape
from handlers.blocks import section, when

MAX_COLUMNS_SHOWN = 30

STEP_TEXT = {
    Step.SAFETY_BACKUP: ":floppy_disk: taking a backup of the live branch first…",
    Step.WAIT_SAFETY_BACKUP: ":floppy_disk: Neon is taking the safety backup…",
    Step.COPY_TABLE: ":arrows_counterclockwise: copying the rows into the live branch…",
    Step.DROP_SOURCE: ":broom: removing the branch the table was read from…",
}


def _copy(request: ChangeRequest) -> TableCopy:
    copy = request.plan.table_copy
    assert copy is not None
    return copy


def _code(text: str) -> str:
    return f"`{escape(text)}`"


def what(request: ChangeRequest) -> str:
    """The card's account of what will run: source, target table, mode, columns, rows."""
    plan, copy, extra = request.plan, _copy(request), request.extra
    source = qualified(copy.schema, copy.table)
    if extra.get("temporary_source") and plan.instant is not None:
        origin = (f"`{escape(plan.source_branch_name)}`, a branch of "
                  f"`{escape(plan.target_branch_name)}` as it was at {when(plan.instant)}, "
                  "made to read it from and removed afterwards")
    else:
        origin = f"`{escape(plan.source_branch_name)}`"
    target = qualified(copy.schema, copy.target_table)
    into = (f"new table {_code(target)} beside the live one"
            if copy.mode == TableMode.NEW else f"the live table {_code(target)}")
    lines = [f"Copy table {_code(source)} from {origin} into {into} of "
             f"`{escape(plan.target_branch_name)}`.",
             f"*Mode:* {MODE_TEXT[copy.mode]}."]
    if copy.mode != TableMode.NEW:
        backup = extra.get("safety_backup")
        lines.append(f"*Safety backup:* `{escape(str(backup))}` of "
                     f"`{escape(plan.target_branch_name)}`, taken first" if backup else
                     f"*Safety backup:* a backup-… branch of `{escape(plan.target_branch_name)}` "
                     "is taken first, before any row changes")
    if copy.condition is not None:
        lines.append(f"*Rows:* only those where ```{escape(copy.condition)}```")
    rows, live_rows = extra.get("rows"), extra.get("live_rows")
    counted = f"*Rows to copy:* {rows}, counted when the request was made"
    if live_rows is not None:
        counted += f"; the live table holds {live_rows} now"
    lines.append(counted + ".")
    lines.append(f"*Columns:* {_columns(extra.get('columns', []), extra.get('key', []))}")
    return "\n".join(lines)


def _columns(columns: list[str], key: list[str]) -> str:
    shown = [_code(c) + (" (key)" if c in key else "") for c in columns[:MAX_COLUMNS_SHOWN]]
    more = len(columns) - MAX_COLUMNS_SHOWN
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def outcome(request: ChangeRequest) -> list[dict[str, Any]]:
    """After the copy: rows copied, time, the live counts before and after, and the undo."""
    result = request.extra.get("copy_result")
    if request.state != RequestState.SUCCEEDED or not result:
        return []
    copy, plan = _copy(request), request.plan
    target_sql = f"{quote_name(copy.schema)}.{quote_name(copy.target_table)}"
    target = _code(qualified(copy.schema, copy.target_table))
    before = result.get("live_before")
    counts = (f"the live table held {before} rows before and {result['live_after']} after"
              if before is not None else f"{target} holds {result['live_after']} rows")
    text = (f":white_check_mark: *{result['copied']} rows copied* in {result['seconds']:.1f} s "
            f"({result['read']} read from `{escape(plan.source_branch_name)}`); {counts}.")
    backup = request.extra.get("safety_backup")
    if copy.mode == TableMode.NEW:
        undo = f"*To undo:* drop the new table: `DROP TABLE {escape(target_sql)};`"
    else:
        again = f"/restore table {qualified(copy.schema, copy.table)} from {backup} --replace"
        undo = (f"*To undo:* the live branch as it was just before is backup "
                f"`{escape(str(backup))}`; `{escape(again)}` puts this table back as it was.")
    return [section(text), section(undo)]

