"""Instants: the `<when>` of `/restore <when> [reason]`, the restore window, and how an
instant is shown to people.

The grammar (case-insensitive; the parts are separated by whitespace unless shown joined):

    <when>   ::= <date>T<time>[<zoff>] [<zone>]     RFC 3339: 2026-01-13T14:25:00Z,
                                                     2026-01-13T14:25:00.250+01:00
               | <date> <time>[<zoff>] [<zone>]     2026-01-13 14:25, 2026-01-13 14:25:30 UTC,
                                                     2026-01-13 14:25 Europe/Berlin
               | <time>[<zoff>] [<zone>]            14:25, 14:25:30 (today in that zone)
               | <n> <unit> ago | <n><unit> ago     30 minutes ago, 2h ago, 1 day ago
               | a minute ago | an hour ago | a day ago
    <date>   ::= YYYY-MM-DD
    <time>   ::= H:MM | HH:MM | HH:MM:SS | HH:MM:SS.fraction    (24-hour clock)
    <zoff>   ::= Z | +HH:MM | -HH:MM                  (written right after the time)
    <zone>   ::= <zoff> | UTC | an IANA name Area/Location (Europe/Berlin, America/New_York)
    <unit>   ::= minute(s) | min(s) | m | hour(s) | hr(s) | h | day(s) | d
    <n>      ::= a whole number, at most 100000

Without a zone, a date and time (or a bare time) is read in the requester's Slack time zone;
a bare time means today in the zone it is read in. A local time that does not exist
(skipped by a daylight-saving change) or happens twice (the repeated hour) is refused with
what to write instead: nothing is guessed.

Abbreviations (CET, EST, PST …), single-word zone names (Japan, GMT …), Etc/GMT±N (whose
sign is inverted) and offsets written otherwise than ±HH:MM are refused rather than being
taken as the start of the reason, so `14:25 EST` never silently means 14:25 in the
requester's zone.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from itertools import islice
from zoneinfo import ZoneInfo, available_timezones

from bot.domain.errors import InvalidInput
from bot.domain.text import escape

WHEN_FORMATS = (
    "`2026-01-13T14:25:00Z` (RFC 3339, with Z or an offset such as +01:00), "
    "`2026-01-13 14:25[:SS] [zone]` (zone: an IANA name such as Europe/Berlin, UTC, Z or "
    "+01:00; without one, your Slack time zone), `14:25[:SS]` (today, in your Slack time "
    "zone) or `30 minutes ago` (also `2 hours ago`, `1 day ago`)"
)

MAX_AGO_AMOUNT = 100_000
# What `datetime` can represent: no restore window reaches beyond these.
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
_NO_HISTORY = "Neon no longer keeps the history that far back"
_OLDER_DATA = ("For older data, restore from a backup branch with `/restore from <branch>` "
               "(`/backup list` shows them).")

_DATE = r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
_TIME = (r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})"
         r"(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?")
_ATTACHED = r"(?P<zone>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
_DATE_TOKEN = re.compile(_DATE)
_DATETIME_TOKEN = re.compile(_DATE + "[Tt]" + _TIME + _ATTACHED)
_TIME_TOKEN = re.compile(_TIME + _ATTACHED)
_OFFSET = re.compile(r"(?P<sign>[+-])(?P<hours>[0-9]{2}):(?P<minutes>[0-9]{2})")
# Offsets written some other way (+1, +0100, UTC+1, GMT-05:00, +25:00): refused, not reason.
_OFFSET_LIKE = re.compile(r"(?:utc|gmt|ut)?[+\-−][0-9]{1,4}(?::[0-9]{1,2})?", re.IGNORECASE)
_ETC_GMT = re.compile(r"etc/gmt[+-][0-9]+", re.IGNORECASE)
_AMPM = re.compile(r"[ap]\.?m\.?", re.IGNORECASE)
_AMPM_TIME = re.compile(r"[0-9]{1,2}(?::[0-9]{2}){0,2}\s*[ap]\.?m\.?", re.IGNORECASE)
_COMPACT_AGO = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[a-z]+)", re.IGNORECASE)
_NUMBER = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"\S+")

_UNIT_SECONDS = {
    "minute": 60, "minutes": 60, "min": 60, "mins": 60, "m": 60,
    "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
}
_ARTICLE_UNITS = {("a", "minute"): 60, ("an", "hour"): 3600, ("a", "day"): 86400}
# The IANA database's areas: an Area/Location word is taken as a zone (and refused if unknown).
_AREAS = frozenset({"africa", "america", "antarctica", "arctic", "asia", "atlantic",
                    "australia", "brazil", "canada", "chile", "etc", "europe", "indian",
                    "mexico", "pacific", "us"})
_ABBREVIATIONS = frozenset({
    "ACDT", "ACST", "AEDT", "AEST", "AKDT", "AKST", "AST", "AWST", "BST", "CAT", "CDT",
    "CEST", "CET", "CST", "EAT", "EDT", "EEST", "EET", "EST", "GMT", "HKT", "HST", "IDT",
    "IST", "JST", "KST", "MDT", "MSK", "MST", "NZDT", "NZST", "PDT", "PHT", "PKT", "PST",
    "SAST", "SGT", "UCT", "UT", "WAT", "WEST", "WET", "WIB",
})
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT",
                       "Universal", "Zulu"})
_ZONE_HELP = ("write an IANA name of the form Area/City (such as Europe/Berlin or "
              "America/New_York), UTC, Z, or an offset such as +01:00")


def echo(text: str, limit: int = 60) -> str:
    """Some of what a person typed, safe to show inside `code` in Slack: shortened, with
    control characters, backticks and Slack's special characters (& < >) neutralised."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    shown = "".join("?" if unicodedata.category(c).startswith("C") else c for c in shown)
    return escape(shown).replace("`", "'")


