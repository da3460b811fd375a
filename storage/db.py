"""Database URLs and engines for Lifeguard's own store (SQLite or PostgreSQL).

SQLite is opened for durability and concurrent use by several threads and processes:
WAL journal, `synchronous=FULL` (every commit is on disk before it returns, so a command
recorded before Slack is acknowledged survives a crash or a power cut), foreign keys on,
and a 30 s busy timeout. Transactions are begun by SQLAlchemy, not by the sqlite3 module:
plain `BEGIN` (deferred) for reads, `BEGIN IMMEDIATE` for writes when the connection has
the execution option `sqlite_begin="IMMEDIATE"` (see `write_connection`), so two writers
queue on the write lock instead of failing half-way through.

PostgreSQL goes through psycopg 3 with a pre-pinged pool (a connection dropped by the
server, or by Neon suspending an idle compute, is replaced before it is used).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 10
POSTGRES_POOL_RECYCLE_SECONDS = 1800
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10

ACCEPTED_URLS = (
    "sqlite:///path/to/file.db, postgresql://user:password@host/db, "
    "postgres://user:password@host/db (Heroku) or postgresql+psycopg://user:password@host/db"
)

_SQLITE_BEGIN_OPTION = "sqlite_begin"


def sqlalchemy_url(database_url: str) -> str:
    """The SQLAlchemy URL for a `DATABASE_URL`: PostgreSQL URLs use the psycopg 3 driver.

    Raises ValueError, saying what is accepted, for anything else.
    """
    url = database_url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or (not rest and scheme.lower() != "sqlite"):
        raise ValueError(f"DATABASE_URL is not a database URL; accepted: {ACCEPTED_URLS}")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return f"sqlite://{rest}"
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(
        f"DATABASE_URL scheme {scheme!r} is not supported; accepted: {ACCEPTED_URLS}"
    )


def is_sqlite(engine_or_connection: Engine | Connection) -> bool:
    return engine_or_connection.dialect.name == "sqlite"


def is_postgresql(engine_or_connection: Engine | Connection) -> bool:
    return engine_or_connection.dialect.name == "postgresql"


def write_connection(connection: Connection) -> Connection:
    """Mark a connection so its next transaction takes the write lock at once on SQLite
    (`BEGIN IMMEDIATE`). No effect on PostgreSQL. Call before `connection.begin()`."""
    if is_sqlite(connection):
        connection.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    return connection


def create_engine_for(database_url: str) -> Engine:
    """An engine for Lifeguard's store, configured for durability and concurrency."""
    url = make_url(sqlalchemy_url(database_url))
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.render_as_string(hide_password=False))
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        pool_recycle=POSTGRES_POOL_RECYCLE_SECONDS,
        connect_args={
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
            "application_name": "lifeguard",
        },
    )


def _sqlite_engine(url: str) -> Engine:
    in_memory = make_url(url).database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
        },
    }
    if in_memory:  # one shared connection, or every checkout would see an empty database
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Hand transaction control to SQLAlchemy (the "begin" hook below): the sqlite3
        # module's own implicit BEGIN would otherwise be deferred and issued too late.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite transaction mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
