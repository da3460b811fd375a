"""The /restore command: examples of each form and error, branch and request-id rules, and
property-based tests that no text makes the parsers fail other than with a person's error."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.domain.backups import MAX_REASON_LENGTH
from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.restores import (
    REQUEST_ID,
    RESTORE_USAGE,
    RestoreAt,
    RestoreCancel,
    RestoreForm,
    RestoreFrom,
    RestoreHelp,
    RestoreLog,
    RestorePromote,
    RestoreStatus,
    check_promotable,
    check_restorable_source,
    new_request_id,
    parse_restore_command,
    preserve_branch_name,
    restore_branch_name,
)
from bot.domain.text import escape
from bot.domain.when import parse_when, split_when

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"),
         ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Pacific/Chatham"),
         timezone(timedelta(hours=-3, minutes=-30))]
ZONE_NAMES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Tokyo",
              "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham", "UTC"]
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- examples ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("", RestoreForm()),
    ("   ", RestoreForm()),
    ("help", RestoreHelp()),
    ("HELP me", RestoreHelp()),
    ("14:25", RestoreAt("14:25", "")),
    ("14:25 bad deploy", RestoreAt("14:25", "bad deploy")),
    ("  2026-01-13   14:25  Europe/Berlin   the   migration ",
     RestoreAt("2026-01-13 14:25 Europe/Berlin", "the migration")),
    ("2026-01-13T14:25:00Z", RestoreAt("2026-01-13T14:25:00Z", "")),
    ("30 minutes ago dropped the users table",
     RestoreAt("30 minutes ago", "dropped the users table")),
    ("an hour ago", RestoreAt("an hour ago", "")),
    ("from backup-20261121-142500", RestoreFrom("backup-20261121-142500", "")),
    ("FROM backup-20261121-142500 before the migration",
     RestoreFrom("backup-20261121-142500", "before the migration")),
    ("promote restore-20261121-1425", RestorePromote("restore-20261121-1425", "")),
    ("promote restore-20261121-1425-1a2b3c4d verified by ana",
     RestorePromote("restore-20261121-1425-1a2b3c4d", "verified by ana")),
    ("promote backup-20261121-142500", RestorePromote("backup-20261121-142500", "")),
    ("promote pre-restore-20261121-142500 undo the promotion",
     RestorePromote("pre-restore-20261121-142500", "undo the promotion")),
    ("promote pre-restore-20261121-142500-1a2b",  # suffixed when the plain name was taken
     RestorePromote("pre-restore-20261121-142500-1a2b", "")),
    ("status", RestoreStatus(None)),
    ("status 1a2b3c4d", RestoreStatus("1a2b3c4d")),
    ("Status 1A2B3C4D", RestoreStatus("1a2b3c4d")),
    ("cancel 1a2b3c4d", RestoreCancel("1a2b3c4d")),
    ("log", RestoreLog(None)),
    ("log 00ff00ff", RestoreLog("00ff00ff")),
])
def test_commands(text, expected):
    assert parse_restore_command(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("stauts", "neither a /restore command"),
    ("now", "neither a /restore command"),
    ("yesterday 14:25", "neither a /restore command"),
    ("2026-01-13", "needs a time of day"),
    ("25:00 oops", "not a time of day"),
    ("14:25 EST oops", "not accepted as a time zone"),
    ("2:25 pm oops", "24-hour"),
    ("30 minutes oops", "needs `ago`"),
    ("from", "needs a branch name"),
    ("promote", "needs a branch name"),
    ("from backup-" + "1" * 300, "at most 256"),
    ("promote restore-\x07bell", "control or invisible"),
    ("promote restore-\u202eevil", "control or invisible"),
    ("status 1234", "not a request id"),
    ("status 1a2b3c4d 5e6f7a8b", "at most one request id"),
    ("log xyz", "not a request id"),
    ("cancel", "exactly one request id"),
    ("cancel 1a2b3c4d 5e6f7a8b", "exactly one request id"),
    ("cancel 1a2b3c4g", "not a request id"),
    ("cancel 1a2b3c4d5", "not a request id"),
    ("14:25 " + "x" * 501, f"at most {MAX_REASON_LENGTH}"),
])
def test_invalid_input(text, says):
    with pytest.raises(InvalidInput) as caught:
        parse_restore_command(text)
    assert says in str(caught.value)


@pytest.mark.parametrize("text", ["stauts", "status xyz", "cancel", "from", "2026-01-13",
                                  "14:25 EST"])
def test_errors_show_the_usage(text):
    with pytest.raises(InvalidInput) as caught:
        parse_restore_command(text)
    assert RESTORE_USAGE in str(caught.value)


@pytest.mark.parametrize("text", [
    "from main", "from restore-20261121-1425", "from pre-restore-20261121-142500",
    "from backup-before-migration", "from Backup-20261121-142500",
    "promote main", "promote production", "promote restore-", "promote pre-restore-oops",
    "promote backup-latest",
])
def test_branches_that_may_not_be_used_are_refused(text):
    with pytest.raises(NotAllowed) as caught:
        parse_restore_command(text)
    assert "backup-YYYYMMDD-HHMMSS" in str(caught.value)  # says what is accepted


def test_reasons_are_normalised_and_kept_to_the_limit():
    command = parse_restore_command("14:25  a\n\nmulti-line\treason")
    assert command == RestoreAt("14:25", "a multi-line reason")
    command = parse_restore_command("from backup-20261121-142500 " + "y" * MAX_REASON_LENGTH)
    assert isinstance(command, RestoreFrom) and len(command.reason) == MAX_REASON_LENGTH


def test_usage_lists_every_command_and_the_form():
    for form in ("`/restore <when> [reason]`", "`/restore from <branch> [reason]`",
                 "`/restore promote <branch> [reason]`", "`/restore status [id]`",
                 "`/restore cancel <id>`", "`/restore log [id]`", "`/restore help`",
                 "`/restore` alone opens a form"):
        assert escape(form) in RESTORE_USAGE  # written so that Slack shows `<when>`


def test_request_ids():
    ids = {new_request_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(REQUEST_ID.fullmatch(i) and REQUEST_ID.match(i) for i in ids)
    for wrong in ("1a2b3c4d\n", "1A2B3C4D", "1a2b3c4", "1a2b3c4d0", "zzzzzzzz", ""):
        assert not REQUEST_ID.match(wrong)


def test_branch_names():
    at = datetime(2026, 11, 21, 15, 25, 7, tzinfo=ZoneInfo("Europe/Berlin"))  # 14:25:07 UTC
    assert restore_branch_name(at) == "restore-20261121-1425"
    assert preserve_branch_name(at) == "pre-restore-20261121-142507"
    check_promotable(restore_branch_name(at))
    check_promotable(preserve_branch_name(at))
    check_restorable_source("backup-20261121-142507")
    with pytest.raises(ValueError):
        restore_branch_name(datetime(2026, 11, 21))
    with pytest.raises(ValueError):
        preserve_branch_name(datetime(2026, 11, 21))


# --- properties --------------------------------------------------------------------------

FRAGMENTS = [
    "0", "1", "2", "9", "00", "12", "14", "23", "24", "25", "29", "30", "59", "60", "99",
    "2026", "0001", "9999", "2026-03-29", "2026-10-25", "2026-02-30", "02:30", "14:25",
    ":", "-", "+", ".", "T", "t", "Z", "z", "ago", "AGO", "minutes", "min", "m", "hours",
    "h", "hr", "days", "d", "a", "an", "hour", "minute", "day", "weeks", "pm", "am",
    "UTC", "utc", "GMT", "EST", "CET", "Japan", "Etc/GMT+5", "Etc/UTC", "Mars/Olympus",
    *ZONE_NAMES, "europe/berlin", "+01:00", "-05:00", "+05:30", "+25:00", "+0100",
    "from", "promote", "status", "cancel", "log", "help", "backup-20261121-142500",
    "backup-", "restore-", "pre-restore-", "restore-20261121-1425", "1a2b3c4d", "main",
    "é", "١٢", "\x00", "\u202e", "`", "<!channel>", "x" * 40,
]
SEPARATORS = ["", "", " ", "  ", "\t", "\n", "\u00a0"]

near_misses = st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS)),
                       max_size=8).map(lambda parts: "".join(f + s for f, s in parts))

@st.composite
def when_like(draw: st.DrawFn) -> str:
    """Text shaped like a <when> and a reason, with numbers that may be out of range."""
    number = st.integers(min_value=0, max_value=99)
    clock = f"{draw(number)}:{draw(number):02d}"
    if draw(st.booleans()):
        clock += f":{draw(number):02d}"
        if draw(st.booleans()):
            clock += "." + draw(st.text(alphabet="0123456789", min_size=1, max_size=12))
    day = (f"{draw(st.integers(min_value=0, max_value=9999)):04d}-"
           f"{draw(st.integers(min_value=0, max_value=13)):02d}-"
           f"{draw(st.integers(min_value=0, max_value=32)):02d}")
    zone = draw(st.sampled_from(["", "Z", " Z", " UTC", " +01:00", "-05:00", " +23:59",
                                 " -00:00", " +24:00", *(f" {n}" for n in ZONE_NAMES),
                                 " Etc/UTC", " EST", " Mars/Olympus", " pm"]))
    amount = draw(st.integers(min_value=0, max_value=200_000))
    unit = draw(st.sampled_from(["minutes", "min", "m", "h", "hours", "days", "d", "weeks"]))
    when = draw(st.sampled_from([
        f"{day}T{clock}{zone}", f"{day} {clock}{zone}", f"{clock}{zone}", day,
        f"{amount} {unit} ago", f"{amount}{unit} ago", f"{amount} {unit}", "an hour ago",
    ]))
    reason = draw(st.one_of(st.just(""), st.sampled_from(FRAGMENTS), st.text(max_size=20)))
    return f"{when} {reason}"


any_text = st.one_of(st.text(), near_misses, when_like(),
                     st.text(alphabet="0123456789:-+.TZ ago", max_size=30))
nows = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC))


@PROPERTY
@given(text=any_text)
def test_parse_restore_command_returns_or_refuses_politely(text):
    try:
        command = parse_restore_command(text)
    except (InvalidInput, NotAllowed):
        return
    if isinstance(command, RestoreAt):
        resolved = parse_when(command.when_text, now=NOW, zone=UTC)
        assert resolved.tzinfo is UTC
        assert split_when(command.when_text) == (command.when_text, "")
    if isinstance(command, RestoreAt | RestoreFrom | RestorePromote):
        assert len(command.reason) <= MAX_REASON_LENGTH
        assert command.reason == command.reason.strip()
    if isinstance(command, RestoreFrom | RestorePromote):
        assert command.branch_name and not re.search(r"\s", command.branch_name)
        assert len(command.branch_name) <= 256
    if isinstance(command, RestoreStatus | RestoreLog | RestoreCancel) and command.request_id:
        assert REQUEST_ID.match(command.request_id)


@PROPERTY
@given(text=any_text, now=nows, zone=st.sampled_from(ZONES))
def test_split_and_parse_when_return_or_raise_invalid_input(text, now, zone):
    try:
        when_text, rest = split_when(text)
    except InvalidInput:
        when_text = None
    else:
        assert len(when_text) <= len(text)
        assert rest == rest.strip()
    try:
        resolved = parse_when(text, now=now, zone=zone)
    except InvalidInput:
        return
    assert resolved.tzinfo is UTC
    assert when_text is not None and rest == ""  # a whole <when> also splits as one


@PROPERTY
@given(text=st.text(max_size=600), reason=st.text(max_size=700))
def test_reasons_never_exceed_the_limit(text, reason):
    for candidate in (f"14:25 {reason}", f"from backup-20261121-142500 {reason}",
                      f"promote restore-20261121-1425 {reason}", f"{text} {reason}"):
        try:
            command = parse_restore_command(candidate)
        except (InvalidInput, NotAllowed):
            continue
        if isinstance(command, RestoreAt | RestoreFrom | RestorePromote):
            assert len(command.reason) <= MAX_REASON_LENGTH


# Round trips: an instant, rendered in each accepted form, parses back to itself (to the
# precision of the form).

instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 12, 31),
                        timezones=st.just(UTC))
whole_minute_offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


def _offset_text(value: datetime) -> str:
    minutes = int(value.utcoffset().total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@PROPERTY
@given(instant=instants, offset=whole_minute_offsets, now=nows, zone=st.sampled_from(ZONES),
       separator=st.sampled_from(["T", "t", " "]))
def test_rfc3339_round_trips_to_the_microsecond(instant, offset, now, zone, separator):
    local = instant.astimezone(offset)
    text = f"{local:%Y-%m-%d}{separator}{local:%H:%M:%S.%f}{_offset_text(local)}"
    assert parse_when(text, now=now, zone=zone) == instant
    zulu = f"{instant:%Y-%m-%d}{separator}{instant:%H:%M:%S.%f}Z"
    assert parse_when(zulu, now=now, zone=zone) == instant
    if not instant.microsecond:
        plain = f"{local:%Y-%m-%dT%H:%M:%S}{_offset_text(local)}"
        assert parse_when(plain, now=now, zone=zone) == instant


def _read_in_zone(text: str, instant: datetime, now: datetime, requester: tzinfo,
                  zone_for_dst: tzinfo) -> None:
    """Parse `text` (written as `instant`'s wall time in `zone_for_dst`); only a repeated
    local hour may be refused, and then the refusal names the instant."""
    local = instant.astimezone(zone_for_dst)
    repeated = (local.replace(fold=0).astimezone(UTC) != local.replace(fold=1).astimezone(UTC))
    try:
        resolved = parse_when(text, now=now, zone=requester)
    except InvalidInput as error:
        assert repeated and "happens twice" in str(error)
        assert f"{instant:%Y-%m-%d %H:%M:%S} UTC" in str(error)
        return
    assert resolved == instant


@PROPERTY
@given(instant=instants.map(lambda i: i.replace(microsecond=0)), now=nows,
       zone_name=st.sampled_from(ZONE_NAMES), requester=st.sampled_from(ZONES),
       precision=st.sampled_from(["seconds", "minutes"]))
def test_date_time_with_a_zone_name_round_trips(instant, now, zone_name, requester, precision):
    zone = ZoneInfo(zone_name)
    if precision == "minutes":
        instant = instant.replace(second=0)
    local = instant.astimezone(zone)
    clock = f"{local:%H:%M:%S}" if precision == "seconds" else f"{local:%H:%M}"
    _read_in_zone(f"{local:%Y-%m-%d} {clock} {zone_name}", instant, now, requester, zone)
    _read_in_zone(f"{local:%Y-%m-%d} {clock} {zone_name.lower()}", instant, now, requester,
                  zone)


@PROPERTY
@given(instant=instants.map(lambda i: i.replace(microsecond=0)), now=nows,
       requester=st.sampled_from(ZONES), utc_word=st.sampled_from(["UTC", "Z", "utc", "+00:00"]))
def test_date_time_without_a_zone_and_in_utc_round_trip(instant, now, requester, utc_word):
    local = instant.astimezone(requester)
    _read_in_zone(f"{local:%Y-%m-%d %H:%M:%S}", instant, now, requester, requester)
    assert parse_when(f"{instant:%Y-%m-%d %H:%M:%S} {utc_word}", now=now, zone=requester) == \
        instant


@PROPERTY
@given(instant=instants.map(lambda i: i.replace(microsecond=0)),
       later=st.integers(min_value=0, max_value=86399), requester=st.sampled_from(ZONES))
def test_a_bare_time_round_trips_on_the_requesters_day(instant, later, requester):
    local = instant.astimezone(requester)
    now = instant + timedelta(seconds=later)
    assume(now.astimezone(requester).date() == local.date())  # still "today" there
    _read_in_zone(f"{local:%H:%M:%S}", instant, now, requester, requester)
    if not local.second:
        _read_in_zone(f"{local:%H:%M}", instant, now, requester, requester)
        _read_in_zone(f"{local.hour}:{local:%M}", instant, now, requester, requester)


UNITS = [("minutes", 60), ("minute", 60), ("min", 60), ("mins", 60), ("m", 60),
         ("hours", 3600), ("hour", 3600), ("hr", 3600), ("hrs", 3600), ("h", 3600),
         ("days", 86400), ("day", 86400), ("d", 86400)]


@PROPERTY
@given(now=nows, amount=st.integers(min_value=0, max_value=100_000),
       unit=st.sampled_from(UNITS), compact=st.booleans(), zone=st.sampled_from(ZONES),
       reason=st.sampled_from(["", "bad deploy", "dropped users"]))
def test_ago_round_trips(now, amount, unit, compact, zone, reason):
    word, seconds = unit
    text = f"{amount}{'' if compact else ' '}{word} ago"
    assert parse_when(text, now=now, zone=zone) == now - timedelta(seconds=amount * seconds)
    command = parse_restore_command(f"{text} {reason}")
    assert command == RestoreAt(text, reason)
