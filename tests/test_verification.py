"""Verification of restored branches against a real PostgreSQL server: the "branch" is a
copy of the source database made with CREATE DATABASE … TEMPLATE, as a Neon branch is a
copy of its parent."""

from __future__ import annotations

import itertools
import json

import psycopg
import pytest
from psycopg import sql

from bot.domain.verification import VerificationReport
from bot.services.verification import verify_branch
from tests.support.postgres import PostgresServer, free_port

_copies = itertools.count(1)

SCHEMA = [
    "CREATE TABLE customers (id int PRIMARY KEY, name text, created_at timestamptz NOT NULL)",
    "CREATE TABLE orders (id int PRIMARY KEY, customer_id int, created_at timestamptz NOT NULL,"
    " updated_at timestamp)",
    "CREATE INDEX ON orders (created_at)",
    "CREATE SCHEMA billing",
    "CREATE TABLE billing.invoices (id int, amount numeric, issued_at timestamptz)",
    "INSERT INTO customers SELECT g, 'c' || g, '2026-11-01 09:00:00+00'::timestamptz"
    " + g * interval '1 minute' FROM generate_series(1, 40) g",
    "INSERT INTO orders SELECT g, g % 40 + 1, '2026-11-21 14:00:00+00'::timestamptz"
    " + g * interval '1 second', '2026-11-21 15:00:00' FROM generate_series(1, 120) g",
    "INSERT INTO billing.invoices SELECT g, g * 10, '2026-11-20 00:00:00+00'::timestamptz"
    " + g * interval '1 hour' FROM generate_series(1, 15) g",
]


def run(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]  # the tests' own SQL


def copy_database(postgres: PostgresServer, url: str) -> str:
    """A copy of the database at `url`, as a branch would be."""
    name = f"verify_copy_{next(_copies)}"
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(url.rsplit("/", 1)[1])))
    return postgres.url(name)


@pytest.fixture
def source(postgres_url: str) -> str:
    run(postgres_url, *SCHEMA)
    return postgres_url


@pytest.fixture
def target(postgres: PostgresServer, source: str) -> str:
    return copy_database(postgres, source)


def table(report: VerificationReport, name: str, schema: str = "public"):
    return next(t for t in report.tables if (t.schema, t.table) == (schema, name))


def test_identical_copies_verify_with_exact_counts_and_equal_newest(source, target):
    report = verify_branch(target, source, compared_with="backup-20261121-142500")

    assert report.ok, report.summary()
    assert report.error is None
    assert report.compared_tables == 3
    assert [(t.schema, t.table) for t in report.tables] == [
        ("billing", "invoices"), ("public", "customers"), ("public", "orders")]
    assert all(t.exact and not t.differs for t in report.tables)
    orders = table(report, "orders")
    assert (orders.source_rows, orders.target_rows) == (120, 120)
    assert orders.newest == {"created_at": ("2026-11-21T14:02:00Z", "2026-11-21T14:02:00Z"),
                             "updated_at": ("2026-11-21T15:00:00Z", "2026-11-21T15:00:00Z")}
    assert table(report, "invoices", "billing").newest == {
        "issued_at": ("2026-11-20T15:00:00Z", "2026-11-20T15:00:00Z")}
    assert report.missing_in_target == report.extra_in_target == ()
    assert report.compared_with == "backup-20261121-142500"
    assert 0 < report.seconds < 30
    assert report.summary() == (
        "Verified 3 tables against backup-20261121-142500: row counts match (exact); "
        "newest created_at 2026-11-21T14:02:00Z (orders), the same in the source.")


def test_a_table_with_a_different_row_count_is_flagged(source, target):
    run(target, "DELETE FROM orders WHERE id <= 2")  # the oldest rows: newest stays the same

    report = verify_branch(target, source, compared_with="backup-20261121-142500")

    assert not report.ok
    orders = table(report, "orders")
    assert orders.differs
    assert (orders.source_rows, orders.target_rows) == (120, 118)
    assert orders.note == "rows 118 here, 120 in the source"
    assert [t.table for t in report.tables if t.differs] == ["orders"]
    assert report.summary().startswith(
        "1 of 3 tables differ against backup-20261121-142500: "
        "orders (rows 118 here, 120 in the source).")


