"""Exports off Neon: the adapter that streams pg_dump through zstd and age into an
S3-compatible store, reads it back, and restores it. It imports boto3, botocore, pyrage,
zstandard, psycopg, the standard library and bot.domain (the names, the manifest and the
errors); only bot/app.py (and bot/__main__.py) import it, handing its pieces to the
services. Its modules: objects.py (ObjectStore) and object_streams.py (Upload,
ObjectReader); dumping.py (snapshot, dump) and readback.py (verify, restore), with the
child processes they run in children.py; tools.py (pg_dump and pg_restore).

Every error is a bot.domain.export_errors.ExportError whose message a person can act on:
ObjectStoreError (with `reason`: no_bucket, access_denied, unreachable, exists,
not_found, failed), PgToolsError, DumpFailed, VerificationFailed (with `file`),
RestoreFailed. None holds a password or a secret key.

One export, step by step (the engine in bot/services runs these as its steps):

    store = ObjectStore(settings.export_url, endpoint_url=settings.export_s3_endpoint)
    store.check()                                    # bucket there, credentials good
    folder = folder_name(project_id, started_at, export_id)   # bot.domain.exports
    for database in databases:                       # on the branch made for the export
        with snapshot(uri_of(database)) as taken:    # REPEATABLE READ, held open
            tools = find_tools(taken.server_version_num)       # pg_dump >= server
            file = dump_file_name(database)
            with store.upload(folder + file) as sink:          # refuses an existing key
                result = dump(uri, database, snapshot_id=taken.snapshot_id,
                              recipients=settings.export_recipients, sink=sink,
                              tools=tools, progress=on_progress)
                sink.complete()                      # an exception aborts: no parts left
        # -> DumpedDatabase(database, file, result.size, result.sha256, taken.taken_at,
        #                   taken.lsn, taken.tables)
    store.put_bytes(folder + CHECKSUMS_NAME, render_checksums(checksums))  # export_manifest
    store.put_bytes(folder + MANIFEST_NAME, render_manifest(manifest))   # last
    for each file:                                   # verification
        with store.open_read(folder + file) as stream:
            verify(stream, name=file, expected_sha256=..., expected_size=...,
                   identity=settings.export_identity, tools=tools)
    # on failure: store.delete_folder(folder) removes objects and unfinished uploads

Restore: `restore(store.open_read(key), identity=path, target_uri=url, tools=tools)`.
Listing: `store.list_folders(project_id + "/")` with bot.domain.exports.parse_folder, a
folder counting only when `store.exists(folder + MANIFEST_NAME)`.
bot/exports/archive.py's Archive does all of this behind one facade, the
bot.services.ports.ExportArchive the services use.
Doctor: `tools_summary()` -> (pg_dump path, version); `store.check()`.
"""

from bot.exports.archive import Archive
from bot.exports.children import client_connection
from bot.exports.dumping import DumpResult, Snapshot, dump, load_recipients, snapshot
from bot.exports.object_streams import ObjectReader, Upload
from bot.exports.objects import ObjectStore, parse_store_url
from bot.exports.readback import VerifyResult, load_identities, restore, verify
from bot.exports.tools import PgTools, find_tools, tools_summary

__all__ = [
    "Archive",
    "DumpResult",
    "ObjectReader",
    "ObjectStore",
    "PgTools",
    "Snapshot",
    "Upload",
    "VerifyResult",
    "client_connection",
    "dump",
    "find_tools",
    "load_identities",
    "load_recipients",
    "parse_store_url",
    "restore",
    "snapshot",
    "tools_summary",
    "verify",
]
