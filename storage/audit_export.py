"""Export the audit trail as JSON Lines or CSV, and read such an export back.

Every field the hash covers is written exactly (created_at in RFC 3339 UTC with
microseconds, details as canonical JSON), so an export can be verified on its own:
`find_chain_break(list(read_audit_export(...)))`. Keep the last line's seq and hash: they
are the anchor that shows later whether the newest entries were removed.

CSV cells are written as they are, never altered: a spreadsheet may treat a cell starting
with `=`, `+`, `-` or `@` as a formula, so open exports as text, not by double-clicking.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from bot.domain.audit import AuditEntry, canonical_timestamp

ExportFormat = Literal["jsonl", "csv"]
EXPORT_FIELDS = ("seq", "created_at", "actor", "action", "subject", "details",
                 "prev_hash", "hash")


def _details_json(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _record(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "created_at": canonical_timestamp(entry.created_at),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def write_audit_export(entries: Iterable[AuditEntry], fmt: ExportFormat, out: TextIO) -> int:
    """Write one line (one CSV row after a header row) per entry; return how many."""
    count = 0
    if fmt == "jsonl":
        for entry in entries:
            out.write(json.dumps(_record(entry), ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_FIELDS)
        for entry in entries:
            record = _record(entry)
            record["details"] = _details_json(entry.details)
            writer.writerow([record[name] for name in EXPORT_FIELDS])
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}; accepted: jsonl, csv")
    return count


def _entry(record: dict[str, Any]) -> AuditEntry:
    created_at = datetime.fromisoformat(str(record["created_at"]))
    if created_at.tzinfo is None:
        raise ValueError(f"entry {record['seq']}: created_at has no time zone")
    details = record["details"]
    if isinstance(details, str):
        details = json.loads(details)
    if not isinstance(details, dict):
        raise ValueError(f"entry {record['seq']}: details is not a JSON object")
    return AuditEntry(
        seq=int(record["seq"]),
        created_at=created_at.astimezone(UTC),
        actor=str(record["actor"]),
        action=str(record["action"]),
        subject=str(record["subject"]),
        details=details,
        prev_hash=str(record["prev_hash"]),
        hash=str(record["hash"]),
    )


def read_audit_export(fmt: ExportFormat, source: TextIO) -> Iterator[AuditEntry]:
    """The entries of an export written by `write_audit_export`, in file order."""
    if fmt == "jsonl":
        for line in source:
            if line.strip():
                yield _entry(json.loads(line))
    elif fmt == "csv":
        for row in csv.DictReader(source):
            yield _entry(dict(row))
    else:
        raise ValueError(f"unknown export format {fmt!r}; accepted: jsonl, csv")
