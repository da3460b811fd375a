"""Instants at and beyond the ends of the calendar (year 1, year 9999) get the same clear
answer as an instant outside the restore window, never an OverflowError."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain.errors import InvalidInput
from bot.domain.instants import check_restore_window, describe_instant, instant_from_timestamp
from bot.domain.when import parse_when

NOW = datetime(2026, 1, 13, 14, 25, tzinfo=UTC)
DAY = 86400
ZONES = [ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Pacific/Kiritimati"),
         ZoneInfo("Pacific/Pago_Pago"), UTC]


def refusal(text: str, zone: ZoneInfo | type[UTC] = UTC) -> str:
    with pytest.raises(InvalidInput) as refused:
        instant = parse_when(text, now=NOW, zone=zone)  # type: ignore[arg-type]
        check_restore_window(instant, now=NOW, window_seconds=DAY, zone=zone)  # type: ignore[arg-type]
    return str(refused.value)


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_the_last_second_of_year_9999_is_in_the_future_in_every_zone(zone) -> None:
    said = refusal("9999-12-31T23:59:59Z", zone)
    assert said.startswith("9999-12-31 23:59:59 UTC") and "is in the future" in said
    assert "The project's restore window (the last 1 day) is from" in said


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_the_first_second_of_year_1_is_outside_the_restore_window_in_every_zone(zone) -> None:
    said = refusal("0001-01-01T00:00:00Z", zone)
    assert said.startswith("0001-01-01 00:00:00 UTC") and "is outside the restore window" in said
    assert "/restore from &lt;branch&gt;" in said  # Slack shows `<branch>`


@pytest.mark.parametrize(("text", "says"), [
    ("9999-12-31 23:59 -01:00", "is in the future"),
    ("9999-12-31T23:30:00-05:00", "is in the future"),
    ("0001-01-01 00:00 +01:00", "is outside the restore window"),
    ("0001-01-01T00:30:00+14:00", "is outside the restore window"),
])
def test_a_local_time_beyond_the_calendar_in_utc_gets_the_window_answer(text, says) -> None:
    said = refusal(text)
    assert says in said and "range of instants Lifeguard can represent" in said


def test_a_local_time_without_a_zone_beyond_the_calendar_gets_the_window_answer() -> None:
    said = refusal("0001-01-01 00:30", ZoneInfo("Asia/Tokyo"))
    assert "is outside the restore window" in said


def test_describing_an_instant_the_zone_cannot_show_falls_back_to_utc() -> None:
    last = datetime.max.replace(tzinfo=UTC)
    assert describe_instant(last, ZoneInfo("Asia/Tokyo")) == "9999-12-31 23:59:59.999999 UTC"
    first = datetime.min.replace(tzinfo=UTC)
    assert describe_instant(first, ZoneInfo("America/New_York")) == "0001-01-01 00:00:00 UTC"


@pytest.mark.parametrize(("seconds", "says"), [
    (253402300800, "is in the future"),  # 10000-01-01T00:00:00Z
    (10**30, "is in the future"),
    (-62135596801, "is outside the restore window"),  # just before year 1
])
def test_a_picked_unix_time_beyond_the_calendar_gets_the_window_answer(seconds, says) -> None:
    with pytest.raises(InvalidInput, match=says):
        instant_from_timestamp(seconds)


def test_a_picked_unix_time_within_the_calendar_is_that_instant() -> None:
    assert instant_from_timestamp(1768314300) == datetime(2026, 1, 13, 14, 25, tzinfo=UTC)
    assert instant_from_timestamp(253402300799) == datetime(9999, 12, 31, 23, 59, 59,
                                                            tzinfo=UTC)
    last = instant_from_timestamp(253402300799)
    with pytest.raises(InvalidInput, match="in the future"):
        check_restore_window(last, now=NOW, window_seconds=DAY, zone=ZoneInfo("Asia/Tokyo"))