# --- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _When:
    """A syntactically valid <when>, not yet resolved against now and the requester's zone."""

    kind: str  # "absolute" (date and time), "today" (time only) or "ago"
    day: date | None = None
    clock: time | None = None
    zone: tzinfo | None = None  # given in the text; None: the requester's zone
    ago: timedelta | None = None


@lru_cache(maxsize=1)
def _zone_keys() -> dict[str, str]:
    """Area/Location zone names, lower-cased, to their spelling in the database."""
    try:
        keys = available_timezones()
    except (OSError, ValueError):  # pragma: no cover - no time zone database at all
        keys = set()
    return {key.lower(): key for key in keys
            if "/" in key and key.split("/")[0].lower() in _AREAS}


@lru_cache(maxsize=1)
def _single_word_zones() -> frozenset[str]:
    try:
        return frozenset(key for key in available_timezones() if "/" not in key)
    except (OSError, ValueError):  # pragma: no cover
        return frozenset()


def _format_offset(offset: timedelta | None) -> str:
    if offset is None:
        return "+00:00"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _zone_name(zone: tzinfo) -> str:
    key = getattr(zone, "key", None)
    if isinstance(key, str) and key:
        return key
    return str(zone)


def _offset_zone(token: str) -> timezone | None:
    match = _OFFSET.fullmatch(token)
    if not match:
        return None
    hours, minutes = int(match["hours"]), int(match["minutes"])
    if hours > 23 or minutes > 59:
        raise InvalidInput(f"`{echo(token)}` is not a UTC offset: hours go up to 23 and "
                           "minutes up to 59, such as +05:30 or -08:00.")
    offset = timedelta(hours=hours, minutes=minutes)
    if not offset:
        return UTC
    return timezone(-offset if match["sign"] == "-" else offset)


