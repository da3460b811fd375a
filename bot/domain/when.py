"""The `<when>` of `/restore <when> [reason]`: its grammar, and reading it into an instant.

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
requester's zone (bot/domain/zones.py reads zone names and offsets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import islice

from bot.domain.echo import echo
from bot.domain.errors import InvalidInput
from bot.domain.instants import beyond_the_calendar, require_aware
from bot.domain.zones import ZONE_HELP, localize, read_zone

WHEN_FORMATS = (
    "`2026-01-13T14:25:00Z` (RFC 3339, with Z or an offset such as +01:00), "
    "`2026-01-13 14:25[:SS] [zone]` (zone: an IANA name such as Europe/Berlin, UTC, Z or "
    "+01:00; without one, your Slack time zone), `14:25[:SS]` (today, in your Slack time "
    "zone) or `30 minutes ago` (also `2 hours ago`, `1 day ago`)"
)

MAX_AGO_AMOUNT = 100_000

_DATE = r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
_TIME = (r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})"
         r"(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?")
_ATTACHED = r"(?P<zone>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
_DATE_TOKEN = re.compile(_DATE)
_DATETIME_TOKEN = re.compile(_DATE + "[Tt]" + _TIME + _ATTACHED)
_TIME_TOKEN = re.compile(_TIME + _ATTACHED)
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


@dataclass(frozen=True)
class _When:
    """A syntactically valid <when>, not yet resolved against now and the requester's zone."""

    kind: str  # "absolute" (date and time), "today" (time only) or "ago"
    day: date | None = None
    clock: time | None = None
    zone: tzinfo | None = None  # given in the text; None: the requester's zone
    ago: timedelta | None = None


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

    zone = read_zone(attached) if attached else None
    following = words[used] if len(words) > used else None
    if following is not None:
        if _AMPM.fullmatch(following):
            _refuse_ampm(" ".join(words[:used + 1]))
        named = read_zone(following)
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
        localize(datetime.combine(day, clock), zone)  # the zone is known: check it now
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


def parse_when(text: str, *, now: datetime, zone: tzinfo) -> datetime:
    """The instant `text` (one whole <when>) means, as an aware UTC datetime.

    `now` is the current instant; `zone` the requester's time zone, used when the text names
    none. Raises InvalidInput (and nothing else) for any text that is not a valid <when>."""
    require_aware(now, "now")
    when, _, rest = _parse(text)
    if rest and "/" in rest and len(rest.split()) == 1:
        raise InvalidInput(f"`{echo(rest)}` is not a time zone Lifeguard knows; {ZONE_HELP}.")
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
    return localize(datetime.combine(day, when.clock), read_in)
