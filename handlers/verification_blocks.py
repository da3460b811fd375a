"""The per-table part of every verification report (restores, promotions, drills, table
restores, `/backup verify`): table, rows here, rows in the source and what differs, the
largest differences first, then "and N more" within Slack's limits. Pure functions; table
names from PostgreSQL are escaped where they are written in, notes come mrkdwn-ready."""

from __future__ import annotations

from typing import Any

from bot.domain.text import escape
from bot.domain.verification import TableResult, VerificationReport
from handlers.blocks import context, section

MAX_TABLES_SHOWN = 20
TEXT_LIMIT = 2800  # a section holds 3000 characters; room for the "and N more" line
NAME_WIDTH = 32


def _name(table: TableResult) -> str:
    name = table.table if table.schema == "public" else f"{table.schema}.{table.table}"
    return name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 1] + "…"


def _rows(value: int | None, exact: bool) -> str:
    if value is None:
        return "?"
    return f"{value:,}" if exact else f"≈{value:,}"


def _gap(table: TableResult) -> int:
    return abs((table.source_rows or 0) - (table.target_rows or 0))


def ordered(tables: tuple[TableResult, ...]) -> list[TableResult]:
    """Differing tables first, the largest difference in rows first; then the others."""
    return sorted(tables, key=lambda t: (not t.differs, -_gap(t), t.schema, t.table))


def table_report(report: VerificationReport, *, here: str = "here",
                 source: str = "source") -> list[dict[str, Any]]:
    """A monospaced table of what was compared, in one section, and the tables missing
    on either side; [] when there was nothing to compare."""
    if not report.tables and not report.missing_in_target and not report.extra_in_target:
        return []
    width = max([len(_name(t)) for t in report.tables] + [5])
    header = f"{'table':<{width}}  {here:>12}  {source:>12}  differs"
    lines = [header]
    shown = 0
    for table in ordered(report.tables):
        line = (f"{escape(_name(table)):<{width}}  {_rows(table.target_rows, table.exact):>12}  "
                f"{_rows(table.source_rows, table.exact):>12}  "
                f"{table.note if table.differs else 'no'}")
        if shown >= MAX_TABLES_SHOWN or sum(len(x) + 1 for x in lines) + len(line) > TEXT_LIMIT:
            break
        lines.append(line)
        shown += 1
    blocks = [section("```" + "\n".join(lines) + "```")]
    notes = []
    if len(report.tables) > shown:
        notes.append(f"and {len(report.tables) - shown} more tables, each the same on both "
                     "sides" if not any(t.differs for t in ordered(report.tables)[shown:])
                     else f"and {len(report.tables) - shown} more tables")
    if report.missing_in_target:
        notes.append(f"{len(report.missing_in_target)} only in the {source}: "
                     + _listing(report.missing_in_target))
    if report.extra_in_target:
        notes.append(f"{len(report.extra_in_target)} only {here}: "
                     + _listing(report.extra_in_target))
    if notes:
        blocks.append(context(" · ".join(notes)))
    return blocks


def _listing(names: tuple[str, ...], limit: int = 10) -> str:
    shown = ", ".join(f"`{escape(n)}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def backup_verified(branch_name: str, production: str,
                    report: VerificationReport) -> dict[str, Any]:
    """The answer to `/backup verify`: only the person who asked sees it."""
    usable = report.error is None and all(c.passed for c in report.checks)
    mark = ":white_check_mark:" if usable else ":x:"
    head = (f"{mark} *Backup `{escape(branch_name)}` verified* against "
            f"`{escape(production)}` (live) in {report.seconds:.1f} s: {report.summary()}")
    if usable and any(t.differs for t in report.tables):
        head += (" Production has moved on since the backup was taken, so differences are "
                 "expected; the backup itself could be read in full.")
    blocks = [section(head), *table_report(report, here="backup", source="production")]
    return {"response_type": "ephemeral", "text": f"Backup {escape(branch_name)} verified",
            "blocks": blocks}
