"""`/restore table` end to end: signed requests to the real bot, the fake Slack and Neon on
loopback, and real rows in the branches' PostgreSQL databases."""

from __future__ import annotations

import re
import time
from datetime import UTC
from typing import Any

import psycopg
from psycopg import sql

from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.support.bot_process import BotProcess, audit_entries
from tests.support.fake_neon import FakeNeon
from tests.support.restore_steps import ask, card, click, refused
from tests.support.waits import wait_for_card

APPROVE = "request.approve"
RESTORED = re.compile(r"accounts_restored_\d{8}_\d{6}")


def run(neon: FakeNeon, branch: str, statement: str,
        params: tuple[Any, ...] | None = None) -> None:
    with psycopg.connect(neon.connect_url(branch)) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def rows(neon: FakeNeon, branch: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(neon.connect_url(branch)) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def tables(neon: FakeNeon, branch: str) -> list[str]:
    return [r[0] for r in rows(neon, branch, "SELECT tablename FROM pg_tables "
                               "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
                               "ORDER BY 1")]


def seed_accounts(neon: FakeNeon, count: int = 20) -> None:
    run(neon, "main", "CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL, "
        "created_at timestamptz DEFAULT now())")
    run(neon, "main", "INSERT INTO accounts (id, name) SELECT g, 'customer ' || g "
        "FROM generate_series(1, %s) g", (count,))


def take_backup(driver, slack, neon: FakeNeon) -> str:
    """`/backup now`, as a person would; the name of the ready backup branch."""
    before = {b["name"] for b in neon.branches()}
    driver.command("/backup", "now before the incident", user_id=ALICE, channel_id=OPS_CHANNEL)
    ready = wait_for_card(slack, OPS_CHANNEL, "is ready", timeout=30)
    [name] = re.findall(r"backup-\d{8}-\d{6}", ready["text"])
    assert name not in before
    return name


def approve_and_finish(driver, slack, request_id: str, words: str = "done (approved by",
                       timeout: float = 60) -> str:
    click(driver, slack, APPROVE, request_id, BOB)
    return card(slack, request_id, words, timeout=timeout)["text"]


def test_a_dropped_table_comes_back_beside_the_live_ones(driver, neon, slack, bot_env):
    seed_accounts(neon)
    backup = take_backup(driver, slack, neon)
    run(neon, "main", "DROP TABLE accounts")  # the migration that went wrong

    request_id = ask(driver, slack, f"table accounts from {backup} migration dropped it", ALICE)
    pending = card(slack, request_id, "waiting for approval")["text"]
    assert "*Rows to copy:* 20, counted when the request was made" in pending
    assert "`id` (key), `name`, `created_at`" in pending and backup in pending
    assert RESTORED.search(pending) and "nothing live is touched" in pending
    assert tables(neon, "main") == []  # nothing ran before approval

    done = approve_and_finish(driver, slack, request_id)
    [restored] = tables(neon, "main")
    assert RESTORED.fullmatch(restored) and restored in done
    assert rows(neon, "main", f"SELECT count(*), min(id), max(id) FROM {restored}") == [(20, 1, 20)]
    assert rows(neon, backup, "SELECT count(*) FROM accounts") == [(20,)]
    assert "20 rows copied" in done and f"DROP TABLE public.{restored}" in done
    actions = [e["action"] for e in audit_entries(bot_env) if e["subject"] == request_id]
    assert actions[0] == "request.created" and actions[-1] == "request.succeeded"


def test_merge_brings_back_five_deleted_rows_and_leaves_the_others_alone(driver, neon, slack):
    seed_accounts(neon)
    backup = take_backup(driver, slack, neon)
    run(neon, "main", "DELETE FROM accounts WHERE id BETWEEN 3 AND 7")  # the bad script
    run(neon, "main", "UPDATE accounts SET name = 'renamed since' WHERE id = 10")
    run(neon, "main", "INSERT INTO accounts (id, name) VALUES (21, 'new since')")
    before = {b["name"] for b in neon.branches()}

    request_id = ask(driver, slack, f"table accounts from {backup} --merge", ALICE)
    pending = card(slack, request_id, "waiting for approval")["text"]
    assert "merge" in pending and "Safety backup" in pending
    assert "*Rows to copy:* 20" in pending and "the live table holds 16 now" in pending

    done = approve_and_finish(driver, slack, request_id)
    live = dict(rows(neon, "main", "SELECT id, name FROM accounts"))
    assert sorted(live) == list(range(1, 22))
    assert all(live[i] == f"customer {i}" for i in range(3, 8))  # back as they were
    assert live[10] == "renamed since" and live[21] == "new since"  # untouched
    assert "5 rows copied" in done and "16 rows before and 21 after" in done
    [safety] = [b["name"] for b in neon.branches() if b["name"] not in before]
    assert safety.startswith("backup-") and safety in done
    # the safety backup holds the live table as it was just before the merge
    assert rows(neon, safety, "SELECT count(*) FROM accounts") == [(16,)]


def test_rows_condition_copies_exactly_the_rows_it_matches(driver, neon, slack):
    seed_accounts(neon)
    backup = take_backup(driver, slack, neon)
    request_id = ask(driver, slack, f'table accounts from {backup} --rows "id <= 5" only five',
                     ALICE)
    pending = card(slack, request_id, "waiting for approval")["text"]
    assert "```id &lt;= 5```" in pending and "*Rows to copy:* 5" in pending
    approve_and_finish(driver, slack, request_id)
    [restored] = [t for t in tables(neon, "main") if RESTORED.fullmatch(t)]
    assert rows(neon, "main", f"SELECT array_agg(id ORDER BY id) FROM {restored}") == [
        ([1, 2, 3, 4, 5],)]
    assert rows(neon, "main", "SELECT count(*) FROM accounts") == [(20,)]


def test_replace_takes_a_safety_backup_then_replaces_the_rows(driver, neon, slack):
    seed_accounts(neon)
    backup = take_backup(driver, slack, neon)
    run(neon, "main", "DELETE FROM accounts")
    run(neon, "main", "INSERT INTO accounts (id, name) VALUES (100, 'wrong'), (101, 'wrong')")
    before = {b["name"] for b in neon.branches()}
    request_id = ask(driver, slack, f"table accounts from {backup} --replace", ALICE)
    assert "replace" in card(slack, request_id, "waiting for approval")["text"]
    done = approve_and_finish(driver, slack, request_id)
    assert rows(neon, "main", "SELECT count(*), min(id), max(id) FROM accounts") == [(20, 1, 20)]
    [safety] = [b["name"] for b in neon.branches() if b["name"] not in before]
    assert rows(neon, safety, "SELECT array_agg(id ORDER BY id) FROM accounts") == [([100, 101],)]
    assert "2 rows before and 20 after" in done and f"from {safety} --replace" in done


def test_hostile_conditions_do_nothing_to_either_side(driver, neon, slack):
    seed_accounts(neon)
    run(neon, "main", "CREATE FUNCTION wipe() RETURNS boolean LANGUAGE sql AS "
        "'DELETE FROM accounts RETURNING true'")
    backup = take_backup(driver, slack, neon)
    branches = {b["name"] for b in neon.branches()}
    attempts = {
        "1=1; DROP TABLE accounts": "does not parse",
        "true); DROP TABLE accounts; SELECT (1": "not one SQL condition",
        "true) UNION SELECT 1 FROM accounts WHERE (true": "not one SQL condition",
        "true) --": "does not parse",
        "wipe()": "tries to change data",
        "id IN (SELECT 1 FROM accounts WHERE wipe())": "tries to change data",
        "pg_sleep(60) IS NULL": "took longer than",
        "nosuch > 1": "`id`, `name`, `created_at`",
    }
    for condition, words in attempts.items():
        typed = condition.replace('"', '""')
        answer = refused(driver, slack, f'table accounts from {backup} --merge --rows "{typed}"',
                         ALICE, words)
        assert "waiting for approval" not in answer["text"]
    for branch in ("main", backup):
        assert rows(neon, branch, "SELECT count(*) FROM accounts") == [(20,)]
        assert tables(neon, branch) == ["accounts"]
    assert {b["name"] for b in neon.branches()} == branches  # no safety backup, no request


def test_a_quoted_table_in_a_schema_with_a_space(driver, neon, slack):
    run(neon, "main", 'CREATE SCHEMA "my schema"')
    run(neon, "main", 'CREATE TABLE "my schema"."Weird ""Name""" (id int PRIMARY KEY, '
        '"Note" text)')
    run(neon, "main", 'INSERT INTO "my schema"."Weird ""Name""" SELECT g, \'n\' || g '
        "FROM generate_series(1, 4) g")
    backup = take_backup(driver, slack, neon)
    run(neon, "main", 'DELETE FROM "my schema"."Weird ""Name""" WHERE id > 2')

    lower = refused(driver, slack, f"table weird from {backup}", ALICE, "no table")
    assert '"my schema"."Weird ""Name"""' in lower["text"]  # the closest name, as typed
    request_id = ask(driver, slack, f'table "my schema"."Weird ""Name""" from {backup} '
                     '--merge --rows `"Note" <> \'n1\'`', ALICE)
    assert "*Rows to copy:* 3" in card(slack, request_id, "waiting for approval")["text"]
    approve_and_finish(driver, slack, request_id)
    assert rows(neon, "main", 'SELECT array_agg(id ORDER BY id) FROM "my schema"."Weird ""Name"""'
                ) == [([1, 2, 3, 4],)]


def test_bad_input_is_told_privately_and_nothing_runs(driver, neon, slack):
    seed_accounts(neon)
    run(neon, "main", "CREATE TABLE audit_log (at timestamptz, line text)")
    run(neon, "main", "CREATE TABLE account_notes (id int)")
    backup = take_backup(driver, slack, neon)
    run(neon, "main", "DROP TABLE account_notes")
    run(neon, "main", "CREATE TABLE only_live (id int)")
    branches = {b["name"] for b in neon.branches()}
    unknown = refused(driver, slack, f"table acounts from {backup}", ALICE, "no table")["text"]
    assert unknown.index("`accounts`") < unknown.index("`audit_log`")  # the closest first
    refused(driver, slack, f"table account_notes from {backup} --merge", ALICE,
            "is only in `" + backup)
    refused(driver, slack, f"table only_live from {backup}", ALICE, "only in the live branch")
    refused(driver, slack, "table accounts from main", ALICE, "neither a backup")
    refused(driver, slack, f"table audit_log from {backup} --merge", ALICE, "no primary key")
    refused(driver, slack, f"table accounts from {backup} --merge --replace", ALICE,
            "not both")
    refused(driver, slack, f'table "accounts from {backup}', ALICE, "not closed")
    assert {b["name"] for b in neon.branches()} == branches
    assert rows(neon, "main", "SELECT count(*) FROM accounts") == [(20,)]


def test_at_a_moment_reads_from_a_branch_it_then_removes(driver, neon, slack):
    seed_accounts(neon, 7)
    moment = neon.checkpoint()
    time.sleep(1.0)
    run(neon, "main", "DROP TABLE accounts")
    neon.checkpoint()
    at = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    request_id = ask(driver, slack, f"table accounts at {at}", ALICE, timeout=40)
    pending = card(slack, request_id, "waiting for approval")["text"]
    assert "*Rows to copy:* 7" in pending and "as it was at" in pending
    [made] = [b["name"] for b in neon.branches() if b["name"].startswith("restore-")]
    approve_and_finish(driver, slack, request_id)
    [restored] = tables(neon, "main")
    assert rows(neon, "main", f"SELECT count(*) FROM {restored}") == [(7,)]
    assert made not in {b["name"] for b in neon.branches()}  # removed afterwards


def test_a_kill_during_the_copy_leaves_all_rows_or_none(bot_env, neon, slack, driver, bot,
                                                         postgres):
    rows_in_table = 600_000
    run(neon, "main", "CREATE TABLE accounts (id int PRIMARY KEY, name text, pad text)")
    run(neon, "main", "INSERT INTO accounts SELECT g, 'customer ' || g, repeat('x', 60) "
        "FROM generate_series(1, %s) g", (rows_in_table,))
    backup = take_backup(driver, slack, neon)
    run(neon, "main", "DELETE FROM accounts WHERE id % 2 = 0")
    request_id = ask(driver, slack, f"table accounts from {backup}", ALICE)
    click(driver, slack, APPROVE, request_id, BOB)

    with psycopg.connect(postgres.url("postgres"), autocommit=True) as admin:
        def copying() -> bool:
            return bool(admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'lifeguard-table-restore' AND query LIKE 'COPY%FROM STDIN%' "
                "AND state = 'active'").fetchone()[0])
        deadline = time.monotonic() + 60
        while not copying():
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.02)
        bot.kill()
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'lifeguard-table-restore'").fetchone()[0]:
            time.sleep(0.05)  # the server ends the dead bot's sessions, rolling back

    def restored_rows() -> int | None:
        found = [t for t in tables(neon, "main") if t.startswith("accounts_restored_")]
        if not found:
            return None
        return rows(neon, "main", sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(found[0])).as_string(None))[0][0]

    assert restored_rows() in (None, rows_in_table)  # all or none, never some
    with BotProcess(bot_env) as restarted:
        assert restarted
        failed = card(slack, request_id, "failed", timeout=60)["text"]
    assert "Lifeguard stopped while it was copying" in failed and "none of the rows" in failed
    assert restored_rows() is None
    assert rows(neon, "main", "SELECT count(*) FROM accounts") == [(rows_in_table // 2,)]


def test_a_cancelled_request_at_a_moment_has_its_branch_removed(driver, neon, slack, bot_env):
    seed_accounts(neon, 3)
    moment = neon.checkpoint()
    at = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    request_id = ask(driver, slack, f"table accounts at {at}", ALICE, timeout=40)
    [made] = [b["name"] for b in neon.branches() if b["name"].startswith("restore-")]
    driver.command("/restore", f"cancel {request_id}", user_id=ALICE)
    card(slack, request_id, "cancelled by")
    slack.wait_for(lambda: made not in {b["name"] for b in neon.branches()}, timeout=30)
    assert rows(neon, "main", "SELECT count(*) FROM accounts") == [(3,)]
    assert "request.source_removed" in [e["action"] for e in audit_entries(bot_env)
                                        if e["subject"] == request_id]
