"""The PostgreSQL server `python -m bot export restore --into <url>` restores into: any
server (a new Neon project, a laptop), reached with the URL given, never through Neon's
API. It finds, checks and creates the target databases; the restore itself is
bot/exports/readback.py's. Messages name the server by host and port, never a password.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bot.domain.export_errors import ExportError

MAINTENANCE_DATABASES = ("postgres", "template1")  # where CREATE DATABASE is sent from

# User tables, as an export's manifest counts them (bot/exports/dumping.py).
_USER_TABLES = """
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY 1
LIMIT 6
"""


class TargetServer:
    """A PostgreSQL server given by a postgresql:// URL (or a libpq conninfo string)."""

    def __init__(self, url: str, *, connect_timeout: int = 15) -> None:
        try:
            self._params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise ExportError("--into is not a PostgreSQL URL: write "
                              "postgresql://user:password@host:5432/database") from None
        self._url = url
        self.connect_timeout = connect_timeout
        database = self._params.get("dbname")
        self.named_database: str | None = str(database) if database else None

    def describe(self) -> str:
        """`host:port` (no user, no password), for messages."""
        host = self._params.get("host") or self._params.get("hostaddr") or "localhost"
        return f"{host}:{self._params.get('port') or 5432}"

    def database_url(self, database: str) -> str:
        """The URL's connection with `database` as its database. Holds the password: never
        shown."""
        return make_conninfo(self._url, dbname=database)

    def exists(self, database: str) -> bool:
        with self._maintenance() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               (database,)).fetchone()
        return row is not None

    def user_tables(self, database: str) -> list[str]:
        """Up to six user tables the database holds already (schema.table)."""
        try:
            with psycopg.connect(self.database_url(database),
                                 connect_timeout=self.connect_timeout) as conn:
                return [str(row[0]) for row in conn.execute(_USER_TABLES).fetchall()]
        except psycopg.Error as error:
            raise ExportError(f"cannot read database {database!r} on {self.describe()}: "
                              f"{_first_line(error)}") from None

    def create(self, database: str) -> None:
        """CREATE DATABASE, owned by the URL's user."""
        with self._maintenance() as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.Error as error:
                raise ExportError(f"cannot create database {database!r} on "
                                  f"{self.describe()}: {_first_line(error)}") from None

    def _maintenance(self) -> psycopg.Connection[Any]:
        """A connection for CREATE DATABASE and the catalog: the URL's own database when it
        exists, else the server's usual maintenance databases."""
        candidates = [*([self.named_database] if self.named_database else []),
                      *MAINTENANCE_DATABASES]
        problem: psycopg.Error | None = None
        for database in candidates:
            try:
                return psycopg.connect(self.database_url(database), autocommit=True,
                                       connect_timeout=self.connect_timeout)
            except psycopg.OperationalError as error:
                problem = problem or error
                if "does not exist" not in str(error):
                    break
        assert problem is not None
        raise ExportError(f"cannot connect to the PostgreSQL server {self.describe()}: "
                          f"{_first_line(problem)}")


def _first_line(error: psycopg.Error) -> str:
    primary = error.diag.message_primary if error.diag else None
    text = primary or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    return first.removeprefix("connection failed: ")