def test_a_different_newest_timestamp_is_flagged(source, target):
    run(target, "DELETE FROM billing.invoices WHERE id = 15")

    report = verify_branch(target, source, compared_with="backup-x")

    invoices = table(report, "invoices", "billing")
    assert not report.ok and invoices.differs
    assert "newest issued_at 2026-11-20T14:00:00Z here, 2026-11-20T15:00:00Z in the source" \
        in invoices.note
    assert "billing.invoices (rows 14 here, 15 in the source; newest issued_at" \
        in report.summary()


def test_allowed_differences_keep_ok_but_stay_in_the_summary(source, target):
    run(source, "INSERT INTO orders VALUES (121, 1, '2026-11-21 15:30:00+00', NULL)")

    report = verify_branch(target, source, compared_with="production (live)",
                           allow_differences=True)

    assert report.ok
    orders = table(report, "orders")
    assert orders.differs
    assert orders.note == ("rows 120 here, 121 in the source; newest created_at "
                           "2026-11-21T14:02:00Z here, 2026-11-21T15:30:00Z in the source")
    assert "1 of 3 tables differ against production (live)" in report.summary()
    assert "orders (rows 120 here, 121 in the source" in report.summary()


def test_a_table_missing_in_the_target_fails_unless_differences_are_allowed(source, target):
    # Against live production a table may have been created after the restored instant:
    # it is still reported, but it does not fail the comparison.
    run(target, "DROP TABLE billing.invoices")

    strict = verify_branch(target, source, compared_with="backup-x")
    lenient = verify_branch(target, source, compared_with="production (live)",
                            allow_differences=True)

    assert not strict.ok and lenient.ok
    for report in (strict, lenient):
        assert report.missing_in_target == ("billing.invoices",)
        assert report.compared_tables == 2
        assert "Missing here: billing.invoices." in report.summary()


def test_a_table_only_in_the_target_fails_unless_differences_are_allowed(source, target):
    run(target, "CREATE TABLE scratch (id int)")

    strict = verify_branch(target, source, compared_with="backup-x")
    lenient = verify_branch(target, source, compared_with="production (live)",
                            allow_differences=True)

    assert strict.extra_in_target == lenient.extra_in_target == ("public.scratch",)
    assert not strict.ok and lenient.ok
    assert "Only here, not in the source: public.scratch." in strict.summary()


def test_nothing_compared_while_the_source_has_tables_is_not_ok(postgres, source):
    empty = postgres.create_database(f"verify_empty_{next(_copies)}")

    report = verify_branch(empty, source, compared_with="backup-x")

    assert not report.ok
    assert report.compared_tables == 0
    assert len(report.missing_in_target) == 3
    assert report.summary() == (
        "Compared 0 tables against backup-x: none of the source's tables are here. "
        "Missing here: billing.invoices, public.customers, public.orders.")