def _zone(token: str) -> tzinfo | None:
    """The zone `token` names; None when it is not a zone at all (so it starts the reason).

    Raises InvalidInput for things that look like a zone but are not accepted, so that they
    are never silently taken as part of the reason."""
    lowered = token.lower()
    if lowered in ("z", "utc"):
        return UTC
    offset = _offset_zone(token)
    if offset is not None:
        return offset
    if _OFFSET_LIKE.fullmatch(token):
        raise InvalidInput(f"`{echo(token)}` is not an offset Lifeguard reads: write it as "
                           "±HH:MM, such as +01:00 or -05:00.")
    if "/" in token and token.split("/")[0].lower() in _AREAS:
        if _ETC_GMT.fullmatch(token):
            raise InvalidInput(
                f"`{echo(token)}` is refused because its sign is inverted (Etc/GMT+5 means "
                "five hours behind UTC); write the offset instead, such as -05:00.")
        key = _zone_keys().get(lowered)
        if key is None:
            raise InvalidInput(f"`{echo(token)}` is not a time zone Lifeguard knows; "
                               f"{_ZONE_HELP}.")
        try:
            return ZoneInfo(key)
        except (OSError, ValueError) as error:  # pragma: no cover - broken database
            raise InvalidInput(f"The time zone `{echo(token)}` could not be loaded; "
                               f"{_ZONE_HELP}.") from error
    if token in _ABBREVIATIONS or token in _single_word_zones():
        raise InvalidInput(f"`{echo(token)}` is not accepted as a time zone (abbreviations "
                           f"and single-word names are ambiguous); {_ZONE_HELP}.")
    return None


def _clock(match: re.Match[str], token: str) -> time:
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"] or 0)
    fraction = match["fraction"] or ""
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidInput(f"`{echo(token)}` is not a time of day: write a 24-hour time from "
                           "00:00 to 23:59:59, such as 14:25.")
    return time(hour, minute, second, micro)


def _day(match: re.Match[str], token: str) -> date:
    try:
        return date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError as error:
        raise InvalidInput(f"`{echo(token)}` is not a date ({error}); write YYYY-MM-DD, "
                           "such as 2026-01-13.") from error


def _looks_like_date_or_time(token: str) -> bool:
    return bool(_DATE_TOKEN.fullmatch(token) or _DATETIME_TOKEN.fullmatch(token)
                or _TIME_TOKEN.fullmatch(token))


def _parse_ago(words: list[str]) -> tuple[timedelta, int] | None:
    """`N unit ago`, `Nunit ago` or `a|an unit ago` at the start: (how long, tokens used)."""
    lowered = [w.lower() for w in words[:3]]
    first = lowered[0]
    amount_text: str | None = None
    unit: str | None = None
    used = 0
    if len(lowered) >= 3 and (first, lowered[1]) in _ARTICLE_UNITS and lowered[2] == "ago":
        return timedelta(seconds=_ARTICLE_UNITS[(first, lowered[1])]), 3
    if _NUMBER.fullmatch(first):
        amount_text = first
        if len(lowered) >= 2 and lowered[1] == "ago":
            raise InvalidInput(f"`{echo(words[0])} ago` needs a unit: write such as "
                               "`30 minutes ago`, `2 hours ago` or `1 day ago`.")
        if len(lowered) < 2:
            return None
        unit, used = lowered[1], 2
        if unit not in _UNIT_SECONDS:
            if len(lowered) >= 3 and lowered[2] == "ago":
                raise InvalidInput(f"`{echo(words[1])}` is not a unit Lifeguard reads in "
                                   "`… ago`: use minutes, hours or days.")
            return None
    else:
        compact = _COMPACT_AGO.fullmatch(first)
        if not compact:
            return None
        amount_text, unit, used = compact["amount"], compact["unit"], 1
        if unit not in _UNIT_SECONDS:
            if len(lowered) >= 2 and lowered[1] == "ago":
                raise InvalidInput(f"`{echo(words[0])}` is not an amount Lifeguard reads in "
                                   "`… ago`: use minutes, hours or days, such as `30m ago`.")
            return None
    if len(lowered) <= used or lowered[used] != "ago":
        shown = " ".join(words[:used])
        raise InvalidInput(f"`{echo(shown)}` needs `ago` after it to be a time: write such "
                           f"as `{echo(shown)} ago`.")
    if len(amount_text) > 6 or int(amount_text) > MAX_AGO_AMOUNT:
        raise InvalidInput(f"`{echo(amount_text)}` is too far back: the amount in `… ago` is "
                           f"at most {MAX_AGO_AMOUNT}.")
    return timedelta(seconds=int(amount_text) * _UNIT_SECONDS[unit]), used + 1


