"""The rules of restoring an export (bot/domain/export_restores.py), the `/restore export`
command and the plan hash that binds an export's files."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import InvalidInput
from bot.domain.export_manifest import DumpedDatabase, Manifest, TableRows
from bot.domain.export_restores import files_digest, manifest_report, place_databases
from bot.domain.requests import Plan, RequestAction
from bot.domain.restores import RestoreExport, parse_restore_command

AT = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def dumped(name: str, *tables: tuple[str, str, int], sha: str = "a" * 64) -> DumpedDatabase:
    return DumpedDatabase(name, f"{name}.dump.zst.age", 10, sha, AT, None,
                          tuple(TableRows(*t) for t in tables))


def manifest(*databases: DumpedDatabase) -> Manifest:
    return Manifest("exp1", "proj-1", "br-1", "main", AT, AT, "17.5", "18.1",
                    ("age1" + "q" * 58,), databases)


ONE, TWO = dumped("neondb", ("public", "t", 3)), dumped("analytics", ("public", "e", 5))


def test_one_database_goes_into_the_urls_database_or_its_own_name():
    assert [p.target for p in place_databases([ONE], into_database="restored",
                                              pick=None)] == ["restored"]
    assert [p.target for p in place_databases([ONE], into_database=None,
                                              pick=None)] == ["neondb"]


def test_several_need_a_server_url_or_a_pick():
    with pytest.raises(InvalidInput, match="--database NAME"):
        place_databases([ONE, TWO], into_database="x", pick=None)
    assert [p.target for p in place_databases([ONE, TWO], into_database=None,
                                              pick=None)] == ["neondb", "analytics"]
    picked = place_databases([ONE, TWO], into_database="x", pick="analytics")
    assert [(p.database.database, p.target) for p in picked] == [("analytics", "x")]
    with pytest.raises(InvalidInput, match="holds no database 'nope'"):
        place_databases([ONE, TWO], into_database=None, pick="nope")


def test_the_report_passes_only_when_every_table_matches_exactly():
    good = manifest_report([ONE], {"neondb": {("public", "t"): 3}}, seconds=0.1)
    assert good.ok and good.compared_tables == 1
    assert "against the export's manifest" in good.summary()
    off = manifest_report([ONE], {"neondb": {("public", "t"): 2}}, seconds=0.1)
    assert not off.ok and "rows 2 here, 3 in the export" in off.summary()
    extra = manifest_report([ONE], {"neondb": {("public", "t"): 3, ("public", "x"): 0}},
                            seconds=0.1)
    assert not extra.ok and extra.extra_in_target == ("public.x",)
    missing = manifest_report([ONE], {"neondb": {}}, seconds=0.1)
    assert not missing.ok and missing.missing_in_target == ("public.t",)
    other_db = manifest_report([ONE], {"neondb": {("public", "t"): 3}}, seconds=0.1,
                               extra_databases=["leftover"])
    assert not other_db.ok and "leftover" in other_db.extra_in_target[0]
    both = manifest_report([ONE, TWO], {"neondb": {("public", "t"): 3},
                                        "analytics": {("public", "e"): 5}}, seconds=0.1)
    assert both.ok and {(t.schema, t.table) for t in both.tables} == {
        ("neondb.public", "t"), ("analytics.public", "e")}
    unreadable = manifest_report([ONE], {}, seconds=0.1, errors={"neondb": "gone"})
    assert not unreadable.ok and "neondb: gone" in (unreadable.error or "")


def test_the_plan_hash_binds_the_export_and_its_files_checksums():
    base = Plan(RequestAction.RESTORE_EXPORT, "proj-1", "U0ALICE", "br-main", "main",
                "restore-20261130-0200", export_id="exp1",
                export_digest=files_digest(manifest(ONE)))
    other_file = files_digest(manifest(dumped("neondb", ("public", "t", 3), sha="b" * 64)))
    assert base.hash() != replace(base, export_digest=other_file).hash()
    assert base.hash() != replace(base, export_id="exp2").hash()
    plain = Plan(RequestAction.RESTORE_FROM_BRANCH, "p", "U", "b", "n", "t")
    assert plain.hash() == Plan(RequestAction.RESTORE_FROM_BRANCH, "p", "U", "b", "n",
                                "t").hash()


def test_restore_export_takes_an_id_and_a_reason():
    assert parse_restore_command("export exp-1_a the bucket is all we have") == RestoreExport(
        "exp-1_a", "the bucket is all we have")
    for wrong in ("export", "export ../x", "export <!channel>", "export -x"):
        with pytest.raises(InvalidInput, match="needs an export id"):
            parse_restore_command(wrong)


@given(st.text(max_size=60))
def test_any_text_after_export_is_an_id_and_reason_or_refused(text):
    try:
        parsed = parse_restore_command("export " + text)
    except InvalidInput:
        return
    assert isinstance(parsed, RestoreExport)
    assert parsed.export_id.replace("-", "").replace("_", "").isalnum()
