"""Exports off Neon: where an export's objects go, what `manifest.json` and `SHA256SUMS`
say, and the errors the export adapter (bot/exports) raises. Standard library only.

An export is a folder `<project id>/<YYYYMMDD-HHMMSS>-<export id>/` under EXPORT_URL
holding one `<database>.dump.zst.age` per database, `SHA256SUMS` (in `sha256sum -c`
format) and `manifest.json`, written last: a folder without a manifest is unfinished.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from bot.domain.errors import LifeguardError

MANIFEST_NAME = "manifest.json"
CHECKSUMS_NAME = "SHA256SUMS"
DUMP_SUFFIX = ".dump.zst.age"
MANIFEST_FORMAT = 1  # bumped when a reader of the old format could not read the new one

_TIMESTAMP = "%Y%m%d-%H%M%S"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_FOLDER = re.compile(r"^(\d{8}-\d{6})-([A-Za-z0-9][A-Za-z0-9_-]{0,127})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# age's X25519 recipients: "age1" and 58 characters of Bech32's alphabet.
_AGE_RECIPIENT = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")
_LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")


# Errors. Each message is a sentence for the person who asked; none holds a secret.


class ExportError(LifeguardError):
    """An export, its verification or a restore from it could not be done."""


class ObjectStoreError(ExportError):
    """The object store refused or failed. `reason` is one of REASONS, for callers that
    react differently (an existing key is a bug or a clash, unreachable may pass)."""

    REASONS = ("no_bucket", "access_denied", "unreachable", "exists", "not_found", "failed")

    def __init__(self, message: str, reason: str = "failed") -> None:
        super().__init__(message)
        if reason not in self.REASONS:
            raise ValueError(f"unknown object store error reason {reason!r}")
        self.reason = reason


class PgToolsError(ExportError):
    """No usable pg_dump/pg_restore: missing, or older than the server."""


class DumpFailed(ExportError):
    """pg_dump exited non-zero or was killed; the message has its first line of stderr."""


class VerificationFailed(ExportError):
    """An export file is not what its manifest says; `file` names it."""

    def __init__(self, message: str, file: str) -> None:
        super().__init__(message)
        self.file = file


class RestoreFailed(ExportError):
    """pg_restore, or the decryption or decompression feeding it, failed."""


class InvalidManifest(ExportError):
    """manifest.json or SHA256SUMS cannot be read; the message says where."""


# Names.


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("export times must be timezone-aware")
    return at.astimezone(UTC)


def _check_id(value: str, what: str) -> None:
    if not _ID.match(value):
        raise ValueError(f"{what} {value!r} cannot name an export folder: letters, digits, "
                         "'-' and '_' only")


def folder_name(project_id: str, started_at: datetime, export_id: str) -> str:
    """`<project id>/<YYYYMMDD-HHMMSS>-<export id>/`, the time in UTC."""
    _check_id(project_id, "project id")
    _check_id(export_id, "export id")
    return f"{project_id}/{_utc(started_at).strftime(_TIMESTAMP)}-{export_id}/"


@dataclass(frozen=True)
class ExportFolder:
    """One `<YYYYMMDD-HHMMSS>-<export id>` folder, as found when listing a project's."""

    name: str
    started_at: datetime
    export_id: str


def parse_folder(name: str) -> ExportFolder | None:
    """The folder's time and export id, or None for a name Lifeguard does not write (which
    listing then ignores rather than guesses at). A trailing '/' is allowed."""
    bare = name.rstrip("/").rpartition("/")[2]
    found = _FOLDER.match(bare)
    if not found:
        return None
    try:
        started_at = datetime.strptime(found.group(1), _TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return ExportFolder(bare, started_at, found.group(2))


def dump_file_name(database: str) -> str:
    """`<database>.dump.zst.age`, the name percent-encoded so any database name (slashes,
    spaces, quotes, `..`) makes one plain key segment, distinct names stay distinct, and
    the file is safe on a command line (no leading '-' or '.')."""
    if not database:
        raise ValueError("a database name cannot be empty")
    encoded = quote(database, safe="")
    if encoded[0] in "-.":
        encoded = f"%{ord(encoded[0]):02X}{encoded[1:]}"
    return encoded + DUMP_SUFFIX


def database_of_file(file_name: str) -> str:
    """The database name dump_file_name encoded in `file_name`."""
    if not file_name.endswith(DUMP_SUFFIX) or file_name == DUMP_SUFFIX:
        raise ValueError(f"{file_name!r} is not an export dump file name")
    return unquote(file_name[: -len(DUMP_SUFFIX)])


def check_recipients(recipients: Iterable[str]) -> tuple[str, ...]:
    """The age public keys (`age1…`), stripped; ValueError naming the first malformed one.
    At least one is needed: an export nobody can decrypt is worthless."""
    keys = tuple(key.strip() for key in recipients if key.strip())
    if not keys:
        raise ValueError("at least one age public key (age1…) is needed")
    for key in keys:
        if not _AGE_RECIPIENT.match(key):
            shown = key if len(key) <= 70 else key[:67] + "..."
            raise ValueError(f"{shown!r} is not an age public key (age1 and 58 characters)")
    return keys


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
    return _utc(at).isoformat().replace("+00:00", "Z")


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
        if not isinstance(key, str) or not _AGE_RECIPIENT.match(key):
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