def _parse(text: str) -> tuple[_When, list[str], str]:
    """The <when> at the start of `text`, the tokens it used, and the rest of the text."""
    tokens = [(m.group(), m.end()) for m in islice(_TOKEN.finditer(text), 5)]
    if not tokens:
        raise InvalidInput(f"No time was given. Accepted: {WHEN_FORMATS}.")
    words = [word for word, _ in tokens]

    def rest_after(count: int) -> str:
        return text[tokens[count - 1][1]:].strip()

    first = words[0]
    ago = _parse_ago(words)
    if ago is not None:
        delta, used = ago
        return _When("ago", ago=delta), words[:used], rest_after(used)

    day: date | None = None
    if match := _DATETIME_TOKEN.fullmatch(first):
        kind, day, clock, used = "absolute", _day(match, first), _clock(match, first), 1
        attached = match["zone"]
    elif match := _DATE_TOKEN.fullmatch(first):
        day = _day(match, first)
        second = words[1] if len(words) > 1 else ""
        match = _TIME_TOKEN.fullmatch(second)
        if not match:
            if _AMPM_TIME.fullmatch(second) or (len(words) > 2 and _AMPM.fullmatch(words[2])
                                                 and _NUMBER.fullmatch(second)):
                _refuse_ampm(second)
            raise InvalidInput(f"`{echo(first)}` needs a time of day after it, such as "
                               f"`{first} 14:25`. Accepted: {WHEN_FORMATS}.")
        kind, clock, used = "absolute", _clock(match, second), 2
        attached = match["zone"]
    elif match := _TIME_TOKEN.fullmatch(first):
        kind, clock, used = "today", _clock(match, first), 1
        attached = match["zone"]
    else:
        if _AMPM_TIME.fullmatch(first) or (len(words) > 1 and _AMPM.fullmatch(words[1])
                                            and _NUMBER.fullmatch(first)):
            _refuse_ampm(first)
        raise InvalidInput(f"`{echo(first)}` is not a time Lifeguard understands. "
                           f"Accepted: {WHEN_FORMATS}.")

    zone = _zone(attached) if attached else None
    following = words[used] if len(words) > used else None
    if following is not None:
        if _AMPM.fullmatch(following):
            _refuse_ampm(" ".join(words[:used + 1]))
        named = _zone(following)
        if named is not None:
            if zone is not None:
                raise InvalidInput(f"`{echo(' '.join(words[:used + 1]))}` gives two time "
                                   "zones; give one.")
            zone, used = named, used + 1
    if len(words) > used and _looks_like_date_or_time(words[used]):
        raise InvalidInput(
            f"`{echo(' '.join(words[:used + 1]))}` has more than one date or time; write one "
            "time (the date first, such as `2026-01-13 14:25`), then the reason.")
    when = _When(kind, day=day, clock=clock, zone=zone)
    if kind == "absolute" and zone is not None:
        _localize(datetime.combine(day, clock), zone)  # the zone is known: check it now
    return when, words[:used], rest_after(used)


def _refuse_ampm(token: str) -> None:
    raise InvalidInput(f"`{echo(token)}`: Lifeguard reads 24-hour times only; write 14:25 "
                       "rather than 2:25 pm.")


def split_when(text: str) -> tuple[str, str]:
    """The longest start of `text` that is a <when>, and the rest (the reason).

    Everything that does not depend on the moment or on the requester's zone is checked
    here (dates, times, offsets, zone names, daylight-saving trouble in a named zone)."""
    _, words, rest = _parse(text)
    return " ".join(words), rest


# --- resolving ---------------------------------------------------------------------------


def _written(local: datetime) -> str:
    shown = f"{local.date().isoformat()} {local:%H:%M}"
    if local.second or local.microsecond:
        shown += f":{local:%S}"
    if local.microsecond:
        shown += f".{local:%f}".rstrip("0")
    return shown


