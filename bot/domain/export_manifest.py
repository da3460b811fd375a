"""What an export's manifest.json and SHA256SUMS say: written, read back (naming the first
thing wrong), and compared. Standard library only; bot/domain/exports.py names the files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.domain.export_errors import InvalidManifest
from bot.domain.exports import AGE_RECIPIENT, CHECKSUMS_NAME, DUMP_SUFFIX, MANIFEST_NAME, in_utc

MANIFEST_FORMAT = 1  # bumped when a reader of the old format could not read the new one
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")


# manifest.json


@dataclass(frozen=True)
class TableRows:
    """A table's exact row count, taken in the dump's own snapshot."""

    schema: str
    table: str
    rows: int


@dataclass(frozen=True)
class DumpedDatabase:
    """One database of the export: its file and what was in it."""

    database: str
    file: str
    size: int  # bytes of the encrypted object
    sha256: str  # of the encrypted object, lowercase hex
    snapshot_at: datetime  # the source's clock when the dump's snapshot was taken
    lsn: str | None  # WAL position of that snapshot, None when the server would not say
    tables: tuple[TableRows, ...]


@dataclass(frozen=True)
class Manifest:
    export_id: str
    project_id: str
    branch_id: str  # the branch the export copies (default or a backup branch)
    branch_name: str
    started_at: datetime
    finished_at: datetime
    server_version: str  # e.g. "17.5"
    pg_dump_version: str  # e.g. "18.6"
    recipients: tuple[str, ...]  # age public keys; each can decrypt every file
    databases: tuple[DumpedDatabase, ...]
    read_branch_name: str | None = None  # the temporary branch the dumps read, if any
    format: int = MANIFEST_FORMAT

    def checksums(self) -> dict[str, str]:
        """File name -> SHA-256, as SHA256SUMS lists them."""
        return {database.file: database.sha256 for database in self.databases}


def _iso(at: datetime) -> str:
    return in_utc(at).isoformat().replace("+00:00", "Z")


def manifest_document(manifest: Manifest) -> dict[str, Any]:
    return {
        "format": manifest.format,
        "export_id": manifest.export_id,
        "source": {
            "project_id": manifest.project_id,
            "branch_id": manifest.branch_id,
            "branch_name": manifest.branch_name,
            "read_branch_name": manifest.read_branch_name,
        },
        "started_at": _iso(manifest.started_at),
        "finished_at": _iso(manifest.finished_at),
        "server_version": manifest.server_version,
        "pg_dump_version": manifest.pg_dump_version,
        "recipients": list(manifest.recipients),
        "databases": [
            {
                "database": database.database,
                "file": database.file,
                "size": database.size,
                "sha256": database.sha256,
                "snapshot": {"at": _iso(database.snapshot_at), "lsn": database.lsn},
                "tables": [{"schema": t.schema, "table": t.table, "rows": t.rows}
                           for t in database.tables],
            }
            for database in manifest.databases
        ],
    }


def render_manifest(manifest: Manifest) -> bytes:
    """manifest.json: indented UTF-8 JSON, for people as much as for programs."""
    text = json.dumps(manifest_document(manifest), indent=2, ensure_ascii=False)
    return (text + "\n").encode()


class _Reader:
    """Reads one JSON document, naming the path of whatever is wrong in it."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, what: str) -> InvalidManifest:
        return InvalidManifest(f"{self.where}: {path} {what}")

    def field(self, node: Mapping[str, Any], path: str, key: str, kind: type | tuple[type, ...],
              *, optional: bool = False) -> Any:
        here = f"{path}.{key}" if path else key
        if key not in node or (node[key] is None and optional):
            if optional:
                return None
            raise self.fail(here, "is missing")
        value = node[key]
        # bool is an int in Python; a count or a size written `true` is still wrong.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(here, f"must be {_kind_name(kind)}")
        return value

    def text(self, node: Mapping[str, Any], path: str, key: str, *,
             optional: bool = False) -> Any:
        value = self.field(node, path, key, str, optional=optional)
        if value is not None and not value:
            raise self.fail(f"{path}.{key}" if path else key, "must not be empty")
        return value

    def count(self, node: Mapping[str, Any], path: str, key: str) -> int:
        value: int = self.field(node, path, key, int)
        if value < 0:
            raise self.fail(f"{path}.{key}", "must not be negative")
        return value

    def instant(self, node: Mapping[str, Any], path: str, key: str) -> datetime:
        value = self.text(node, path, key)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise self.fail(f"{path}.{key}" if path else key,
                            "must be an RFC 3339 time with a zone")
        return parsed.astimezone(UTC)

    def sha256(self, node: Mapping[str, Any], path: str, key: str) -> str:
        value: str = self.text(node, path, key)
        if not _SHA256.match(value):
            raise self.fail(f"{path}.{key}", "must be 64 lowercase hex digits")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", list: "a list", dict: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_manifest(data: bytes) -> Manifest:
    """manifest.json back into a Manifest; InvalidManifest naming the first bad field."""
    read = _Reader(MANIFEST_NAME)
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidManifest(f"{MANIFEST_NAME} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidManifest(f"{MANIFEST_NAME} must hold a JSON object")
    version = read.field(document, "", "format", int)
    if version != MANIFEST_FORMAT:
        raise read.fail("format", f"is {version}; this Lifeguard reads format "
                        f"{MANIFEST_FORMAT}")
    source = read.field(document, "", "source", dict)
    recipients = read.field(document, "", "recipients", list)
    for number, key in enumerate(recipients):
        if not isinstance(key, str) or not AGE_RECIPIENT.match(key):
            raise read.fail(f"recipients[{number}]", "must be an age public key")
    databases = []
    names: set[str] = set()
    for number, node in enumerate(read.field(document, "", "databases", list)):
        path = f"databases[{number}]"
        if not isinstance(node, dict):
            raise read.fail(path, "must be an object")
        snapshot = read.field(node, path, "snapshot", dict)
        lsn = read.field(snapshot, f"{path}.snapshot", "lsn", str, optional=True)
        if lsn is not None and not _LSN.match(lsn):
            raise read.fail(f"{path}.snapshot.lsn", "must be a WAL position like 0/16B3748")
        file = read.text(node, path, "file")
        if "/" in file or not file.endswith(DUMP_SUFFIX):
            raise read.fail(f"{path}.file", f"must be a file name ending in {DUMP_SUFFIX}")
        if file in names:
            raise read.fail(f"{path}.file", f"repeats {file!r}")
        names.add(file)
        tables = []
        for index, table in enumerate(read.field(node, path, "tables", list)):
            where = f"{path}.tables[{index}]"
            if not isinstance(table, dict):
                raise read.fail(where, "must be an object")
            tables.append(TableRows(read.text(table, where, "schema"),
                                    read.text(table, where, "table"),
                                    read.count(table, where, "rows")))
        databases.append(DumpedDatabase(
            database=read.text(node, path, "database"),
            file=file,
            size=read.count(node, path, "size"),
            sha256=read.sha256(node, path, "sha256"),
            snapshot_at=read.instant(snapshot, f"{path}.snapshot", "at"),
            lsn=lsn,
            tables=tuple(tables),
        ))
    return Manifest(
        export_id=read.text(document, "", "export_id"),
        project_id=read.text(source, "source", "project_id"),
        branch_id=read.text(source, "source", "branch_id"),
        branch_name=read.text(source, "source", "branch_name"),
        read_branch_name=read.text(source, "source", "read_branch_name", optional=True),
        started_at=read.instant(document, "", "started_at"),
        finished_at=read.instant(document, "", "finished_at"),
        server_version=read.text(document, "", "server_version"),
        pg_dump_version=read.text(document, "", "pg_dump_version"),
        recipients=tuple(recipients),
        databases=tuple(databases),
        format=version,
    )


# SHA256SUMS


def render_checksums(checksums: Mapping[str, str]) -> bytes:
    """`<hex>  <name>` a line, in `sha256sum -c` format, sorted by name. The names are
    dump_file_name's, which hold no space, backslash or newline to escape."""
    lines = []
    for name in sorted(checksums):
        digest = checksums[name]
        if not _SHA256.match(digest):
            raise ValueError(f"{digest!r} is not a SHA-256 in lowercase hex")
        if not name or any(c in name for c in "\\\n\r/") or name != name.strip():
            raise ValueError(f"{name!r} cannot be listed in {CHECKSUMS_NAME}")
        lines.append(f"{digest}  {name}\n")
    return "".join(lines).encode()


def parse_checksums(data: bytes) -> dict[str, str]:
    """SHA256SUMS back into file name -> SHA-256 (hex in either case is accepted, as
    sha256sum does; `*` marks binary mode). InvalidManifest naming the bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidManifest(f"{CHECKSUMS_NAME} is not UTF-8 text") from None
    checksums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        found = re.match(r"^([0-9A-Fa-f]{64}) [ *](.+)$", line)
        if not found:
            raise InvalidManifest(f"{CHECKSUMS_NAME} line {number} is not "
                                  "'<sha256>  <file name>'")
        name = found.group(2)
        if name in checksums:
            raise InvalidManifest(f"{CHECKSUMS_NAME} line {number} lists {name!r} again")
        checksums[name] = found.group(1).lower()
    return checksums


def checksum_disagreements(manifest: Manifest, checksums: Mapping[str, str]) -> list[str]:
    """Sentences for each file where manifest.json and SHA256SUMS differ; empty when they
    agree on every file."""
    expected = manifest.checksums()
    problems = []
    for name in sorted(expected.keys() | checksums.keys()):
        if name not in checksums:
            problems.append(f"{name} is in {MANIFEST_NAME} but not in {CHECKSUMS_NAME}")
        elif name not in expected:
            problems.append(f"{name} is in {CHECKSUMS_NAME} but not in {MANIFEST_NAME}")
        elif expected[name] != checksums[name]:
            problems.append(f"{name} has a different SHA-256 in {MANIFEST_NAME} and "
                            f"{CHECKSUMS_NAME}")
    return problems
