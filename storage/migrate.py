"""Bring the store's schema up to date with Alembic, configured in code.

No alembic.ini and no particular working directory are needed: the migrations are found
next to this file. Two processes starting at once do not both migrate: the upgrade runs in
one transaction holding a lock (a PostgreSQL advisory lock; SQLite's write lock, taken by
BEGIN IMMEDIATE), and the second one finds the schema already at head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from storage.db import create_engine_for, is_postgresql, write_connection

DEFAULT_DATABASE_URL = "sqlite:///lifeguard.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x4C4946454D494752  # "LIFEMIGR": pg_advisory_xact_lock key


def alembic_config() -> Config:
    """An Alembic configuration for the packaged migrations, without any ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


@contextmanager
def migration_lock(connection: Connection) -> Iterator[Connection]:
    """A transaction on `connection` that holds the migration lock until it ends."""
    write_connection(connection)
    with connection.begin():
        if is_postgresql(connection):
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
        yield connection


def upgrade_engine(engine: Engine) -> str:
    """Upgrade the database behind `engine` to the newest revision; return that revision."""
    config = alembic_config()
    with engine.connect() as connection, migration_lock(connection):
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None:  # pragma: no cover - upgrade always stamps
        raise RuntimeError("the migration did not record a revision")
    return revision


def upgrade_to_head(database_url: str) -> str:
    """Upgrade the database at `database_url` to the newest revision; return it."""
    engine = create_engine_for(database_url)
    try:
        return upgrade_engine(engine)
    finally:
        engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
