"""Time zones: the zone names and UTC offsets a `<when>` may give, and turning a local time
in a zone into an instant, refusing the local times a daylight-saving change skips or
repeats rather than guessing.

What looks like a zone but is not accepted (abbreviations, single-word names, Etc/GMT±N,
offsets not written ±HH:MM) is refused, never taken as the start of the reason: see the
grammar in bot/domain/when.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from bot.domain.echo import echo
from bot.domain.errors import InvalidInput
from bot.domain.instants import LAST_INSTANT, beyond_the_calendar, describe_instant, format_offset

_OFFSET = re.compile(r"(?P<sign>[+-])(?P<hours>[0-9]{2}):(?P<minutes>[0-9]{2})")
# Offsets written some other way (+1, +0100, UTC+1, GMT-05:00, +25:00): refused, not reason.
_OFFSET_LIKE = re.compile(r"(?:utc|gmt|ut)?[+\-−][0-9]{1,4}(?::[0-9]{1,2})?", re.IGNORECASE)
_ETC_GMT = re.compile(r"etc/gmt[+-][0-9]+", re.IGNORECASE)
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
ZONE_HELP = ("write an IANA name of the form Area/City (such as Europe/Berlin or "
             "America/New_York), UTC, Z, or an offset such as +01:00")


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


def read_zone(token: str) -> tzinfo | None:
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
                               f"{ZONE_HELP}.")
        try:
            return ZoneInfo(key)
        except (OSError, ValueError) as error:  # pragma: no cover - broken database
            raise InvalidInput(f"The time zone `{echo(token)}` could not be loaded; "
                               f"{ZONE_HELP}.") from error
    if token in _ABBREVIATIONS or token in _single_word_zones():
        raise InvalidInput(f"`{echo(token)}` is not accepted as a time zone (abbreviations "
                           f"and single-word names are ambiguous); {ZONE_HELP}.")
    return None


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


def localize(local: datetime, zone: tzinfo) -> datetime:
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
        early_offset, late_offset = (format_offset(c.astimezone(zone).utcoffset())
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
        f"from offset {format_offset(before_offset)} to {format_offset(after_offset)}), so "
        "that local time never happened. Pick a time outside the gap, or give an explicit "
        f"offset, such as `{_written(local)} {format_offset(before_offset)}`.")

