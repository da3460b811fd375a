"""Instants: which ones Lifeguard can represent, how one is shown to people, and the
restore window an instant must fall in.

The `<when>` texts that name an instant are read by bot/domain/when.py; zone names and
local times by bot/domain/zones.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from bot.domain.errors import InvalidInput
from bot.domain.text import escape

# What `datetime` can represent: no restore window reaches beyond these.
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
_NO_HISTORY = "Neon no longer keeps the history that far back"
_OLDER_DATA = escape("For older data, restore from a backup branch with "
                     "`/restore from <branch>` (`/backup list` shows them).")
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT",
                       "Universal", "Zulu"})


def format_offset(offset: timedelta | None) -> str:
    """A UTC offset as ±HH:MM (no offset: +00:00)."""
    if offset is None:
        return "+00:00"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def require_aware(value: datetime, what: str) -> None:
    """ValueError (a programming error, not a person's) for a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def _is_utc(zone: tzinfo) -> bool:
    return zone is UTC or getattr(zone, "key", None) in _UTC_KEYS


def _clock_text(value: datetime) -> str:
    shown = f"{value:%H:%M:%S}"
    if value.microsecond:
        shown += f".{value:%f}"
    return shown


def describe_instant(instant: datetime, zone: tzinfo) -> str:
    """`2026-11-21 14:25:00 UTC (15:25:00 CET, Europe/Berlin)`: the instant in UTC and in the
    requester's zone (with the local date too when it is not the UTC date)."""
    require_aware(instant, "instants")
    utc = instant.astimezone(UTC)
    shown = f"{utc.date().isoformat()} {_clock_text(utc)} UTC"
    if _is_utc(zone):
        return shown
    try:
        local = utc.astimezone(zone)
    except (OverflowError, ValueError):
        return shown  # within a few hours of the calendar's ends: no local date to show
    local_text = _clock_text(local)
    if local.date() != utc.date():
        local_text = f"{local.date().isoformat()} {local_text}"
    abbreviation = local.tzname() or format_offset(local.utcoffset())
    name = getattr(zone, "key", None)
    if isinstance(name, str) and name and name != abbreviation:
        return f"{shown} ({local_text} {abbreviation}, {name})"
    return f"{shown} ({local_text} {abbreviation})"


def _length(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def check_restore_window(instant: datetime, *, now: datetime, window_seconds: int,
                         zone: tzinfo) -> None:
    """Raise InvalidInput unless `now - window_seconds <= instant <= now`."""
    require_aware(instant, "instants")
    require_aware(now, "now")
    if window_seconds < 0:
        raise ValueError("the restore window cannot be negative")
    start = now - timedelta(seconds=window_seconds)
    window = (f"The project's restore window (the last {_length(window_seconds)}) is from "
              f"{describe_instant(start, zone)} to {describe_instant(now, zone)}.")
    if instant > now:
        raise InvalidInput(f"{describe_instant(instant, zone)} is in the future. {window}")
    if instant < start:
        raise InvalidInput(f"{describe_instant(instant, zone)} is outside the restore window: "
                           f"{_NO_HISTORY}. {window} {_OLDER_DATA}")


def beyond_the_calendar(shown: str, *, after: bool) -> InvalidInput:
    """The answer for an instant that cannot be represented (before year 1 or after year
    9999 in UTC): worded as for an instant outside the restore window, which it is."""
    if after:
        return InvalidInput(
            f"{shown} is in the future: a restore reaches back into the project's restore "
            "window, which ends now. It is also beyond the range of instants Lifeguard can "
            f"represent (up to {describe_instant(LAST_INSTANT, UTC)}).")
    return InvalidInput(
        f"{shown} is outside the restore window, and outside the range of instants Lifeguard "
        f"can represent (from {describe_instant(FIRST_INSTANT, UTC)}): {_NO_HISTORY}. "
        f"{_OLDER_DATA}")


def instant_from_timestamp(seconds: int) -> datetime:
    """The instant of a Unix time (as Slack's date-time picker sends it), in UTC; an
    instant beyond the calendar gets the same answer as one outside the restore window."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        raise beyond_the_calendar("The date and time picked",
                                  after=seconds > 0) from None
