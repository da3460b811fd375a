"""The <when> grammar, resolving it against now and the requester's zone, the restore window
and how instants are shown. `now` is always passed explicitly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.domain.errors import InvalidInput
from bot.domain.instants import check_restore_window, describe_instant
from bot.domain.when import WHEN_FORMATS, parse_when, split_when

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
KOLKATA = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
WEEK = 7 * 86400


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- split_when ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("14:25 bad deploy", ("14:25", "bad deploy")),
    ("14:25", ("14:25", "")),
    ("9:05 early", ("9:05", "early")),
    ("14:25:30 UTC bad deploy", ("14:25:30 UTC", "bad deploy")),
    ("2026-01-13 14:25 Europe/Berlin oops", ("2026-01-13 14:25 Europe/Berlin", "oops")),
    ("2026-01-13   14:25   europe/berlin  oops  again", ("2026-01-13 14:25 europe/berlin",
                                                         "oops  again")),
    ("2026-01-13 14:25 +01:00 x", ("2026-01-13 14:25 +01:00", "x")),
    ("2026-01-13 14:25Z x", ("2026-01-13 14:25Z", "x")),
    ("2026-01-13 14:25 the migration", ("2026-01-13 14:25", "the migration")),
    ("2026-01-13T14:25:00Z dropped table", ("2026-01-13T14:25:00Z", "dropped table")),
    ("2026-01-13T14:25:00.123+05:30", ("2026-01-13T14:25:00.123+05:30", "")),
    ("30 minutes ago bad deploy", ("30 minutes ago", "bad deploy")),
    ("2h ago", ("2h ago", "")),
    ("1 DAY AGO oops", ("1 DAY AGO", "oops")),
    ("an hour ago the import", ("an hour ago", "the import")),
    ("a minute ago", ("a minute ago", "")),
    ("14:25 Mars/Olympus", ("14:25", "Mars/Olympus")),  # not an IANA area: reason
    ("14:25 read/write errors", ("14:25", "read/write errors")),
])
def test_split_when_takes_the_longest_when(text, expected):
    assert split_when(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("", "No time was given"),
    ("yesterday", "not a time Lifeguard understands"),
    ("2026-01-13", "needs a time of day"),
    ("2026-13-01 10:00", "not a date"),
    ("2026-02-29 10:00", "not a date"),
    ("24:00", "not a time of day"),
    ("14:60", "not a time of day"),
    ("14:25:60", "not a time of day"),
    ("2:25 pm", "24-hour"),
    ("2pm", "24-hour"),
    ("2026-01-13 2 PM", "24-hour"),
    ("14:25 EST", "not accepted as a time zone"),
    ("14:25 CET", "not accepted as a time zone"),
    ("14:25 Japan", "not accepted as a time zone"),
    ("14:25 Europe/Berln", "not a time zone Lifeguard knows"),
    ("14:25 Etc/GMT+5", "sign is inverted"),
    ("14:25 +1", "±HH:MM"),
    ("14:25 UTC+1", "±HH:MM"),
    ("14:25 +0100", "±HH:MM"),
    ("14:25 +24:00", "not a UTC offset"),
    ("14:25Z UTC", "two time zones"),
    ("14:25 2026-01-13", "more than one date or time"),
    ("30 minutes", "needs `ago`"),
    ("30 ago", "needs a unit"),
    ("3 weeks ago", "not a unit"),
    ("3w ago", "not an amount"),
    ("100001 days ago", "too far back"),
    ("9" * 5000 + " days ago", "too far back"),
    ("2026-03-29 02:30 Europe/Berlin", "does not exist in Europe/Berlin"),
    ("0001-01-01 00:00 +01:00", "outside the range"),
])
def test_split_when_refuses_with_a_reason(text, says):
    with pytest.raises(InvalidInput, match=None) as caught:
        split_when(text)
    assert says in str(caught.value)


def test_unknown_forms_list_what_is_accepted():
    with pytest.raises(InvalidInput) as caught:
        split_when("last tuesday")
    assert WHEN_FORMATS in str(caught.value)
    assert "`last`" in str(caught.value)


def test_echoed_input_is_shortened_and_cannot_ping_or_break_code():
    with pytest.raises(InvalidInput) as caught:
        split_when("<!channel>`" + "x" * 200)
    message = str(caught.value)
    assert "<!channel>" not in message and "&lt;!channel&gt;" in message
    assert "x" * 61 not in message


# --- parse_when: each form -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-13T14:25:00Z", utc(2026, 1, 13, 14, 25)),
    ("2026-01-13t14:25:00z", utc(2026, 1, 13, 14, 25)),
    ("2026-01-13T14:25:00.5Z", utc(2026, 1, 13, 14, 25, 0, 500000)),
    ("2026-01-13T14:25:00.123456789Z", utc(2026, 1, 13, 14, 25, 0, 123456)),
    ("2026-01-13T14:25:00+01:00", utc(2026, 1, 13, 13, 25)),
    ("2026-01-13T14:25:00-05:30", utc(2026, 1, 13, 19, 55)),
    ("2026-01-13T14:25:00-00:00", utc(2026, 1, 13, 14, 25)),
    ("2026-01-13T00:15:00+02:00", utc(2026, 1, 12, 22, 15)),
    ("2026-01-13 14:25 UTC", utc(2026, 1, 13, 14, 25)),
    ("2026-01-13 14:25 utc", utc(2026, 1, 13, 14, 25)),
    ("2026-01-13 14:25 Z", utc(2026, 1, 13, 14, 25)),
    ("2026-01-13 14:25:30 +05:30", utc(2026, 1, 13, 8, 55, 30)),
    ("2026-01-13 14:25 Europe/Berlin", utc(2026, 1, 13, 13, 25)),  # CET, +01:00
    ("2026-07-13 14:25 Europe/Berlin", utc(2026, 7, 13, 12, 25)),  # CEST, +02:00
    ("2026-07-13 14:25 america/new_york", utc(2026, 7, 13, 18, 25)),  # EDT, -04:00
    ("2026-01-13 14:25 Asia/Kolkata", utc(2026, 1, 13, 8, 55)),
])
def test_absolute_forms(text, expected):
    resolved = parse_when(text, now=NOW, zone=NEW_YORK)  # the zone is in the text
    assert resolved == expected
    assert resolved.tzinfo is UTC


def test_a_date_and_time_without_a_zone_is_in_the_requesters_zone():
    assert parse_when("2026-01-13 14:25", now=NOW, zone=BERLIN) == utc(2026, 1, 13, 13, 25)
    assert parse_when("2026-01-13 14:25", now=NOW, zone=NEW_YORK) == utc(2026, 1, 13, 19, 25)
    assert parse_when("2026-01-13T14:25:00", now=NOW, zone=KOLKATA) == utc(2026, 1, 13, 8, 55)
    assert parse_when("2026-01-13 14:25", now=NOW, zone=UTC) == utc(2026, 1, 13, 14, 25)
    fixed = timezone(timedelta(hours=-3))
    assert parse_when("2026-01-13 14:25", now=NOW, zone=fixed) == utc(2026, 1, 13, 17, 25)


def test_a_time_alone_is_today_in_the_requesters_zone():
    assert parse_when("14:25", now=NOW, zone=UTC) == utc(2026, 6, 15, 14, 25)
    assert parse_when("14:25:30", now=NOW, zone=BERLIN) == utc(2026, 6, 15, 12, 25, 30)
    assert parse_when("9:05", now=NOW, zone=UTC) == utc(2026, 6, 15, 9, 5)


def test_today_is_the_requesters_date_when_it_is_already_tomorrow_there():
    now = utc(2026, 6, 15, 23, 30)  # 2026-06-16 08:30 in Tokyo
    assert parse_when("08:00", now=now, zone=TOKYO) == utc(2026, 6, 15, 23, 0)
    assert parse_when("00:10", now=now, zone=TOKYO) == utc(2026, 6, 15, 15, 10)


def test_today_is_the_requesters_date_when_it_is_still_yesterday_there():
    now = utc(2026, 6, 16, 2, 0)  # 2026-06-15 19:00 in Los Angeles
    assert parse_when("18:00", now=now, zone=LOS_ANGELES) == utc(2026, 6, 16, 1, 0)
    # The same text read in UTC is on UTC's date, 2026-06-16.
    assert parse_when("18:00", now=now, zone=UTC) == utc(2026, 6, 16, 18, 0)


def test_a_time_with_a_zone_is_today_in_that_zone():
    now = utc(2026, 6, 15, 23, 30)
    assert parse_when("08:00 Asia/Tokyo", now=now, zone=UTC) == utc(2026, 6, 15, 23, 0)
    assert parse_when("14:25 UTC", now=now, zone=TOKYO) == utc(2026, 6, 15, 14, 25)
    # 23:30 UTC is already 01:30 on the 16th at +02:00, so "today" there is the 16th.
    assert parse_when("14:25+02:00", now=now, zone=TOKYO) == utc(2026, 6, 16, 12, 25)


@pytest.mark.parametrize(("text", "delta"), [
    ("0 minutes ago", timedelta(0)),
    ("30 minutes ago", timedelta(minutes=30)),
    ("1 minute ago", timedelta(minutes=1)),
    ("45 min ago", timedelta(minutes=45)),
    ("45 mins ago", timedelta(minutes=45)),
    ("45m ago", timedelta(minutes=45)),
    ("2 hours ago", timedelta(hours=2)),
    ("2 hrs ago", timedelta(hours=2)),
    ("2 h ago", timedelta(hours=2)),
    ("2h ago", timedelta(hours=2)),
    ("3 days ago", timedelta(days=3)),
    ("1d ago", timedelta(days=1)),
    ("a minute ago", timedelta(minutes=1)),
    ("an hour ago", timedelta(hours=1)),
    ("A Day Ago", timedelta(days=1)),
])
def test_ago_forms_count_back_from_now(text, delta):
    now = utc(2026, 6, 15, 12, 0, 7, 250)
    assert parse_when(text, now=now, zone=BERLIN) == now - delta


def test_now_may_be_in_any_zone_and_the_result_is_utc():
    now = datetime(2026, 6, 15, 14, 0, tzinfo=BERLIN)
    resolved = parse_when("1 hour ago", now=now, zone=UTC)
    assert resolved == utc(2026, 6, 15, 11, 0) and resolved.tzinfo is UTC


@pytest.mark.parametrize("text", [
    "14:25 bad deploy", "2026-01-13 14:25 Mars/Olympus", "tomorrow", "", "now",
    "2026-01-13T14:25:00Z Europe/Berlin", "14:25 Europe/Nowhere",
])
def test_parse_when_takes_only_a_whole_when(text):
    with pytest.raises(InvalidInput):
        parse_when(text, now=NOW, zone=UTC)


def test_unknown_zone_names_are_refused():
    for text in ("2026-01-13 14:25 Europe/Berln", "2026-01-13 14:25 Mars/Olympus"):
        with pytest.raises(InvalidInput, match="not a time zone Lifeguard knows"):
            parse_when(text, now=NOW, zone=UTC)


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_when("14:25", now=datetime(2026, 6, 15), zone=UTC)


# --- daylight saving (real 2026 transitions) -------------------------------------------------
# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.


@pytest.mark.parametrize(("text", "zone", "jump"), [
    ("2026-03-29 02:30", BERLIN, "from 02:00 to 03:00"),
    ("2026-03-29 02:00", BERLIN, "from 02:00 to 03:00"),
    ("2026-03-29 02:59:59", BERLIN, "from 02:00 to 03:00"),
    ("2026-03-29 02:30 Europe/Berlin", UTC, "from 02:00 to 03:00"),
    ("2026-03-08 02:30", NEW_YORK, "from 02:00 to 03:00"),
    ("2026-03-08 02:15 America/New_York", BERLIN, "from 02:00 to 03:00"),
])
def test_local_times_in_a_dst_gap_are_refused(text, zone, jump):
    with pytest.raises(InvalidInput) as caught:
        parse_when(text, now=NOW, zone=zone)
    message = str(caught.value)
    assert "does not exist" in message and jump in message


def test_times_around_the_gap_are_fine():
    assert parse_when("2026-03-29 01:59:59", now=NOW, zone=BERLIN) == utc(2026, 3, 29, 0, 59, 59)
    assert parse_when("2026-03-29 03:00", now=NOW, zone=BERLIN) == utc(2026, 3, 29, 1, 0)
    assert parse_when("2026-03-08 03:00", now=NOW, zone=NEW_YORK) == utc(2026, 3, 8, 7, 0)


def test_a_bare_time_in_todays_gap_is_refused():
    now = utc(2026, 3, 29, 10, 0)
    with pytest.raises(InvalidInput, match="2026-03-29 02:30` does not exist in Europe/Berlin"):
        parse_when("02:30", now=now, zone=BERLIN)


def test_the_gap_is_checked_already_when_the_zone_is_in_the_text():
    with pytest.raises(InvalidInput, match="does not exist"):
        split_when("2026-03-08 02:30 America/New_York restore please")


@pytest.mark.parametrize(("text", "zone", "candidates", "offsets"), [
    ("2026-10-25 02:30", BERLIN,
     ("2026-10-25 00:30:00 UTC", "2026-10-25 01:30:00 UTC"), ("+02:00", "+01:00")),
    ("2026-10-25 02:30 Europe/Berlin", UTC,
     ("2026-10-25 00:30:00 UTC", "2026-10-25 01:30:00 UTC"), ("+02:00", "+01:00")),
    ("2026-11-01 01:30", NEW_YORK,
     ("2026-11-01 05:30:00 UTC", "2026-11-01 06:30:00 UTC"), ("-04:00", "-05:00")),
    ("2026-11-01 01:00 America/New_York", BERLIN,
     ("2026-11-01 05:00:00 UTC", "2026-11-01 06:00:00 UTC"), ("-04:00", "-05:00")),
])
def test_ambiguous_local_times_are_refused_naming_both(text, zone, candidates, offsets):
    with pytest.raises(InvalidInput) as caught:
        parse_when(text, now=NOW, zone=zone)
    message = str(caught.value)
    assert "happens twice" in message
    for expected in (*candidates, *offsets):
        assert expected in message


def test_an_explicit_offset_settles_the_repeated_hour():
    assert parse_when("2026-10-25 02:30 +02:00", now=NOW, zone=BERLIN) == utc(2026, 10, 25, 0, 30)
    assert parse_when("2026-10-25 02:30 +01:00", now=NOW, zone=BERLIN) == utc(2026, 10, 25, 1, 30)
    assert parse_when("2026-11-01T01:30:00-05:00", now=NOW, zone=NEW_YORK) == \
        utc(2026, 11, 1, 6, 30)


def test_the_suggested_fix_for_an_ambiguous_time_is_itself_accepted():
    with pytest.raises(InvalidInput) as caught:
        parse_when("2026-11-01 01:30", now=NOW, zone=NEW_YORK)
    suggestion = str(caught.value).split("`")[-2]
    assert parse_when(suggestion, now=NOW, zone=NEW_YORK) == utc(2026, 11, 1, 6, 30)


# --- describe_instant ------------------------------------------------------------------------


def test_describe_instant_in_utc_and_the_requesters_zone():
    instant = utc(2026, 11, 21, 14, 25)
    assert describe_instant(instant, BERLIN) == \
        "2026-11-21 14:25:00 UTC (15:25:00 CET, Europe/Berlin)"
    assert describe_instant(utc(2026, 7, 1, 14, 25), NEW_YORK) == \
        "2026-07-01 14:25:00 UTC (10:25:00 EDT, America/New_York)"
    assert describe_instant(instant, UTC) == "2026-11-21 14:25:00 UTC"
    assert describe_instant(instant, ZoneInfo("UTC")) == "2026-11-21 14:25:00 UTC"
    assert describe_instant(instant, timezone(timedelta(hours=1))) == \
        "2026-11-21 14:25:00 UTC (15:25:00 UTC+01:00)"


def test_describe_instant_names_the_local_date_when_it_differs():
    assert describe_instant(utc(2026, 11, 21, 23, 30), BERLIN) == \
        "2026-11-21 23:30:00 UTC (2026-11-22 00:30:00 CET, Europe/Berlin)"
    assert describe_instant(utc(2026, 11, 21, 1, 0), LOS_ANGELES) == \
        "2026-11-21 01:00:00 UTC (2026-11-20 17:00:00 PST, America/Los_Angeles)"


def test_describe_instant_keeps_fractions_of_a_second():
    assert describe_instant(utc(2026, 11, 21, 14, 25, 0, 500), UTC) == \
        "2026-11-21 14:25:00.000500 UTC"


# --- the restore window ----------------------------------------------------------------------


def test_the_window_edges_are_inside():
    now = utc(2026, 6, 15, 12, 0)
    check_restore_window(now, now=now, window_seconds=WEEK, zone=BERLIN)
    check_restore_window(now - timedelta(seconds=WEEK), now=now, window_seconds=WEEK, zone=BERLIN)
    check_restore_window(now - timedelta(days=3), now=now, window_seconds=WEEK, zone=BERLIN)


def test_one_second_before_the_window_is_refused_naming_it_in_both_zones():
    now = utc(2026, 6, 15, 12, 0)
    with pytest.raises(InvalidInput) as caught:
        check_restore_window(utc(2026, 6, 8, 11, 59, 59), now=now, window_seconds=WEEK,
                             zone=BERLIN)
    message = str(caught.value)
    assert "outside the restore window" in message
    assert "2026-06-08 11:59:59 UTC (13:59:59 CEST, Europe/Berlin)" in message  # the instant
    assert "from 2026-06-08 12:00:00 UTC (14:00:00 CEST, Europe/Berlin)" in message
    assert "to 2026-06-15 12:00:00 UTC (14:00:00 CEST, Europe/Berlin)" in message
    assert "the last 7 days" in message


def test_the_future_is_refused_naming_the_window():
    now = utc(2026, 6, 15, 12, 0)
    with pytest.raises(InvalidInput) as caught:
        check_restore_window(now + timedelta(seconds=1), now=now, window_seconds=86400,
                             zone=NEW_YORK)
    message = str(caught.value)
    assert "2026-06-15 12:00:01 UTC (08:00:01 EDT, America/New_York) is in the future" in message
    assert "from 2026-06-14 12:00:00 UTC (08:00:00 EDT, America/New_York)" in message
    assert "to 2026-06-15 12:00:00 UTC (08:00:00 EDT, America/New_York)" in message
    assert "the last 1 day" in message


def test_a_bare_time_later_today_is_in_the_future():
    now = utc(2026, 6, 15, 12, 0)
    instant = parse_when("23:00", now=now, zone=UTC)
    with pytest.raises(InvalidInput, match="is in the future"):
        check_restore_window(instant, now=now, window_seconds=WEEK, zone=UTC)


def test_the_window_message_shows_dates_that_cross_midnight():
    now = utc(2026, 6, 15, 23, 30)
    with pytest.raises(InvalidInput) as caught:
        check_restore_window(utc(2026, 6, 1), now=now, window_seconds=3600, zone=TOKYO)
    message = str(caught.value)
    assert "to 2026-06-15 23:30:00 UTC (2026-06-16 08:30:00 JST, Asia/Tokyo)" in message
    assert "the last 1 hour" in message


def test_window_arguments_are_checked():
    with pytest.raises(ValueError):
        check_restore_window(datetime(2026, 6, 15), now=NOW, window_seconds=WEEK, zone=UTC)
    with pytest.raises(ValueError):
        check_restore_window(NOW, now=NOW, window_seconds=-1, zone=UTC)
