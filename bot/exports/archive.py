"""The export archive: one facade over the object store, pg_dump/pg_restore, the recipients
and the identity, satisfying bot.services.ports.ExportArchive, so services never import
bot/exports. bot/app.py (and bot/__main__.py) build it from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import botocore.exceptions
import psycopg
from psycopg.conninfo import conninfo_to_dict

from bot.domain.export_archive import DatabaseDump, ExportCheck, FileCheck, FoundExport
from bot.domain.export_errors import ExportError, InvalidManifest, ObjectStoreError
from bot.domain.export_manifest import (
    DumpedDatabase,
    Manifest,
    checksum_disagreements,
    parse_checksums,
    parse_manifest,
    render_checksums,
    render_manifest,
)
from bot.domain.exports import (
    CHECKSUMS_NAME,
    MANIFEST_NAME,
    check_recipients,
    dump_file_name,
    parse_folder,
)
from bot.exports.dumping import dump, snapshot
from bot.exports.objects import ObjectStore
from bot.exports.readback import restore, verify
from bot.exports.tools import PgTools, find_tools

NO_IDENTITY = ("EXPORT_IDENTITY is not set: restoring from an export needs the age identity "
               "file of one of EXPORT_RECIPIENTS' keys")


class ExportSettings(Protocol):
    """What the archive reads of bot.config's Settings (or ExportSettings)."""

    neon_project_id: str
    export_url: str | None
    export_s3_endpoint: str | None
    export_recipients: tuple[str, ...]
    export_identity: str | None


