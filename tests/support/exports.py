"""Exports taken in a test with the archive directly (bot/exports/archive.py), as the
export job would, and what a person compares a restore with: every table's rows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyrage
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bot.domain.export_manifest import Manifest
from bot.domain.exports import folder_name
from bot.exports import Archive, ObjectStore
from tests.support.s3 import S3Server

# Several tables: one over 100k rows, one named with a quote, a second schema, an empty one.
SOURCE_SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz);
INSERT INTO customers SELECT g, 'customer ' || g, '2026-01-01'::timestamptz + g * interval '1 min'
  FROM generate_series(1, 2000) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers,
  note text, created_at timestamptz NOT NULL);
INSERT INTO orders SELECT g, 1 + g % 2000, md5(g::text),
  '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, 110000) g;
CREATE SCHEMA sales;
CREATE TABLE sales."it's" (id serial PRIMARY KEY, "a ""quoted"" column" text, payload jsonb);
INSERT INTO sales."it's" ("a ""quoted"" column", payload) VALUES
  ('it''s here', '{"k": [1, 2, "three"]}'), (NULL, NULL), (E'line\\nbreak', '{}');
CREATE TABLE public.empty (id int);
"""
SECOND_SCHEMA = """
CREATE TABLE events (id bigint PRIMARY KEY, kind text);
INSERT INTO events SELECT g, 'kind-' || (g % 7) FROM generate_series(1, 500) g;
"""


@dataclass(frozen=True)
class AgeKey:
    recipient: str  # age1…
    identity_file: Path  # as age-keygen writes it


def make_key(folder: Path) -> AgeKey:
    identity = pyrage.x25519.Identity.generate()
    path = folder / "key.txt"
    path.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    return AgeKey(str(identity.to_public()), path)


def table_digests(url: str) -> dict[tuple[str, str], tuple[int, str]]:
    """Every user table: (row count, MD5 of all its rows as text, in order)."""
    digests = {}
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            row = conn.execute(sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), "
                "'') FROM {}.{} t").format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchone()
            assert row is not None
            digests[(schema, table)] = (row[0], row[1])
    return digests


def archive_of(server: S3Server, bucket: str, project_id: str, key: AgeKey,
               prefix: str = "lifeguard") -> Archive:
    store = ObjectStore(f"s3://{bucket}/{prefix}", endpoint_url=server.endpoint)
    return Archive(store, project_id=project_id, recipients=[key.recipient],
                   identity=key.identity_file)


def take_export(archive: Archive, export_id: str, databases: dict[str, str], *,
                branch_name: str = "main", started_at: datetime | None = None,
                row_counts_off_by: int = 0) -> tuple[str, Manifest]:
    """Dump each database (name -> URL) into a new export folder and finish it: the
    folder and its manifest. `row_counts_off_by` writes a manifest whose first table
    count is wrong by that much (a restore must then not pass its check)."""
    started = started_at or datetime.now(UTC)
    folder = folder_name(archive.project_id, started, export_id)
    dumps = [archive.dump_database(folder, url, str(conninfo_to_dict(url)["dbname"]))
             for url in databases.values()]
    # The fake Neon calls a branch's physical database (br_…) `neondb`: the manifest
    # names each database as the API does, as an export of a real Neon branch would.
    dumped = [replace(d.dumped, database=name) for d, name in zip(dumps, databases,
                                                                   strict=True)]
    if row_counts_off_by:
        first = dumped[0]
        table = first.tables[0]
        wrong = type(table)(table.schema, table.table, table.rows + row_counts_off_by)
        dumped[0] = type(first)(first.database, first.file, first.size, first.sha256,
                                first.snapshot_at, first.lsn, (wrong, *first.tables[1:]))
    manifest = Manifest(
        export_id=export_id, project_id=archive.project_id, branch_id="br-main-1",
        branch_name=branch_name, started_at=started, finished_at=datetime.now(UTC),
        server_version=dumps[0].server_version, pg_dump_version=dumps[0].pg_dump_version,
        recipients=archive.recipients, databases=tuple(dumped))
    archive.finish(folder, manifest)
    return folder, manifest
