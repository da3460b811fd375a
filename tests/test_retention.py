"""Retention (bot/domain/retention.py): examples of the GFS policy, and a property test
against an independent reference implementation of the definition."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.backups import backup_branch_name
from bot.domain.retention import PruneCandidate, PrunePlan, RetentionPolicy, plan_prune

BERLIN = ZoneInfo("Europe/Berlin")


def backup(at: datetime, *, name: str | None = None, lifeguard: bool = True,
           default: bool = False, protected: bool = False) -> PruneCandidate:
    return PruneCandidate(name=name or backup_branch_name(at), created_at=at,
                          recorded_by_lifeguard=lifeguard, is_default=default,
                          is_protected=protected)


def daily_at_two(first: date, last: date) -> list[PruneCandidate]:
    days = (last - first).days + 1
    return [backup(datetime(first.year, first.month, first.day, 2, tzinfo=UTC)
                   + timedelta(days=i)) for i in range(days)]


def kept_days(plan: PrunePlan) -> list[str]:
    return [c.created_at.date().isoformat() for c in plan.keep]


# --- examples -----------------------------------------------------------------------

def test_a_year_of_daily_backups_keeps_the_gfs_set_with_reasons():
    candidates = daily_at_two(date(2025, 11, 22), date(2026, 11, 21))  # 365 days
    plan = plan_prune(candidates, RetentionPolicy())

    # 7 daily: 2026-11-15 … 2026-11-21. 4 weekly (newest of each ISO week; 2026-11-21 is a
    # Saturday of W47): 11-21 (W47), 11-15 (W46, Sunday), 11-08 (W45), 11-01 (W44).
    # 12 monthly (newest of each month): 11-21, 10-31, 09-30, …, 2025-12-31.
    # Overlaps: 11-21 is in all three, 11-15 is daily and weekly → 7 + 4 + 12 - 2 - 1 = 20.
    monthly = ["2026-11-21", "2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31",
               "2026-06-30", "2026-05-31", "2026-04-30", "2026-03-31", "2026-02-28",
               "2026-01-31", "2025-12-31"]
    expected = sorted({*(f"2026-11-{d}" for d in range(15, 22)),
                       "2026-11-08", "2026-11-01", *monthly}, reverse=True)
    assert kept_days(plan) == expected
    assert len(plan.keep) == 20 == 7 + 4 + 12 - 3
    assert len(plan.delete) == 365 - 20
    assert set(plan.keep) | set(plan.delete) == set(candidates)

    assert plan.reasons == {
        "backup-20261121-020000": "daily 2026-11-21, weekly 2026-W47, monthly 2026-11",
        "backup-20261120-020000": "daily 2026-11-20",
        "backup-20261119-020000": "daily 2026-11-19",
        "backup-20261118-020000": "daily 2026-11-18",
        "backup-20261117-020000": "daily 2026-11-17",
        "backup-20261116-020000": "daily 2026-11-16",
        "backup-20261115-020000": "daily 2026-11-15, weekly 2026-W46",
        "backup-20261108-020000": "weekly 2026-W45",
        "backup-20261101-020000": "weekly 2026-W44",
        "backup-20261031-020000": "monthly 2026-10",
        "backup-20260930-020000": "monthly 2026-09",
        "backup-20260831-020000": "monthly 2026-08",
        "backup-20260731-020000": "monthly 2026-07",
        "backup-20260630-020000": "monthly 2026-06",
        "backup-20260531-020000": "monthly 2026-05",
        "backup-20260430-020000": "monthly 2026-04",
        "backup-20260331-020000": "monthly 2026-03",
        "backup-20260228-020000": "monthly 2026-02",
        "backup-20260131-020000": "monthly 2026-01",
        "backup-20251231-020000": "monthly 2025-12",
    }


def test_days_without_backups_are_skipped_not_counted():
    # Backups only on Mondays: daily=3 keeps the three newest Mondays, not "the last 3 days".
    mondays = [backup(datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(weeks=i))
               for i in range(4)]
    plan = plan_prune(mondays, RetentionPolicy(daily=3, weekly=0, monthly=0))
    assert kept_days(plan) == ["2026-11-23", "2026-11-16", "2026-11-09"]
    assert kept_days(PrunePlan(plan.delete, (), {})) == ["2026-11-02"]


def test_the_newest_backup_of_a_day_is_the_one_kept():
    morning = backup(datetime(2026, 11, 21, 8, tzinfo=UTC))
    evening = backup(datetime(2026, 11, 21, 20, tzinfo=UTC))
    noon = backup(datetime(2026, 11, 21, 12, tzinfo=UTC))
    plan = plan_prune([morning, evening, noon], RetentionPolicy(daily=1, weekly=0, monthly=0))
    assert plan.keep == (evening,)
    assert plan.delete == (noon, morning)  # newest first
    assert plan.reasons == {evening.name: "daily 2026-11-21"}


def test_equal_instants_are_ordered_by_name():
    at = datetime(2026, 11, 21, 8, tzinfo=UTC)
    a, b = backup(at, name="backup-a"), backup(at, name="backup-b")
    for order in ([a, b], [b, a]):
        plan = plan_prune(order, RetentionPolicy(daily=1, weekly=0, monthly=0))
        assert plan.keep == (b,) and plan.delete == (a,)


def test_days_are_read_in_the_zone_given():
    # 23:30 UTC on the 20th is 00:30 on the 21st in Berlin (CET, UTC+1).
    late = backup(datetime(2026, 11, 20, 23, 30, tzinfo=UTC))
    morning = backup(datetime(2026, 11, 21, 10, tzinfo=UTC))
    noon_before = backup(datetime(2026, 11, 20, 12, tzinfo=UTC))
    policy = RetentionPolicy(daily=2, weekly=0, monthly=0)

    in_utc = plan_prune([late, morning, noon_before], policy)
    assert in_utc.keep == (morning, late) and in_utc.delete == (noon_before,)
    assert in_utc.reasons[late.name] == "daily 2026-11-20"

    in_berlin = plan_prune([late, morning, noon_before], policy, zone=BERLIN)
    assert in_berlin.keep == (morning, noon_before) and in_berlin.delete == (late,)
    assert in_berlin.reasons == {morning.name: "daily 2026-11-21",
                                 noon_before.name: "daily 2026-11-20"}


def test_months_are_read_in_the_zone_given():
    # 2026-10-31 23:30 UTC is 2026-11-01 00:30 in Berlin: November there, October in UTC.
    late = backup(datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    newest = backup(datetime(2026, 11, 5, 10, tzinfo=UTC))
    policy = RetentionPolicy(daily=0, weekly=0, monthly=2)
    assert plan_prune([late, newest], policy).keep == (newest, late)
    berlin = plan_prune([late, newest], policy, zone=BERLIN)
    assert berlin.keep == (newest,) and berlin.delete == (late,)


def test_iso_weeks_across_a_year_end():
    monday_w53 = backup(datetime(2026, 12, 28, 9, tzinfo=UTC))  # 2026-W53
    sunday_w53 = backup(datetime(2027, 1, 3, 9, tzinfo=UTC))  # still 2026-W53
    monday_w01 = backup(datetime(2027, 1, 4, 9, tzinfo=UTC))  # 2027-W01
    plan = plan_prune([monday_w53, sunday_w53, monday_w01],
                      RetentionPolicy(daily=0, weekly=2, monthly=0))
    assert plan.keep == (monday_w01, sunday_w53) and plan.delete == (monday_w53,)
    assert plan.reasons == {monday_w01.name: "weekly 2027-W01",
                            sunday_w53.name: "weekly 2026-W53"}

    # 2024-12-30 is a Monday of ISO week 2025-W01 but in the month 2024-12.
    dec30 = backup(datetime(2024, 12, 30, 9, tzinfo=UTC))
    plan = plan_prune([dec30], RetentionPolicy(daily=0, weekly=1, monthly=1))
    assert plan.reasons == {dec30.name: "weekly 2025-W01, monthly 2024-12"}


def test_branches_lifeguard_must_not_delete_are_kept_with_their_reason():
    at = datetime(2026, 11, 21, 8, tzinfo=UTC)
    main = backup(at - timedelta(days=400), name="main", lifeguard=False, default=True)
    dev = backup(at - timedelta(days=300), name="dev", lifeguard=False)
    pinned = backup(at - timedelta(days=200), protected=True)
    promoted = backup(at - timedelta(days=100), default=True)  # a backup made the default
    old = backup(at - timedelta(days=50))
    newest = backup(at)
    plan = plan_prune([main, dev, pinned, promoted, old, newest],
                      RetentionPolicy(daily=0, weekly=0, monthly=0))
    assert plan.delete == (old,)
    assert plan.keep == (newest, promoted, pinned, dev, main)
    assert plan.reasons == {
        "main": "default branch, not a Lifeguard backup",
        "dev": "not a Lifeguard backup",
        pinned.name: "protected",
        promoted.name: "default branch",
        newest.name: "newest backup",
    }


def test_only_lifeguard_backups_count_towards_the_periods():
    at = datetime(2026, 11, 21, 8, tzinfo=UTC)
    foreign = backup(at + timedelta(hours=1), name="dev", lifeguard=False)
    default = backup(at + timedelta(hours=2), default=True)
    ours = backup(at)
    yesterday = backup(at - timedelta(days=1))
    plan = plan_prune([foreign, default, ours, yesterday],
                      RetentionPolicy(daily=1, weekly=0, monthly=0))
    assert plan.reasons[ours.name] == "daily 2026-11-21"  # the newer foreign ones don't count
    assert plan.delete == (yesterday,)


def test_a_protected_backup_uses_its_slot():
    at = datetime(2026, 11, 21, 8, tzinfo=UTC)
    pinned = backup(at, protected=True)
    earlier = backup(at - timedelta(hours=3))
    plan = plan_prune([pinned, earlier], RetentionPolicy(daily=1, weekly=0, monthly=0))
    assert plan.reasons == {pinned.name: "protected, daily 2026-11-21"}
    assert plan.delete == (earlier,)


def test_the_newest_backup_survives_a_policy_of_zeros():
    backups = daily_at_two(date(2026, 11, 1), date(2026, 11, 21))
    plan = plan_prune(backups, RetentionPolicy(daily=0, weekly=0, monthly=0))
    assert plan.keep == (backups[-1],)
    assert plan.reasons == {backups[-1].name: "newest backup"}
    assert len(plan.delete) == 20


def test_nothing_to_prune():
    assert plan_prune([], RetentionPolicy()) == PrunePlan((), (), {})


def test_mixed_zones_of_created_at_are_compared_as_instants():
    plus_two = timezone(timedelta(hours=2))
    a = backup(datetime(2026, 11, 21, 1, tzinfo=plus_two), name="a")  # 2026-11-20 23:00 UTC
    b = backup(datetime(2026, 11, 20, 23, 30, tzinfo=UTC), name="b")
    plan = plan_prune([a, b], RetentionPolicy(daily=1, weekly=0, monthly=0))
    assert plan.keep == (b,) and plan.reasons == {"b": "daily 2026-11-20"}


@pytest.mark.parametrize("field", ["daily", "weekly", "monthly"])
@pytest.mark.parametrize("bad", [-1, 1.5, True, "7"])
def test_policy_counts_are_whole_numbers_of_zero_or_more(field, bad):
    with pytest.raises(ValueError, match=field):
        RetentionPolicy(**{field: bad})


def test_policy_describes_itself():
    assert RetentionPolicy().describe() == "7 daily, 4 weekly, 12 monthly"


def test_naive_times_and_repeated_names_are_refused():
    with pytest.raises(ValueError, match="naive"):
        plan_prune([backup(datetime(2026, 11, 21), name="x")], RetentionPolicy())
    at = datetime(2026, 11, 21, tzinfo=UTC)
    with pytest.raises(ValueError, match="twice"):
        plan_prune([backup(at, name="x"), backup(at + timedelta(1), name="x")],
                   RetentionPolicy())


# --- property: the plan equals the definition -----------------------------------------

def reference_keep(candidates: list[PruneCandidate], policy: RetentionPolicy,
                   zone) -> set[str]:
    """The definition, written differently: group the Lifeguard backups into periods, sort
    the periods, take the newest `n` periods and the newest backup in each."""
    backups = [c for c in candidates if c.recorded_by_lifeguard and not c.is_default]

    def newest(group: list[PruneCandidate]) -> PruneCandidate:
        return max(group, key=lambda c: (c.created_at.timestamp(), c.name))

    def period_keys(c: PruneCandidate) -> dict[str, tuple[int, ...]]:
        local = c.created_at.astimezone(zone)
        iso = local.isocalendar()
        return {"daily": (local.year, local.month, local.day),
                "weekly": (iso.year, iso.week),
                "monthly": (local.year, local.month)}

    kept: set[str] = set()
    for rule, count in (("daily", policy.daily), ("weekly", policy.weekly),
                        ("monthly", policy.monthly)):
        groups: dict[tuple[int, ...], list[PruneCandidate]] = {}
        for c in backups:
            groups.setdefault(period_keys(c)[rule], []).append(c)
        recent = sorted(groups, reverse=True)[:count]
        kept |= {newest(groups[key]).name for key in recent}
    if backups:
        kept.add(newest(backups).name)
    return kept


ZONES = [UTC, BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Pacific/Kiritimati"),
         ZoneInfo("Pacific/Pago_Pago"), ZoneInfo("Asia/Kolkata")]
START = datetime(2025, 1, 1)
END = datetime(2026, 12, 31)

instants = st.one_of(
    st.datetimes(min_value=START, max_value=END, timezones=st.sampled_from(ZONES)),
    # a few fixed instants make equal times (name order) and period edges likely
    st.sampled_from([datetime(2025, 12, 31, 23, 30, tzinfo=UTC),
                     datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
                     datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
                     datetime(2026, 11, 20, 23, 30, tzinfo=UTC)]))
kinds = st.sampled_from(["ours"] * 6 + ["foreign", "protected", "default", "foreign-default",
                                        "ours-default"])
histories = st.lists(st.tuples(instants, kinds), max_size=200)
policies = st.builds(RetentionPolicy, daily=st.integers(0, 10), weekly=st.integers(0, 10),
                     monthly=st.integers(0, 10))


def candidates_from(history: list[tuple[datetime, str]]) -> list[PruneCandidate]:
    return [PruneCandidate(name=f"branch-{i:03d}", created_at=at,
                           recorded_by_lifeguard=kind.startswith(("ours", "protected")),
                           is_default=kind.endswith("default"),
                           is_protected=kind == "protected")
            for i, (at, kind) in enumerate(history)]


@settings(max_examples=200, deadline=None)
@given(histories, policies, st.sampled_from(ZONES))
def test_plan_is_the_gfs_definition_and_never_deletes_what_it_must_keep(history, policy,
                                                                        zone):
    candidates = candidates_from(history)
    plan = plan_prune(candidates, policy, zone=zone)
    backups = [c for c in candidates if c.recorded_by_lifeguard and not c.is_default]

    # (a) the kept set is exactly the definition's plus what the safety rules keep
    expected = reference_keep(candidates, policy, zone)
    must_keep = {c.name for c in candidates
                 if not c.recorded_by_lifeguard or c.is_default or c.is_protected}
    kept = {c.name for c in plan.keep}
    assert kept == expected | must_keep
    assert {c.name for c in plan.keep if c in backups} == \
        expected | {c.name for c in backups if c.is_protected}
    # (b) nothing foreign, default or protected is ever deleted
    assert all(c.recorded_by_lifeguard and not c.is_default and not c.is_protected
               for c in plan.delete)
    assert must_keep <= kept
    # (c) keep and delete split the input
    assert len(plan.keep) + len(plan.delete) == len(candidates)
    assert set(plan.keep) | set(plan.delete) == set(candidates)
    assert not set(plan.keep) & set(plan.delete)
    assert set(plan.reasons) == kept and all(plan.reasons.values())
    # (d) the newest Lifeguard backup is kept
    if backups:
        assert max(backups, key=lambda c: (c.created_at, c.name)) in plan.keep
    # deterministic, newest first, whatever the input order
    for part in (plan.keep, plan.delete):
        order = [(c.created_at, c.name) for c in part]
        assert order == sorted(order, reverse=True)
    assert plan_prune(list(reversed(candidates)), policy, zone=zone) == plan
