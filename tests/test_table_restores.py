"""Table restores without a database: reading `/restore table`, names, the plan hash, the
per-table report and the cards, with hostile names and conditions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.requests import Plan, RequestAction
from bot.domain.restores import parse_restore_command
from bot.domain.table_restores import (
    RestoreTable,
    TableCopy,
    TableMode,
    TableName,
    closest_names,
    parse_table_restore,
    qualified,
    restored_table_name,
)
from bot.domain.verification import TableResult, VerificationReport
from bot.services.table_source import check_one_expression
from handlers.drill_blocks import drill_card
from handlers.verification_blocks import table_report
from tests.support.handler_fakes import make_drill
from tests.support.mrkdwn import HOSTILE, assert_markup_is_lifeguards

BACKUP = "backup-20261121-142500"


def test_the_command_reads_table_source_mode_condition_and_reason():
    parsed = parse_restore_command(f'table accounts from {BACKUP} --merge --rows "id <= 5" '
                                   "script deleted them")
    assert parsed == RestoreTable(TableName(None, "accounts"), BACKUP, None, TableMode.MERGE,
                                  "id <= 5", "script deleted them")
    at = parse_table_restore("Orders at 30 minutes ago --replace")
    assert at.table == TableName(None, "orders") and at.when_text == "30 minutes ago"
    assert at.mode == TableMode.REPLACE and at.condition is None


def test_quoted_names_keep_case_quotes_and_spaces():
    parsed = parse_table_restore(f'"my schema"."Weird ""Name""" from {BACKUP}')
    assert parsed.table == TableName("my schema", 'Weird "Name"')
    assert qualified("my schema", 'Weird "Name"') == '"my schema"."Weird ""Name"""'
    assert qualified("public", "accounts") == "accounts"


def test_conditions_in_backticks_or_quotes_and_curly_quotes_from_slack():
    assert parse_table_restore(f"t from {BACKUP} --rows `\"Note\" = 'x'`").condition == \
        "\"Note\" = 'x'"
    assert parse_table_restore(f'x from {BACKUP} --rows "a = ""b"""').condition == 'a = "b"'
    assert parse_table_restore(f"x from {BACKUP} \u2014rows \u201cid < 3\u201d").condition == \
        "id < 3"


@pytest.mark.parametrize("text, words", [
    ("", "table name first"),
    ("accounts", "from &lt;branch&gt;"),
    ("accounts from main", "neither a backup"),
    (f"accounts from {BACKUP} --merge --replace", "not both"),
    (f"accounts from {BACKUP} --force", "not an option"),
    (f"accounts from {BACKUP} --rows id < 5", "double quotes or backticks"),
    (f'accounts from {BACKUP} --rows "id < 5', "not closed"),
    (f'accounts from {BACKUP} --rows ""', "empty"),
    ('"accounts from', "not closed"),
    ("a.b.c from x", "more than one dot"),
    ("accounts! from x", "not a table name"),
])
def test_bad_commands_say_what_is_accepted(text, words):
    with pytest.raises((InvalidInput, NotAllowed)) as refused:
        parse_table_restore(text)
    assert words in str(refused.value)


@given(st.text(max_size=80))
def test_any_typed_text_is_read_or_refused_in_words(text):
    try:
        parse_table_restore(text)
    except (InvalidInput, NotAllowed) as refused:
        assert str(refused)


@pytest.mark.parametrize("condition", [
    "1=1; DROP TABLE accounts", "true) UNION SELECT 1 FROM t WHERE (true",
    "true) ORDER BY (1", "true) --", "true) FOR UPDATE --", "true) LIMIT (1",
    "true); SELECT (1", "true) GROUP BY (1",
])
def test_a_condition_that_would_leave_its_brackets_is_refused_by_the_parser(condition):
    with pytest.raises(InvalidInput):
        check_one_expression(condition)


@pytest.mark.parametrize("condition", [
    "id <= 5", "status = 'a)b;c'", "id IN (SELECT id FROM other WHERE x)",
    "\"Weird \"\"col\"\"\" -- a comment", "created_at > now() - interval '1 day'",
])
def test_one_expression_passes_the_parser(condition):
    check_one_expression(condition)


def test_restored_names_fit_postgresql_and_closest_names_come_first():
    at = datetime(2026, 11, 21, 14, 25, 0, tzinfo=UTC)
    assert restored_table_name("accounts", at) == "accounts_restored_20261121_142500"
    assert len(restored_table_name("é" * 60, at).encode()) <= 63
    assert closest_names("acounts", ["audit_log", "accounts", "zebra"])[0] == "accounts"


def test_the_plan_hash_binds_table_mode_and_condition():
    copy = TableCopy("public", "accounts", TableMode.MERGE, "id <= 5", "accounts")
    plan = Plan(action=RequestAction.RESTORE_TABLE, project_id="p", requester="U0ALICE",
                source_branch_id="br-b", source_branch_name=BACKUP, target_branch_name="main",
                target_branch_id="br-main", table_copy=copy)
    changed = [replace(copy, table="other"), replace(copy, mode=TableMode.REPLACE),
               replace(copy, condition="id <= 6"), replace(copy, schema="s")]
    assert len({plan.hash(), *(replace(plan, table_copy=c).hash() for c in changed)}) == 5
    plain = replace(plan, action=RequestAction.RESTORE_FROM_BRANCH, table_copy=None)
    assert "table_copy" not in repr(plain.hash())  # other plans hash as before


def result(name: str, here: int, source: int) -> TableResult:
    return TableResult("public", name, source, here, True, {}, here != source,
                       f"rows {here} here, {source} in the source" if here != source
                       else f"{here} rows on both sides (exact)")


def test_the_report_puts_the_largest_differences_first_and_says_how_many_more():
    tables = (*(result(f"t{i:02d}", i, i) for i in range(40)), result("small_gap", 10, 12),
              result("big_gap", 1, 500), result(HOSTILE[:20], 0, 3))
    report = VerificationReport(True, len(tables), tables, ("gone",), (), (), 1.0, None, "x")
    blocks = table_report(report)
    text = blocks[0]["text"]["text"]
    names = [line.split()[0] for line in text.strip("`").splitlines()[1:]]
    assert names[:3] == ["big_gap", "&lt;!channel&gt;", "small_gap"]
    assert len(text) <= 3000 and "and 23 more tables" in blocks[1]["elements"][0]["text"]
    assert "only in the source: `gone`" in blocks[1]["elements"][0]["text"]
    assert_markup_is_lifeguards({"blocks": blocks})


def test_a_drill_report_names_the_tables_and_counts_it_checked():
    tables = (result("members", 1200, 1200), result("orders", 80, 95))
    report = VerificationReport(True, 2, tables, (), (), (), 2.0, None, "main (live)")
    card = drill_card(replace(make_drill(), verification=report.to_dict()))
    shown = "\n".join(b["text"]["text"] for b in card["blocks"] if b["type"] == "section")
    header, first, second = shown.split("```")[1].splitlines()
    assert header.split() == ["table", "restored", "production", "differs"]
    assert first.split()[:3] == ["orders", "80", "95"]  # the difference first
    assert second.split()[:4] == ["members", "1,200", "1,200", "no"]
