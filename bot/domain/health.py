"""Health checks: each one is OK, WARN or FAIL, with its value and threshold shown.

Edges, the same for every check:

- WARN is strict: a value exactly at the warn line is OK ("warn over 80 %": 80 % is OK,
  "warn under 48 h": 48 h is OK).
- FAIL is inclusive: a value exactly at the fail line fails ("fail at 100 % or more": a
  plan exactly at its branch limit fails, because the next backup cannot be created).
- Times are judged as they are shown: to the minute below 3 days, to the hour from 3 days
  on (an age of 26 h 0 min 40 s is shown and judged as 26 h). Percentages are judged
  exactly and shown floored to one decimal when not whole (80.04 % is shown "80.0 %").
- A value Lifeguard could not read fails (fail closed), except a limit or quota Neon does
  not report: then there is nothing to be near, and the check is OK and says so.

Alerts go out when a check changes level (`changes`), not on every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from fractions import Fraction

from bot.domain.text import escape


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


SEVERITY = {Level.OK: 0, Level.WARN: 1, Level.FAIL: 2}

RESTORE_WINDOW = "restore_window"
BRANCH_COUNT = "branch_count"
BACKUP_AGE = "backup_age"
LAST_DRILL = "last_drill"
STORAGE = "storage"
REQUESTS = "requests"

UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Check:
    key: str  # stable: alerts compare levels by key from run to run
    title: str
    level: Level
    value: str  # human text with units: "36 h", "9 of 10 branches (90 %)"
    threshold: str  # "warn under 48 h, fail at 6 h or less"
    advice: str  # what to do when not OK; '' when OK


@dataclass(frozen=True)
class Thresholds:
    window_warn_hours: int = 48
    window_fail_hours: int = 6
    branches_warn_pct: int = 80
    branches_fail_pct: int = 100
    backup_warn_hours: int = 26
    backup_fail_hours: int = 72
    drill_warn_days: int = 90
    drill_fail_days: int = 180
    storage_warn_pct: int = 80
    storage_fail_pct: int = 95
    stuck_after_minutes: int = 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"health threshold {f.name} must be a whole number of 0 or "
                                 f"more (got {value!r})")
        if self.stuck_after_minutes == 0:
            raise ValueError("health threshold stuck_after_minutes must be more than 0")
        pairs = (("window_fail_hours", "window_warn_hours"),  # smaller is worse
                 ("branches_warn_pct", "branches_fail_pct"),
                 ("backup_warn_hours", "backup_fail_hours"),
                 ("drill_warn_days", "drill_fail_days"),
                 ("storage_warn_pct", "storage_fail_pct"))
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"health threshold {low} ({getattr(self, low)}) must not be "
                                 f"more than {high} ({getattr(self, high)})")


# --- text ---------------------------------------------------------------------------

_MINUTE, _HOUR, _DAY = 60, 3600, 86400


def shown_seconds(seconds: float) -> int:
    """The span as shown and judged: whole minutes below 3 days, whole hours from then on."""
    whole = max(0, int(seconds))
    unit = _MINUTE if whole < 3 * _DAY else _HOUR
    return whole - whole % unit


def format_span(seconds: float) -> str:
    """`45 min`, `36 h`, `26 h 30 min`, `7 d`, `91 d 3 h` (floored, see shown_seconds)."""
    whole = shown_seconds(seconds)
    if whole < _HOUR:
        return f"{whole // _MINUTE} min"
    if whole < 3 * _DAY:
        hours, minutes = divmod(whole // _MINUTE, 60)
        return f"{hours} h" if not minutes else f"{hours} h {minutes} min"
    days, hours = divmod(whole // _HOUR, 24)
    return f"{days} d" if not hours else f"{days} d {hours} h"


def format_percent(part: int, whole: int) -> str:
    """`90 %`; `80.2 %` (floored to one decimal) when not whole."""
    exact = Fraction(part * 100, whole)
    if exact.denominator == 1:
        return f"{exact.numerator} %"
    tenths = exact.numerator * 10 // exact.denominator
    return f"{tenths // 10}.{tenths % 10} %"


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(count: int) -> str:
    """`512 B`, `1.2 GiB`, `3 GiB` (binary units, one decimal, no trailing `.0`)."""
    size, unit = float(count), 0
    while unit < len(_BYTE_UNITS) - 1 and round(size, 1) >= 1024:
        size, unit = size / 1024, unit + 1
    text = f"{size:.1f}".removesuffix(".0") if unit else str(count)
    return f"{text} {_BYTE_UNITS[unit]}"


def _span_of_hours(hours: int) -> str:
    return format_span(hours * _HOUR)


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def _not_negative(value: int, what: str) -> None:
    if value < 0:
        raise ValueError(f"{what} cannot be negative (got {value})")


def _over(value: Fraction | int, warn: Fraction | int, fail: Fraction | int) -> Level:
    """Larger is worse: WARN strictly over warn, FAIL at fail or more."""
    if value >= fail:
        return Level.FAIL
    return Level.WARN if value > warn else Level.OK


def _under(value: int, warn: int, fail: int) -> Level:
    """Smaller is worse: WARN strictly under warn, FAIL at fail or less."""
    if value <= fail:
        return Level.FAIL
    return Level.WARN if value < warn else Level.OK


def _check(key: str, title: str, level: Level, value: str, threshold: str,
           advice: Mapping[Level, str]) -> Check:
    return Check(key=key, title=title, level=level, value=value, threshold=threshold,
                 advice="" if level == Level.OK else advice[level])


# --- the checks -----------------------------------------------------------------------

def check_restore_window(seconds: int | None, t: Thresholds) -> Check:
    """The project's history retention (how far back a point-in-time restore reaches).
    None (Lifeguard could not read it) fails."""
    threshold = (f"warn under {_span_of_hours(t.window_warn_hours)}, "
                 f"fail at {_span_of_hours(t.window_fail_hours)} or less")
    title = "Restore window"
    if seconds is None:
        return _check(RESTORE_WINDOW, title, Level.FAIL, UNREADABLE, threshold, {
            Level.FAIL: "Lifeguard could not read the project's history retention from Neon, "
                        "so it cannot tell how far back a restore reaches. Run "
                        "`python -m bot doctor` to check the Neon connection."})
    _not_negative(seconds, "the restore window")
    shown = shown_seconds(seconds)
    level = _under(shown, t.window_warn_hours * _HOUR, t.window_fail_hours * _HOUR)
    advice = (f"A mistake noticed more than {format_span(shown)} later can no longer be "
              "undone with a point-in-time restore. Raise the history retention in the Neon "
              "console (project settings) if the plan allows, and keep backups frequent.")
    return _check(RESTORE_WINDOW, title, level, format_span(shown), threshold, {
        Level.WARN: "The restore window is short. " + advice,
        Level.FAIL: "The restore window is almost gone. " + advice})


def check_branch_count(count: int | None, limit: int | None, t: Thresholds) -> Check:
    """Branches against the plan's limit. A count Lifeguard could not read fails (whatever
    the limit); a limit Neon does not report (None, or 0 or less) is OK."""
    threshold = (f"warn over {t.branches_warn_pct} %, "
                 f"fail at {t.branches_fail_pct} % or more of the plan's limit")
    title = "Branches"
    if count is None:
        return _check(BRANCH_COUNT, title, Level.FAIL, UNREADABLE, threshold, {
            Level.FAIL: "Lifeguard could not list the project's branches in Neon. Run "
                        "`python -m bot doctor` to check the Neon connection."})
    _not_negative(count, "the branch count")
    noun = "branch" if count == 1 else "branches"
    if limit is None or limit <= 0:
        return _check(BRANCH_COUNT, title, Level.OK, f"{count} {noun} (no limit reported)",
                      threshold, {})
    level = _over(Fraction(count * 100, limit), t.branches_warn_pct, t.branches_fail_pct)
    value = f"{count} of {limit} branches ({format_percent(count, limit)})"
    advice = escape("Backups are branches and count against the plan's limit. Delete old "
                    "backups (`/backup list`, `/backup delete <branch>`) or keep fewer with "
                    "the retention policy.")
    return _check(BRANCH_COUNT, title, level, value, threshold, {
        Level.WARN: "The project is getting near its branch limit. " + advice,
        Level.FAIL: "The project is at its branch limit: new backups and restores fail "
                    "until branches are deleted. " + advice})


def check_backup_age(newest: datetime | None, now: datetime, t: Thresholds) -> Check:
    """Age of the newest backup. None (no backup yet) fails; a time in the future is 0."""
    threshold = (f"warn over {_span_of_hours(t.backup_warn_hours)}, "
                 f"fail at {_span_of_hours(t.backup_fail_hours)} or more")
    title = "Newest backup"
    _aware(now, "now")
    if newest is None:
        return _check(BACKUP_AGE, title, Level.FAIL, "no backup yet", threshold, {
            Level.FAIL: "There is no backup yet. Take one with `/backup now` and check that "
                        "the backup schedule is set."})
    _aware(newest, "the newest backup's time")
    shown = shown_seconds((now - newest).total_seconds())
    level = _over(shown, t.backup_warn_hours * _HOUR, t.backup_fail_hours * _HOUR)
    advice = ("Check that the scheduler is running (`python -m bot doctor`) and take a "
              "backup now with `/backup now`.")
    return _check(BACKUP_AGE, title, level, f"{format_span(shown)} old", threshold, {
        Level.WARN: "The newest backup is older than the schedule should allow. " + advice,
        Level.FAIL: "Backups have stopped. " + advice})


def check_last_drill(last_success: datetime | None, now: datetime, t: Thresholds) -> Check:
    """Time since the last successful restore drill. Never (None) fails."""
    threshold = (f"warn over {t.drill_warn_days} d, fail at {t.drill_fail_days} d or more")
    title = "Last restore drill"
    _aware(now, "now")
    if last_success is None:
        return _check(LAST_DRILL, title, Level.FAIL, "no successful drill recorded",
                      threshold, {
            Level.FAIL: "No restore drill has succeeded yet, so nobody knows a restore "
                        "works. Run `/drill start`."})
    _aware(last_success, "the last drill's time")
    shown = shown_seconds((now - last_success).total_seconds())
    level = _over(shown, t.drill_warn_days * _DAY, t.drill_fail_days * _DAY)
    advice = "Run `/drill start` to prove that a restore still works."
    return _check(LAST_DRILL, title, level, f"{format_span(shown)} ago", threshold, {
        Level.WARN: "The last successful restore drill is getting old. " + advice,
        Level.FAIL: "No restore drill has succeeded for a long time. " + advice})


def check_storage(used_bytes: int | None, quota_bytes: int | None, t: Thresholds) -> Check:
    """Storage against the plan's quota. No quota reported (None, or 0 or less) is OK; a
    usage Lifeguard could not read against a known quota fails."""
    threshold = (f"warn over {t.storage_warn_pct} %, "
                 f"fail at {t.storage_fail_pct} % or more of the plan's quota")
    title = "Storage"
    if used_bytes is not None:
        _not_negative(used_bytes, "the storage used")
    if quota_bytes is None or quota_bytes <= 0:
        value = ("no quota reported" if used_bytes is None
                 else f"{format_bytes(used_bytes)} (no quota reported)")
        return _check(STORAGE, title, Level.OK, value, threshold, {})
    if used_bytes is None:
        return _check(STORAGE, title, Level.FAIL, UNREADABLE, threshold, {
            Level.FAIL: "Lifeguard could not read the project's storage use from Neon. Run "
                        "`python -m bot doctor` to check the Neon connection."})
    level = _over(Fraction(used_bytes * 100, quota_bytes), t.storage_warn_pct,
                  t.storage_fail_pct)
    value = (f"{format_bytes(used_bytes)} of {format_bytes(quota_bytes)} "
             f"({format_percent(used_bytes, quota_bytes)})")
    advice = ("Delete old backups (`/backup list`), keep fewer with the retention policy, "
              "or move to a plan with more storage.")
    return _check(STORAGE, title, level, value, threshold, {
        Level.WARN: "Storage is getting near the plan's quota. " + advice,
        Level.FAIL: "Storage is at the plan's quota or about to reach it; when it is "
                    "reached, writes stop. " + advice})


def check_requests(failed_recently: int, stuck: int, t: Thresholds) -> Check:
    """Change requests: any failed in the last 24 h fails; any stuck (unfinished for over
    stuck_after_minutes) warns. The caller counts both."""
    _not_negative(failed_recently, "the count of failed requests")
    _not_negative(stuck, "the count of stuck requests")
    threshold = (f"warn if any is unfinished after {t.stuck_after_minutes} min, "
                 "fail if any failed in the last 24 h")
    level = Level.FAIL if failed_recently else Level.WARN if stuck else Level.OK
    parts = []
    if failed_recently:
        parts.append(f"{failed_recently} failed in the last 24 h")
    if stuck:
        parts.append(f"{stuck} stuck")
    value = ", ".join(parts) or "none failed or stuck"
    stuck_advice = ("Requests that do not move usually mean the reconciler is stopped: check "
                    "`/restore status` and `python -m bot doctor`.")
    failed_advice = escape("See `/restore log <id>` for what failed, then retry or ask for "
                           "help.")
    return _check(REQUESTS, "Requests", level, value, threshold, {
        Level.WARN: stuck_advice,
        Level.FAIL: failed_advice + (" " + stuck_advice if stuck else "")})


# --- summaries and alerts -------------------------------------------------------------

def overall(checks: Iterable[Check]) -> Level:
    """The worst level; OK when there are no checks."""
    return max((c.level for c in checks), key=SEVERITY.__getitem__, default=Level.OK)


def changes(previous: Mapping[str, Level], checks: Iterable[Check]
            ) -> list[tuple[Check, Level | None]]:
    """The checks to alert on, in the order given, each with its previous level: those
    whose level differs from the previous run's (a return to OK is a change), and those
    never seen before (previous None) only when they are not OK. Raises ValueError when a
    key repeats or a previous level is not a Level."""
    result: list[tuple[Check, Level | None]] = []
    keys: set[str] = set()
    for check in checks:
        if check.key in keys:
            raise ValueError(f"health check {check.key!r} appears twice")
        keys.add(check.key)
        before = previous.get(check.key)
        if before is None:
            if check.level != Level.OK:
                result.append((check, None))
            continue
        before = Level(before)
        if before != check.level:
            result.append((check, before))
    return result
