"""The table copy against a real PostgreSQL: what it writes, the counts it checks, and the
transaction id that tells a resumed worker whether a copy committed."""

from __future__ import annotations

import psycopg
import pytest

from bot.domain.table_restores import TableCopy, TableMode
from bot.services.table_copy import CopyFailed, CopyResult, copy_table, transaction_state

COLUMNS = ("id", "name")


@pytest.fixture
def sides(postgres):
    source = postgres.create_database("copy_source")
    live = postgres.create_database("copy_live")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 50) g")
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO t SELECT g, 'live' FROM generate_series(1, 50, 2) g")
    yield source, live
    for url in (source, live):
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")


def live_rows(live: str, query: str) -> list:
    with psycopg.connect(live) as conn:
        return conn.execute(query).fetchall()


def test_merge_adds_only_missing_keys_and_the_committed_xid_says_so(sides):
    source, live = sides
    xids: list[str] = []
    checked: list[CopyResult] = []
    result = copy_table(source, live, TableCopy("public", "t", TableMode.MERGE, "id <= 10", "t"),
                        COLUMNS, started=xids.append, checked=checked.append)
    assert (result.read, result.copied, result.live_before, result.live_after) == (10, 5, 25, 30)
    assert checked == [result] and transaction_state(live, xids[0]) == "committed"
    assert live_rows(live, "SELECT name FROM t WHERE id = 1") == [("live",)]  # untouched
    assert live_rows(live, "SELECT name FROM t WHERE id = 2") == [("n2",)]  # brought back


def test_replace_and_a_new_table(sides):
    source, live = sides
    replaced = copy_table(source, live, TableCopy("public", "t", TableMode.REPLACE, None, "t"),
                          COLUMNS, started=lambda x: None, checked=lambda r: None)
    assert (replaced.copied, replaced.live_before, replaced.live_after) == (50, 25, 50)
    new = copy_table(source, live, TableCopy("public", "t", TableMode.NEW, None, "t_restored"),
                     COLUMNS, started=lambda x: None, checked=lambda r: None)
    assert new.live_after == 50 and live_rows(live, "SELECT count(*) FROM t_restored") == [(50,)]


def test_a_copy_stopped_before_commit_leaves_nothing_and_its_xid_says_aborted(sides):
    source, live = sides
    xids: list[str] = []

    def stop(result: CopyResult) -> None:
        raise CopyFailed("stopped")

    with pytest.raises(CopyFailed):
        copy_table(source, live, TableCopy("public", "t", TableMode.NEW, None, "t_new"),
                   COLUMNS, started=xids.append, checked=stop)
    assert transaction_state(live, xids[0]) == "aborted"
    assert live_rows(live, "SELECT to_regclass('t_new')") == [(None,)]


def test_columns_changed_since_the_request_copy_nothing(sides):
    source, live = sides
    with pytest.raises(Exception, match="changed"):
        copy_table(source, live, TableCopy("public", "t", TableMode.MERGE, None, "t"),
                   ("id",), started=lambda x: None, checked=lambda r: None)
    assert live_rows(live, "SELECT count(*) FROM t") == [(25,)]
