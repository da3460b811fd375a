"""Health rules (bot/domain/health.py): every check at OK, WARN and FAIL, the edges
(WARN is strict, FAIL inclusive), unreadable inputs, and which changes raise alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.health import (
    Check,
    Level,
    Thresholds,
    changes,
    check_backup_age,
    check_branch_count,
    check_last_drill,
    check_requests,
    check_restore_window,
    check_storage,
    format_bytes,
    format_percent,
    format_span,
    overall,
)

T = Thresholds()
NOW = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)
H, D = 3600, 86400
GIB = 1024**3


def assert_advice_matches_level(check: Check) -> None:
    assert (check.advice == "") == (check.level == Level.OK)


# --- restore window: warn under 48 h, fail at 6 h or less -----------------------------

@pytest.mark.parametrize(("seconds", "level", "value"), [
    (30 * D, Level.OK, "30 d"),
    (7 * D, Level.OK, "7 d"),
    (48 * H, Level.OK, "48 h"),  # exactly at the warn line: OK (warn is strict)
    (48 * H - 60, Level.WARN, "47 h 59 min"),
    (36 * H, Level.WARN, "36 h"),
    (24 * H, Level.WARN, "24 h"),
    (6 * H + 60, Level.WARN, "6 h 1 min"),
    (6 * H, Level.FAIL, "6 h"),  # exactly at the fail line: FAIL (fail is inclusive)
    (6 * H + 59, Level.FAIL, "6 h"),  # judged as shown, to the minute
    (H, Level.FAIL, "1 h"),
    (0, Level.FAIL, "0 min"),
])
def test_restore_window(seconds, level, value):
    check = check_restore_window(seconds, T)
    assert (check.key, check.title) == ("restore_window", "Restore window")
    assert (check.level, check.value) == (level, value)
    assert check.threshold == "warn under 48 h, fail at 6 h or less"
    assert_advice_matches_level(check)


def test_restore_window_unreadable_fails():
    check = check_restore_window(None, T)
    assert (check.level, check.value) == (Level.FAIL, "unreadable")
    assert "doctor" in check.advice


def test_restore_window_advice_says_what_to_do():
    assert "history retention" in check_restore_window(24 * H, T).advice


# --- branch count: warn over 80 %, fail at 100 % or more ------------------------------

@pytest.mark.parametrize(("count", "limit", "level", "value"), [
    (0, 10, Level.OK, "0 of 10 branches (0 %)"),
    (8, 10, Level.OK, "8 of 10 branches (80 %)"),  # exactly at warn: OK
    (400, 500, Level.OK, "400 of 500 branches (80 %)"),
    (401, 500, Level.WARN, "401 of 500 branches (80.2 %)"),
    (4001, 5000, Level.WARN, "4001 of 5000 branches (80.0 %)"),  # just over, shown floored
    (9, 10, Level.WARN, "9 of 10 branches (90 %)"),
    (499, 500, Level.WARN, "499 of 500 branches (99.8 %)"),
    (10, 10, Level.FAIL, "10 of 10 branches (100 %)"),  # at the limit: FAIL
    (12, 10, Level.FAIL, "12 of 10 branches (120 %)"),
    (2, 3, Level.OK, "2 of 3 branches (66.6 %)"),
    (3, 3, Level.FAIL, "3 of 3 branches (100 %)"),
])
def test_branch_count(count, limit, level, value):
    check = check_branch_count(count, limit, T)
    assert (check.key, check.title) == ("branch_count", "Branches")
    assert (check.level, check.value) == (level, value)
    assert check.threshold == "warn over 80 %, fail at 100 % or more of the plan's limit"
    assert_advice_matches_level(check)


@pytest.mark.parametrize("limit", [None, 0])
def test_branch_count_without_a_limit_is_ok(limit):
    check = check_branch_count(9, limit, T)
    assert (check.level, check.value, check.advice) == (
        Level.OK, "9 branches (no limit reported)", "")
    assert check_branch_count(1, limit, T).value == "1 branch (no limit reported)"


@pytest.mark.parametrize("limit", [None, 10])
def test_branch_count_unreadable_fails_whatever_the_limit(limit):
    check = check_branch_count(None, limit, T)
    assert (check.level, check.value) == (Level.FAIL, "unreadable")
    assert check.advice


def test_branch_count_at_the_limit_says_backups_fail():
    assert "new backups and restores fail" in check_branch_count(10, 10, T).advice


# --- newest backup: warn over 26 h, fail at 72 h (3 d) or more ------------------------

@pytest.mark.parametrize(("age", "level", "value"), [
    (timedelta(minutes=5), Level.OK, "5 min old"),
    (timedelta(hours=20, minutes=15), Level.OK, "20 h 15 min old"),
    (timedelta(hours=26), Level.OK, "26 h old"),  # exactly at warn: OK
    (timedelta(hours=26, seconds=59), Level.OK, "26 h old"),  # judged as shown
    (timedelta(hours=26, minutes=1), Level.WARN, "26 h 1 min old"),
    (timedelta(hours=36), Level.WARN, "36 h old"),
    (timedelta(hours=71, minutes=59), Level.WARN, "71 h 59 min old"),
    (timedelta(hours=72), Level.FAIL, "3 d old"),  # exactly at fail: FAIL
    (timedelta(days=5, hours=4, minutes=30), Level.FAIL, "5 d 4 h old"),
    (timedelta(hours=-2), Level.OK, "0 min old"),  # a clock a little behind: age 0
])
def test_backup_age(age, level, value):
    check = check_backup_age(NOW - age, NOW, T)
    assert (check.key, check.title) == ("backup_age", "Newest backup")
    assert (check.level, check.value) == (level, value)
    assert check.threshold == "warn over 26 h, fail at 3 d or more"
    assert_advice_matches_level(check)


def test_no_backup_yet_fails():
    check = check_backup_age(None, NOW, T)
    assert (check.level, check.value) == (Level.FAIL, "no backup yet")
    assert "/backup now" in check.advice


def test_backup_age_needs_aware_times():
    with pytest.raises(ValueError, match="timezone-aware"):
        check_backup_age(datetime(2026, 11, 21), NOW, T)
    with pytest.raises(ValueError, match="timezone-aware"):
        check_backup_age(NOW, datetime(2026, 11, 21), T)


# --- last drill: warn over 90 d, fail at 180 d or more --------------------------------

@pytest.mark.parametrize(("ago", "level", "value"), [
    (timedelta(hours=5), Level.OK, "5 h ago"),
    (timedelta(days=30), Level.OK, "30 d ago"),
    (timedelta(days=90), Level.OK, "90 d ago"),  # exactly at warn: OK
    (timedelta(days=90, minutes=59), Level.OK, "90 d ago"),  # judged to the hour
    (timedelta(days=90, hours=1), Level.WARN, "90 d 1 h ago"),
    (timedelta(days=120), Level.WARN, "120 d ago"),
    (timedelta(days=179, hours=23), Level.WARN, "179 d 23 h ago"),
    (timedelta(days=180), Level.FAIL, "180 d ago"),  # exactly at fail: FAIL
    (timedelta(days=400), Level.FAIL, "400 d ago"),
])
def test_last_drill(ago, level, value):
    check = check_last_drill(NOW - ago, NOW, T)
    assert (check.key, check.title) == ("last_drill", "Last restore drill")
    assert (check.level, check.value) == (level, value)
    assert check.threshold == "warn over 90 d, fail at 180 d or more"
    assert_advice_matches_level(check)
    if level != Level.OK:
        assert "/drill start" in check.advice


def test_no_drill_ever_fails():
    check = check_last_drill(None, NOW, T)
    assert (check.level, check.value) == (Level.FAIL, "no successful drill recorded")
    assert "/drill start" in check.advice


# --- storage: warn over 80 %, fail at 95 % or more ------------------------------------

@pytest.mark.parametrize(("used", "quota", "level", "value"), [
    (0, 3 * GIB, Level.OK, "0 B of 3 GiB (0 %)"),
    (3 * GIB // 2, 3 * GIB, Level.OK, "1.5 GiB of 3 GiB (50 %)"),
    (int(1.2 * GIB), 3 * GIB, Level.OK, "1.2 GiB of 3 GiB (39.9 %)"),  # 39.99…: floored
    (80 * GIB, 100 * GIB, Level.OK, "80 GiB of 100 GiB (80 %)"),  # exactly at warn: OK
    (80 * GIB + 1, 100 * GIB, Level.WARN, "80 GiB of 100 GiB (80.0 %)"),
    (90 * GIB, 100 * GIB, Level.WARN, "90 GiB of 100 GiB (90 %)"),
    (95 * GIB - 1, 100 * GIB, Level.WARN, "95 GiB of 100 GiB (94.9 %)"),
    (95 * GIB, 100 * GIB, Level.FAIL, "95 GiB of 100 GiB (95 %)"),  # exactly at fail: FAIL
    (11 * GIB, 10 * GIB, Level.FAIL, "11 GiB of 10 GiB (110 %)"),
])
def test_storage(used, quota, level, value):
    check = check_storage(used, quota, T)
    assert (check.key, check.title) == ("storage", "Storage")
    assert (check.level, check.value) == (level, value)
    assert check.threshold == "warn over 80 %, fail at 95 % or more of the plan's quota"
    assert_advice_matches_level(check)


@pytest.mark.parametrize(("used", "quota", "value"), [
    (512 * 1024**2, None, "512 MiB (no quota reported)"),
    (512 * 1024**2, 0, "512 MiB (no quota reported)"),
    (None, None, "no quota reported"),
])
def test_storage_without_a_quota_is_ok(used, quota, value):
    check = check_storage(used, quota, T)
    assert (check.level, check.value, check.advice) == (Level.OK, value, "")


def test_storage_unreadable_against_a_quota_fails():
    check = check_storage(None, 3 * GIB, T)
    assert (check.level, check.value) == (Level.FAIL, "unreadable")
    assert check.advice


# --- requests: any stuck warns, any failed in the last 24 h fails ---------------------

@pytest.mark.parametrize(("failed", "stuck", "level", "value"), [
    (0, 0, Level.OK, "none failed or stuck"),
    (0, 1, Level.WARN, "1 stuck"),
    (0, 3, Level.WARN, "3 stuck"),
    (1, 0, Level.FAIL, "1 failed in the last 24 h"),
    (2, 1, Level.FAIL, "2 failed in the last 24 h, 1 stuck"),
])
def test_requests(failed, stuck, level, value):
    check = check_requests(failed, stuck, T)
    assert (check.key, check.title) == ("requests", "Requests")
    assert (check.level, check.value) == (level, value)
    assert check.threshold == ("warn if any is unfinished after 30 min, "
                               "fail if any failed in the last 24 h")
    assert_advice_matches_level(check)
    if stuck:
        assert "reconciler" in check.advice
    if failed:
        assert "/restore log" in check.advice


@pytest.mark.parametrize("call", [
    lambda: check_requests(-1, 0, T), lambda: check_requests(0, -1, T),
    lambda: check_branch_count(-1, 10, T), lambda: check_storage(-1, 10, T),
    lambda: check_restore_window(-1, T),
])
def test_negative_counts_are_programming_errors(call):
    with pytest.raises(ValueError, match="negative"):
        call()


# --- thresholds -----------------------------------------------------------------------

def test_custom_thresholds_change_levels_and_texts():
    t = Thresholds(backup_warn_hours=2, backup_fail_hours=4, stuck_after_minutes=10)
    check = check_backup_age(NOW - timedelta(hours=3), NOW, t)
    assert (check.level, check.threshold) == (Level.WARN, "warn over 2 h, fail at 4 h or more")
    assert "after 10 min" in check_requests(0, 0, t).threshold


@pytest.mark.parametrize("bad", [
    {"window_warn_hours": 4, "window_fail_hours": 6},
    {"branches_warn_pct": 100, "branches_fail_pct": 90},
    {"backup_warn_hours": 80},
    {"drill_warn_days": 200},
    {"storage_warn_pct": 96},
    {"stuck_after_minutes": 0},
    {"storage_fail_pct": -1},
    {"drill_fail_days": 1.5},
])
def test_inconsistent_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="health threshold"):
        Thresholds(**bad)


# --- text helpers -----------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 min"), (59, "0 min"), (45 * 60, "45 min"), (H, "1 h"), (90 * 60, "1 h 30 min"),
    (71 * H + 59 * 60 + 59, "71 h 59 min"), (72 * H, "3 d"), (3 * D + 90 * 60, "3 d 1 h"),
    (7 * D, "7 d"), (-5, "0 min"),
])
def test_format_span(seconds, text):
    assert format_span(seconds) == text


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"), (1024**2 - 1, "1 MiB"),
    (int(1.2 * GIB), "1.2 GiB"), (3 * GIB, "3 GiB"), (5 * 1024**4, "5 TiB"),
])
def test_format_bytes(count, text):
    assert format_bytes(count) == text


@pytest.mark.parametrize(("part", "whole", "text"), [
    (1, 2, "50 %"), (1, 3, "33.3 %"), (2, 3, "66.6 %"), (1, 1000, "0.1 %"), (1, 10000, "0.0 %"),
])
def test_format_percent(part, whole, text):
    assert format_percent(part, whole) == text


# --- overall and changes ----------------------------------------------------------------

def check(key: str, level: Level) -> Check:
    return Check(key=key, title=key, level=level, value="v", threshold="t",
                 advice="" if level == Level.OK else "do something")


def test_overall_is_the_worst_level():
    assert overall([]) == Level.OK
    assert overall([check("a", Level.OK), check("b", Level.OK)]) == Level.OK
    assert overall([check("a", Level.WARN), check("b", Level.OK)]) == Level.WARN
    assert overall([check("a", Level.WARN), check("b", Level.FAIL),
                    check("c", Level.OK)]) == Level.FAIL
    assert overall(iter([check("a", Level.FAIL), check("b", Level.WARN)])) == Level.FAIL


def test_first_run_reports_only_what_is_not_ok():
    checks = [check("a", Level.OK), check("b", Level.WARN), check("c", Level.FAIL)]
    assert changes({}, checks) == [(checks[1], None), (checks[2], None)]


def test_later_runs_report_only_changes():
    previous = {"a": Level.OK, "b": Level.WARN, "c": Level.FAIL, "d": Level.WARN}
    checks = [check("a", Level.OK), check("b", Level.WARN), check("c", Level.WARN),
              check("d", Level.FAIL)]
    assert changes(previous, checks) == [(checks[2], Level.FAIL), (checks[3], Level.WARN)]
    assert changes({c.key: c.level for c in checks}, checks) == []


def test_back_to_ok_is_a_change():
    now_ok = check("a", Level.OK)
    assert changes({"a": Level.FAIL}, [now_ok]) == [(now_ok, Level.FAIL)]
    assert changes({"a": Level.WARN}, [now_ok]) == [(now_ok, Level.WARN)]


def test_new_checks_beside_known_ones_and_stored_strings():
    previous = {"a": "warn"}  # as read back from the store
    checks = [check("a", Level.WARN), check("new-ok", Level.OK), check("new", Level.FAIL)]
    result = changes(previous, checks)  # type: ignore[arg-type]
    assert result == [(checks[2], None)]
    changed = changes({"a": "fail"}, [checks[0]])  # type: ignore[dict-item]
    assert changed == [(checks[0], Level.FAIL)] and type(changed[0][1]) is Level


def test_checks_no_longer_run_are_not_reported():
    assert changes({"gone": Level.FAIL}, [check("a", Level.OK)]) == []


def test_repeated_keys_are_refused():
    with pytest.raises(ValueError, match="twice"):
        changes({}, [check("a", Level.OK), check("a", Level.WARN)])


def test_a_full_report_at_defaults():
    checks = [
        check_restore_window(7 * D, T),
        check_branch_count(9, 10, T),
        check_backup_age(NOW - timedelta(hours=3), NOW, T),
        check_last_drill(None, NOW, T),
        check_storage(int(1.2 * GIB), 3 * GIB, T),
        check_requests(0, 0, T),
    ]
    assert [c.level for c in checks] == [Level.OK, Level.WARN, Level.OK, Level.FAIL,
                                         Level.OK, Level.OK]
    assert len({c.key for c in checks}) == 6
    assert overall(checks) == Level.FAIL
    assert [c.key for c, _ in changes({}, checks)] == ["branch_count", "last_drill"]