class Archive:
    """A project's exports under EXPORT_URL."""

    def __init__(self, store: ObjectStore, *, project_id: str, recipients: Sequence[str],
                 identity: str | Path | None = None,
                 find: Callable[[int | None], PgTools] = find_tools) -> None:
        self.store = store
        self.project_id = project_id
        # None given: a read-only archive (disaster recovery needs no public key)
        self._recipients = check_recipients(recipients) if recipients else ()
        self.identity = Path(identity) if identity is not None else None
        self._find_tools = find

    @classmethod
    def from_settings(cls, settings: ExportSettings) -> Archive | None:
        """The export bucket of bot.config's settings; None while exports are off."""
        if settings.export_url is None:
            return None
        return cls(ObjectStore(settings.export_url, endpoint_url=settings.export_s3_endpoint),
                   project_id=settings.neon_project_id, recipients=settings.export_recipients,
                   identity=settings.export_identity)

    @property
    def recipients(self) -> tuple[str, ...]:
        return self._recipients

    @property
    def can_decrypt(self) -> bool:
        return self.identity is not None

    def where(self, folder: str = "") -> str:
        return self.store.where(folder)

    def check(self) -> None:
        self.store.check()

    def objects(self, folder: str) -> dict[str, int]:
        return self.store.list_keys(self._folder(folder))

    # Writing an export.

    def dump_database(self, folder: str, uri: str, database: str, *,
                      progress: Callable[[int], None] | None = None) -> DatabaseDump:
        folder = self._folder(folder)
        file = dump_file_name(database)
        if not self._recipients:
            raise ExportError("EXPORT_RECIPIENTS is not set: an export is encrypted to them")
        with snapshot(uri) as taken:
            tools = self._find_tools(taken.server_version_num)
            self._abort_uploads(folder + file)
            with self.store.upload(folder + file) as sink:
                # The URI names the database as the server knows it; `database` is the
                # name the export files it under (the same on Neon).
                result = dump(uri, _dbname(uri) or database, snapshot_id=taken.snapshot_id,
                              recipients=self._recipients, sink=sink, tools=tools,
                              progress=progress)
                sink.complete()
        dumped = DumpedDatabase(database, file, result.size, result.sha256, taken.taken_at,
                                taken.lsn, taken.tables)
        return DatabaseDump(dumped, taken.server_version, tools.version)

    def discard_file(self, folder: str, file: str) -> None:
        relative = self._folder(folder) + file
        self._abort_uploads(relative)
        if self.store.exists(relative):
            self.store.call("delete", relative, "delete_object", Key=self.store.key(relative))

    def _abort_uploads(self, relative: str) -> None:
        """The unfinished multipart uploads of exactly this key (a killed try's parts)."""
        key = self.store.key(relative)
        answer = self.store.call("list", relative, "list_multipart_uploads", Prefix=key)
        for upload in answer.get("Uploads", []):
            if upload["Key"] == key:
                try:
                    self.store.abort_upload(key, upload["UploadId"])
                except (botocore.exceptions.BotoCoreError,
                        botocore.exceptions.ClientError) as error:
                    raise self.store.error(error, "abort the upload of", relative) from error

    def finish(self, folder: str, manifest: Manifest) -> None:
        folder = self._folder(folder)
        self._put_once(folder + CHECKSUMS_NAME, render_checksums(manifest.checksums()),
                       "text/plain; charset=utf-8")
        self._put_once(folder + MANIFEST_NAME, render_manifest(manifest), "application/json")

    def _put_once(self, relative: str, data: bytes, content_type: str) -> None:
        try:
            self.store.put_bytes(relative, data, content_type=content_type)
        except ObjectStoreError as error:
            # An earlier try of this same step wrote it: the same bytes are success.
            if error.reason != "exists" or self.store.get_bytes(relative) != data:
                raise

    # Reading exports.

    def list_exports(self) -> list[FoundExport]:
        found = []
        for name in self.store.list_folders(self.project_id + "/"):
            folder = parse_folder(name)
            if folder is None:
                continue
            relative = f"{self.project_id}/{folder.name}/"
            if not self.store.exists(relative + MANIFEST_NAME):
                continue  # unfinished: never listed
            found.append(self._read(relative, folder.export_id, folder.started_at))
        return sorted(found, key=lambda export: (export.started_at, export.export_id))

    def find(self, export_id: str) -> FoundExport | None:
        return next((found for found in self.list_exports() if found.export_id == export_id),
                    None)

    def _read(self, relative: str, export_id: str, started_at: datetime) -> FoundExport:
        try:
            manifest = parse_manifest(self.store.get_bytes(relative + MANIFEST_NAME))
        except InvalidManifest as error:
            return FoundExport(relative, export_id, started_at, None,
                               str(error))
        if manifest.export_id != export_id:
            return FoundExport(relative, export_id, started_at, None,
                               f"{MANIFEST_NAME} names export {manifest.export_id!r}, not "
                               f"the folder's {export_id!r}")
        return FoundExport(relative, export_id, started_at, manifest)

    def verify(self, folder: str) -> ExportCheck:
        folder = self._folder(folder)
        if not self.store.exists(folder + MANIFEST_NAME):
            return ExportCheck(folder, (), (f"{self.where(folder)} has no {MANIFEST_NAME}: "
                                            "it is an unfinished export",))
        try:
            manifest = parse_manifest(self.store.get_bytes(folder + MANIFEST_NAME))
        except InvalidManifest as error:
            return ExportCheck(folder, (), (str(error),))
        problems: list[str] = []
        try:
            problems += checksum_disagreements(
                manifest, parse_checksums(self.store.get_bytes(folder + CHECKSUMS_NAME)))
        except InvalidManifest as error:
            problems.append(str(error))
        except ObjectStoreError as error:
            if error.reason != "not_found":
                raise
            problems.append(f"{CHECKSUMS_NAME} is missing")
        tools = self._find_tools(None) if self.identity is not None else None
        checks = tuple(self._verify_file(folder, database, tools)
                       for database in manifest.databases)
        return ExportCheck(folder, checks, tuple(problems))

    def _verify_file(self, folder: str, database: DumpedDatabase,
                     tools: PgTools | None) -> FileCheck:
        try:
            with self.store.open_read(folder + database.file) as stream:
                result = verify(stream, name=database.file, expected_sha256=database.sha256,
                                expected_size=database.size, identity=self.identity,
                                tools=tools)
        except ObjectStoreError as error:
            if error.reason != "not_found":
                raise
            return FileCheck(database.file, False, False, f"{database.file} is missing")
        except ExportError as error:  # VerificationFailed, or an unreadable identity
            return FileCheck(database.file, False, False, str(error))
        return FileCheck(database.file, True, result.archive_read)

    def restore_file(self, folder: str, file: str, target_uri: str, *,
                     expected_sha256: str | None = None) -> None:
        if self.identity is None:
            raise ExportError(NO_IDENTITY)
        tools = self._find_tools(None)
        with self.store.open_read(self._folder(folder) + file) as stream:
            restore(stream, identity=self.identity, target_uri=target_uri, tools=tools,
                    name=file, expected_sha256=expected_sha256)

    def delete(self, folder: str) -> int:
        return self.store.delete_folder(self._folder(folder))

    def _folder(self, folder: str) -> str:
        """`folder` checked to be one of this project's export folders."""
        parsed = parse_folder(folder)
        if (not folder.endswith("/") or parsed is None
                or folder != f"{self.project_id}/{parsed.name}/"):
            raise ValueError(f"{folder!r} is not an export folder of project "
                             f"{self.project_id}")
        return folder


def _dbname(uri: str) -> str | None:
    try:
        return conninfo_to_dict(uri).get("dbname") or None
    except psycopg.Error:
        return None
