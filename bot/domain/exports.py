"""Exports off Neon: where an export's objects go and what they are called, and the age
public keys an export is encrypted to. Standard library only.

An export is a folder `<project id>/<YYYYMMDD-HHMMSS>-<export id>/` under EXPORT_URL
holding one `<database>.dump.zst.age` per database, `SHA256SUMS` (in `sha256sum -c`
format) and `manifest.json`, written last: a folder without a manifest is unfinished.
What manifest.json and SHA256SUMS say is bot/domain/export_manifest.py's; the errors are
bot/domain/export_errors.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

MANIFEST_NAME = "manifest.json"
CHECKSUMS_NAME = "SHA256SUMS"
DUMP_SUFFIX = ".dump.zst.age"

_TIMESTAMP = "%Y%m%d-%H%M%S"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_FOLDER = re.compile(r"^(\d{8}-\d{6})-([A-Za-z0-9][A-Za-z0-9_-]{0,127})$")
# age's X25519 recipients: "age1" and 58 characters of Bech32's alphabet.
AGE_RECIPIENT = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")


# S3's bucket names (also R2's, MinIO's, B2's): 3 to 63 lowercase letters, digits, '.' and
# '-', starting and ending with a letter or a digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def split_export_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of EXPORT_URL `s3://bucket/prefix`; the prefix is '' or ends with
    '/'. ValueError saying what is accepted."""
    parts = urlsplit(url.strip())
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("an export URL is s3://bucket or s3://bucket/prefix")
    if not _BUCKET.match(parts.netloc):
        raise ValueError(f"{parts.netloc!r} is not a bucket name (3 to 63 lowercase letters, "
                         "digits, '.' and '-')")
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ValueError("an export URL's prefix has empty, '.' or '..' segments")
    return parts.netloc, prefix + "/" if prefix else ""


def in_utc(at: datetime) -> datetime:
    """An export's time in UTC; ValueError for a naive one."""
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
    return f"{project_id}/{in_utc(started_at).strftime(_TIMESTAMP)}-{export_id}/"


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
        if not AGE_RECIPIENT.match(key):
            shown = key if len(key) <= 70 else key[:67] + "..."
            raise ValueError(f"{shown!r} is not an age public key (age1 and 58 characters)")
    return keys

