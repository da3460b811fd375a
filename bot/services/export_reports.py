"""`python -m bot export list | verify <id>`: exports read straight from the bucket, with
no Slack, no Neon and no store, for disaster recovery and for operators. Plain text."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.durations import humanize_age
from bot.domain.export_archive import FoundExport
from bot.services.ports import ExportArchive


def _size(value: int | None) -> str:
    if value is None:
        return "size unknown"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def list_report(archive: ExportArchive, now: datetime | None = None) -> str:
    """One line per finished export, oldest first; unfinished folders are not listed."""
    now = now or datetime.now(UTC)
    found = archive.list_exports()
    if not found:
        return f"No finished exports in {archive.where()}."
    lines = [f"{len(found)} finished export(s) in {archive.where()}:"]
    for export in found:
        lines.append("  " + describe(export, now))
    return "\n".join(lines)


def describe(export: FoundExport, now: datetime) -> str:
    started = export.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = f"{export.export_id}  {started}  ({humanize_age(now - export.started_at)} ago)"
    if export.manifest is None:
        return f"{head}  manifest unreadable: {export.problem}"
    manifest = export.manifest
    databases = ", ".join(d.database for d in manifest.databases)
    return (f"{head}  {_size(export.size)}  from {manifest.branch_name} "
            f"(PostgreSQL {manifest.server_version}, pg_dump {manifest.pg_dump_version})  "
            f"databases: {databases}  folder: {export.folder}")


def verify_report(archive: ExportArchive, export_id: str) -> tuple[bool, str]:
    """(passed, what was found). An unknown id is not passed."""
    found = archive.find(export_id)
    if found is None:
        return False, (f"No finished export {export_id!r} in {archive.where()}; "
                       "`python -m bot export list` shows them.")
    check = archive.verify(found.folder)
    lines = []
    for file in check.files:
        if file.passed:
            how = ("SHA-256 and size match; decrypted, decompressed and read whole by "
                   "pg_restore" if file.archive_read else "SHA-256 and size match")
            lines.append(f"  ok    {file.file}: {how}")
        else:
            lines.append(f"  FAIL  {file.file}: {file.problem}")
    lines += [f"  FAIL  {problem}" for problem in check.problems]
    if check.passed:
        verdict = f"Export {export_id} is intact ({len(check.files)} file(s))."
        if not check.archives_read:
            verdict += (" Only checksums were compared: set EXPORT_IDENTITY to also decrypt "
                        "and read the archives.")
    else:
        verdict = f"Export {export_id} does NOT match its manifest."
    return check.passed, "\n".join([*lines, verdict])

