"""Alembic environment for Lifeguard's store.

Run by `storage.migrate` (which passes an open connection, already inside a transaction
and holding the migration lock, in `config.attributes["connection"]`), or by the alembic
command line with `storage/alembic.ini` (which reads DATABASE_URL, or
`-x database_url=...`, and takes the same lock).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import create_engine_for, is_sqlite, sqlalchemy_url
from storage.migrate import DEFAULT_DATABASE_URL, migration_lock
from storage.models import metadata

config = context.config
target_metadata = metadata


def _database_url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("database_url")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(connection),
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = sqlalchemy_url(_database_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = create_engine_for(_database_url())
    try:
        with engine.connect() as conn, migration_lock(conn):
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