def test_mixed_case_and_spaces_in_names(postgres, postgres_url):
    run(postgres_url,
        'CREATE SCHEMA "Sales Dept"',
        'CREATE TABLE "Sales Dept"."Order Items" (id int, "Shipped_At" timestamptz)',
        'CREATE TABLE public."we""ird; DROP TABLE x" (id int)',
        'CREATE TABLE public."select" (created_at timestamptz)',
        'INSERT INTO "Sales Dept"."Order Items" SELECT g, \'2026-01-02 03:04:05+00\' '
        "FROM generate_series(1, 7) g",
        'INSERT INTO "we""ird; DROP TABLE x" VALUES (1), (2)')
    target = copy_database(postgres, postgres_url)
    run(target, 'DELETE FROM "Sales Dept"."Order Items" WHERE id = 7')

    report = verify_branch(target, postgres_url, compared_with="backup-x")

    assert {(t.schema, t.table) for t in report.tables} == {
        ("Sales Dept", "Order Items"), ("public", 'we"ird; DROP TABLE x'), ("public", "select")}
    items = table(report, "Order Items", "Sales Dept")
    assert (items.source_rows, items.target_rows, items.differs) == (7, 6, True)
    assert items.newest == {"Shipped_At": ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z")}
    assert table(report, 'we"ird; DROP TABLE x').target_rows == 2
    assert table(report, "select").newest == {"created_at": (None, None)}  # empty table
    assert "Sales Dept.Order Items (rows 6 here, 7 in the source)" in report.summary()


def test_timestamps_are_rfc3339_utc(postgres, postgres_url):
    run(postgres_url,
        "CREATE TABLE events (created_at timestamptz, seen_at timestamp, closed_at timestamptz,"
        " name_at text)",
        "INSERT INTO events VALUES ('2026-03-01 12:00:00.25+05:30', '2026-03-01 06:30:00',"
        " 'infinity', 'not a timestamp')")
    target = copy_database(postgres, postgres_url)

    report = verify_branch(target, postgres_url, compared_with="backup-x")

    assert report.ok
    assert table(report, "events").newest == {
        "created_at": ("2026-03-01T06:30:00.25Z", "2026-03-01T06:30:00.25Z"),
        "seen_at": ("2026-03-01T06:30:00Z", "2026-03-01T06:30:00Z"),  # no zone: taken as UTC
        "closed_at": ("infinity", "infinity"),
    }


def test_estimated_counts_above_the_exact_limit(postgres, source):
    run(source, "ANALYZE",
        # created after ANALYZE and kept from autovacuum: never analysed, reltuples -1
        "CREATE TABLE fresh (id int, created_at timestamptz) WITH (autovacuum_enabled = off)",
        "INSERT INTO fresh SELECT g, now() FROM generate_series(1, 5) g")
    target = copy_database(postgres, source)

    report = verify_branch(target, source, compared_with="backup-x", exact_row_limit=0)

    assert report.ok, report.summary()
    orders = table(report, "orders")
    assert not orders.exact
    assert (orders.source_rows, orders.target_rows) == (120, 120)
    # only the indexed timestamp column is read: an unindexed max would scan the table
    assert list(orders.newest) == ["created_at"]
    assert orders.note == "about 120 rows on both sides (estimated)"
    fresh = table(report, "fresh")
    assert fresh.exact and fresh.target_rows == 5
    assert "row counts match (1 exact, 3 estimated)" in report.summary()


def test_estimated_counts_that_differ_say_they_are_estimates(postgres, source):
    run(source, "ANALYZE")
    target = copy_database(postgres, source)
    run(target, "DELETE FROM orders WHERE id > 60", "VACUUM ANALYZE orders")

    report = verify_branch(target, source, compared_with="backup-x", exact_row_limit=0)

    orders = table(report, "orders")
    assert not report.ok and orders.differs and not orders.exact
    assert orders.note.startswith("rows about 60 here, about 120 in the source (estimated)")


def test_custom_checks_pass_fail_and_error(source, target):
    checks = {
        "has orders": "SELECT count(*) > 0 FROM orders",
        "number": "SELECT 3",
        "text t": "SELECT 't'::text",
        "false": "SELECT false",
        "zero": "SELECT 0",
        "null": "SELECT NULL::boolean",
        "typo": "SELECT nope FROM orders",
        "two columns": "SELECT 1, 2",
        "no row": "SELECT true WHERE false",
        "writes": "INSERT INTO orders VALUES (999, 1, now(), NULL) RETURNING true",
    }

    report = verify_branch(target, source, compared_with="backup-x", custom_checks=checks)

    results = {c.name: c for c in report.checks}
    assert list(results) == list(checks)
    assert [n for n, c in results.items() if c.passed] == ["has orders", "number", "text t"]
    assert (results["has orders"].value, results["number"].value) == ("true", "3")
    assert (results["false"].value, results["zero"].value, results["null"].value) == (
        "false", "0", None)
    assert all(results[n].error is None for n in ("has orders", "false", "zero", "null"))
    assert 'column "nope" does not exist' in results["typo"].error
    assert "2 columns" in results["two columns"].error
    assert "no row" in results["no row"].error
    assert "read-only transaction" in results["writes"].error  # checks cannot change the branch
    assert not report.ok
    assert "7 of 10 checks failed: false (got false), zero (got 0)" in report.summary()


def test_all_custom_checks_passing_keep_ok(source, target):
    report = verify_branch(target, source, compared_with="backup-x",
                           custom_checks={"orders kept": "SELECT count(*) = 120 FROM orders"})

    assert report.ok
    assert report.summary().endswith("All 1 checks passed.")


def test_the_statement_timeout_applies(source, target):
    report = verify_branch(target, source, compared_with="backup-x", statement_timeout_ms=200,
                           custom_checks={"slow": "SELECT pg_sleep(5) IS NOT NULL"})

    assert not report.ok
    assert "statement timeout" in report.checks[0].error
    assert report.seconds < 4


@pytest.mark.parametrize("make_url", [
    lambda port: f"postgresql://lifeguard:s3cret-pw-42@127.0.0.1:{port}/neondb",
    lambda port: "postgresql://lifeguard:s3cret-pw-42@[127.0.0.1/neondb",  # libpq echoes it
    lambda port: f"host=127.0.0.1 port={port} user=lifeguard password=s3cret-pw-42 dbname=x",
], ids=["closed port", "malformed URI", "keyword form"])
def test_an_unreachable_target_is_an_error_without_the_password(source, make_url):
    url = make_url(free_port())  # nothing listens there

    report = verify_branch(url, source, compared_with="backup-x", connect_timeout=2)

    assert not report.ok
    assert report.error is not None
    assert report.error.startswith("Could not connect to the branch being verified: ")
    for text in (report.error, report.summary(), json.dumps(report.to_dict())):
        assert "s3cret-pw-42" not in text
        assert url not in text and "postgresql://" not in text
    assert report.summary().startswith(
        "Verification against backup-x failed: Could not connect to the branch being verified")


def test_closed_port_error_is_plain(source):
    report = verify_branch(f"postgresql://u:pw@127.0.0.1:{free_port()}/db", source,
                           compared_with="backup-x")
    assert "Connection refused. Is the server running" in report.error
    assert report.error.endswith("accepting TCP/IP connections?")


def test_empty_source_and_empty_target_are_ok(postgres, postgres_url):
    target = postgres.create_database(f"verify_empty_{next(_copies)}")

    report = verify_branch(target, postgres_url, compared_with="backup-x")

    assert report.ok
    assert report.compared_tables == 0 and report.tables == ()
    assert report.summary() == ("Verified 0 tables against backup-x: there are no tables "
                                "here and none in the source.")


def test_extension_owned_schemas_and_tables_are_left_out(postgres, postgres_url):
    run(postgres_url,
        "CREATE EXTENSION hstore",
        "CREATE SCHEMA ext_data",
        "CREATE TABLE ext_data.config (id int)",
        "ALTER EXTENSION hstore ADD SCHEMA ext_data",
        "CREATE TABLE public.ext_member (id int)",
        "ALTER EXTENSION hstore ADD TABLE public.ext_member",
        "CREATE TABLE public.mine (id int)")
    target = copy_database(postgres, postgres_url)
    run(postgres_url, "INSERT INTO ext_data.config VALUES (1)",
        "INSERT INTO public.ext_member VALUES (1)")

    report = verify_branch(target, postgres_url, compared_with="backup-x")

    assert report.ok, report.summary()
    assert [(t.schema, t.table) for t in report.tables] == [("public", "mine")]


def test_report_round_trips_through_json(source, target):
    run(target, "DELETE FROM orders WHERE id = 1", "DROP TABLE customers",
        "CREATE TABLE extra (id int)")
    report = verify_branch(target, source, compared_with="backup-20261121-142500",
                           custom_checks={"ok": "SELECT true", "bad": "SELECT nope"})

    again = VerificationReport.from_dict(json.loads(json.dumps(report.to_dict())))

    assert again == report
    assert again.summary() == report.summary()
    assert isinstance(again.tables, tuple) and isinstance(again.checks, tuple)
    assert again.tables[0].newest == report.tables[0].newest  # tuples, not lists


def test_an_unreachable_source_is_named(target):
    report = verify_branch(target, f"postgresql://u:pw@127.0.0.1:{free_port()}/db",
                           compared_with="production (live)", connect_timeout=2)

    assert not report.ok
    assert report.error.startswith("Could not connect to the source (production (live)): ")