def _transition(before: datetime, after: datetime, zone: tzinfo,
                new_offset: timedelta | None) -> datetime:
    """The UTC instant, to the second, at which `zone` takes `new_offset` in (before, after]."""
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == new_offset:
            high = middle
        else:
            low = middle
    return high


def _localize(local: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of a naive local time in `zone`; InvalidInput for DST gaps/overlaps."""
    name = _zone_name(zone)
    try:
        first = local.replace(tzinfo=zone, fold=0)
        second = local.replace(tzinfo=zone, fold=1)
        first_utc, second_utc = first.astimezone(UTC), second.astimezone(UTC)
        if first_utc == second_utc:
            return first_utc
        exists = [candidate for candidate in (first_utc, second_utc)
                  if candidate.astimezone(zone).replace(tzinfo=None) == local]
    except (OverflowError, ValueError) as error:
        # Only at the ends of the calendar: the instant is before year 1 or after year 9999
        # in UTC, which no restore window reaches.
        raise beyond_the_calendar(f"`{_written(local)}` in {name}",
                                  after=local.year == LAST_INSTANT.year) from error
    if len(exists) == 2:
        early, late = sorted(exists)
        early_offset, late_offset = (_format_offset(c.astimezone(zone).utcoffset())
                                     for c in (early, late))
        raise InvalidInput(
            f"`{_written(local)}` happens twice in {name} (the clocks are turned back then): "
            f"it is either {describe_instant(early, UTC)} (offset {early_offset}) or "
            f"{describe_instant(late, UTC)} (offset {late_offset}). Say which with an explicit "
            f"offset, such as `{_written(local)} {early_offset}` or "
            f"`{_written(local)} {late_offset}`.")
    if len(exists) == 1:  # pragma: no cover - only with unusual tzinfo implementations
        return exists[0]
    before_offset, after_offset = first.utcoffset(), second.utcoffset()
    detail = ""
    try:
        low, high = sorted((first_utc, second_utc))
        switch = _transition(low, high, zone, after_offset)
        jump_from = (switch + (before_offset or timedelta())).replace(tzinfo=None)
        jump_to = (switch + (after_offset or timedelta())).replace(tzinfo=None)
        detail = f": the clocks jump from {jump_from:%H:%M} to {jump_to:%H:%M} that day"
    except (OverflowError, ValueError):  # pragma: no cover - at the ends of the calendar
        pass
    raise InvalidInput(
        f"`{_written(local)}` does not exist in {name}{detail} (a daylight-saving change, "
        f"from offset {_format_offset(before_offset)} to {_format_offset(after_offset)}), so "
        "that local time never happened. Pick a time outside the gap, or give an explicit "
        f"offset, such as `{_written(local)} {_format_offset(before_offset)}`.")


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def parse_when(text: str, *, now: datetime, zone: tzinfo) -> datetime:
    """The instant `text` (one whole <when>) means, as an aware UTC datetime.

    `now` is the current instant; `zone` the requester's time zone, used when the text names
    none. Raises InvalidInput (and nothing else) for any text that is not a valid <when>."""
    _require_aware(now, "now")
    when, _, rest = _parse(text)
    if rest and "/" in rest and len(rest.split()) == 1:
        raise InvalidInput(f"`{echo(rest)}` is not a time zone Lifeguard knows; {_ZONE_HELP}.")
    if rest:
        raise InvalidInput(f"`{echo(text.strip())}` has more after the time (`{echo(rest)}`); "
                           f"write only the time. Accepted: {WHEN_FORMATS}.")
    try:
        if when.kind == "ago":
            assert when.ago is not None
            return now.astimezone(UTC) - when.ago
        read_in = when.zone or zone
        assert when.clock is not None
        day = when.day if when.day is not None else now.astimezone(read_in).date()
    except OverflowError as error:
        raise beyond_the_calendar(f"`{echo(text.strip())}`", after=False) from error
    return _localize(datetime.combine(day, when.clock), read_in)


# --- showing and checking ----------------------------------------------------------------


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
    _require_aware(instant, "instants")
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
    abbreviation = local.tzname() or _format_offset(local.utcoffset())
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
    _require_aware(instant, "instants")
    _require_aware(now, "now")
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
