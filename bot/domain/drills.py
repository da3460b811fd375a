"""Restore drills: a rehearsal of a point-in-time restore, measured and thrown away.

A drill restores the default branch as it was `DRILL_TARGET_AGE` ago into a branch
`drill-YYYYMMDD-HHMMSS`, verifies it against production, records how long each step took
and deletes the branch again:

    requested ──▶ running ──▶ succeeded | failed
    steps of a running drill: create_branch → wait_branch → verify → delete_branch → done

A failure at any step still goes through `delete_branch` (a drill never leaves its branch
behind); `done` records the outcome. A drill whose verification compared no table fails:
a rehearsal that checked nothing proves nothing.

RTO (recovery time) is measured from the start of the drill until the restored data was
verified. RPO (the data-loss window) is the target instant minus the newest `…_at`
timestamp found in the restored data: an upper bound of what a restore to that instant
would lose, since nothing may have been written in between.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.domain.durations import format_duration
from bot.domain.errors import InvalidInput
from bot.domain.text import escape
from bot.domain.verification import VerificationReport

DRILL_PREFIX = "drill-"
# `drill-YYYYMMDD-HHMMSS`, with `-` and 4 characters of the drill id added when a drill
# of that same second exists already.
DRILL_NAME = re.compile(r"\Adrill-(\d{8})-(\d{6})(?:-[0-9a-f]{4})?\Z")
DRILL_ID = re.compile(r"\A[0-9a-f]{8}\Z")


class DrillState(StrEnum):
    REQUESTED = "requested"  # recorded; nothing sent to Neon yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


OPEN_DRILL_STATES = (DrillState.REQUESTED, DrillState.RUNNING)
FINAL_DRILL_STATES = (DrillState.SUCCEEDED, DrillState.FAILED)

ALLOWED_DRILL_TRANSITIONS: dict[DrillState, frozenset[DrillState]] = {
    DrillState.REQUESTED: frozenset({DrillState.RUNNING, DrillState.FAILED}),
    DrillState.RUNNING: frozenset({DrillState.SUCCEEDED, DrillState.FAILED}),
}


def check_drill_transition(current: DrillState, new: DrillState) -> None:
    if new not in ALLOWED_DRILL_TRANSITIONS.get(current, frozenset()):
        raise ValueError(f"a drill cannot go from {current.value} to {new.value}")


class DrillStep(StrEnum):
    """Where a running drill is; each step is idempotent and stored before it is done."""

    CREATE_BRANCH = "create_branch"  # create the drill branch at the target instant
    WAIT_BRANCH = "wait_branch"  # wait for Neon's operations
    VERIFY = "verify"  # compare with production
    DELETE_BRANCH = "delete_branch"  # always, also after a failure
    DONE = "done"  # record the outcome


STEP_TITLES = {
    DrillStep.CREATE_BRANCH: "Create the drill branch",
    DrillStep.WAIT_BRANCH: "Neon makes it ready",
    DrillStep.VERIFY: "Verify against production",
    DrillStep.DELETE_BRANCH: "Delete the drill branch",
}
TIMED_STEPS = (DrillStep.CREATE_BRANCH, DrillStep.WAIT_BRANCH, DrillStep.VERIFY,
               DrillStep.DELETE_BRANCH)


@dataclass(frozen=True)
class Drill:
    """A restore drill, as stored."""

    id: str
    state: DrillState
    started_by: str  # a Slack user id
    target_instant: datetime  # the instant the default branch is restored to
    branch_name: str  # drill-YYYYMMDD-HHMMSS (UTC, the drill's creation)
    created_at: datetime
    updated_at: datetime
    version: int = 1  # bumped by every change: the compare-and-set token
    step: DrillStep = DrillStep.CREATE_BRANCH
    channel_id: str | None = None  # where it was asked for
    source_branch_id: str | None = None  # production: the default branch
    source_branch_name: str | None = None
    branch_id: str | None = None  # the drill branch, once Neon created it
    operation_ids: tuple[str, ...] = ()
    started_at: datetime | None = None  # running since; the RTO counts from here
    step_started_at: datetime | None = None  # when the current step began
    step_timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    newest_restored_at: datetime | None = None  # the newest …_at value in the restored data
    verification: dict[str, Any] | None = None  # the verification report, as stored
    summary: str | None = None  # the verification's one-line summary
    error: str | None = None  # what failed
    failed_step: DrillStep | None = None  # at which step it failed
    next_step: str | None = None  # what to do about it
    cleanup_error: str | None = None  # the drill branch could not be deleted
    branch_deleted: bool = False
    finished_at: datetime | None = None
    card_channel: str | None = None
    card_ts: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_DRILL_STATES

    @property
    def failing(self) -> bool:
        """Something went wrong; the drill ends failed once its branch is cleaned up."""
        return self.error is not None or self.cleanup_error is not None


def new_drill_id() -> str:
    return secrets.token_hex(4)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("drill times must be timezone-aware")
    return at.astimezone(UTC)


def drill_branch_name(at: datetime, drill_id: str | None = None) -> str:
    """`drill-YYYYMMDD-HHMMSS` in UTC; `drill-YYYYMMDD-HHMMSS-<4 of the id>` when given
    the drill id (for a second drill within the same second)."""
    name = _utc(at).strftime("drill-%Y%m%d-%H%M%S")
    return f"{name}-{drill_id[:4]}" if drill_id else name


def is_drill_name(name: str) -> bool:
    return DRILL_NAME.match(name) is not None


def drill_target(now: datetime, target_age: timedelta) -> datetime:
    """The instant a drill started at `now` restores to."""
    if target_age <= timedelta(0):
        raise ValueError("a drill's target age must be positive")
    return _utc(now) - target_age


def seconds_between(start: datetime, end: datetime) -> float:
    """Elapsed seconds, never negative (a clock that stepped back counts as no time)."""
    return round(max(0.0, (_utc(end) - _utc(start)).total_seconds()), 3)


def rto_seconds(started_at: datetime, verified_at: datetime) -> float:
    """Recovery time: from the drill's start until the restored data was verified."""
    return seconds_between(started_at, verified_at)


def parse_timestamp(text: str | None) -> datetime | None:
    """An RFC 3339 / ISO timestamp as an aware UTC datetime (a value without zone is taken
    as UTC); None for None and for what has no such form (`infinity`, BC dates)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z")
                                      else text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def newest_before(values: Iterable[str | None], instant: datetime) -> datetime | None:
    """The newest timestamp at or before `instant`. Later values (an `expires_at`, a
    `scheduled_at`) say nothing about what a restore to `instant` lost, so they are left
    out; None when nothing remains."""
    limit = _utc(instant)
    found = [when for when in map(parse_timestamp, values) if when is not None]
    eligible = [when for when in found if when <= limit]
    return max(eligible) if eligible else None


def rpo_seconds(target_instant: datetime, newest: datetime | None) -> float | None:
    """The data-loss window: target instant minus the newest restored timestamp, never
    below 0 (data at or after the instant lost nothing); None when nothing is known."""
    if newest is None:
        return None
    return seconds_between(newest, target_instant)


def describe_seconds(seconds: float | None) -> str:
    """`0.4 s`, `12 s`, `3 min 5 s`, `2 h 4 min`; `unknown` for None."""
    if seconds is None:
        return "unknown"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


# --- the /drill command --------------------------------------------------------------

DRILL_USAGE = (
    "`/drill start` rehearse a restore now: a branch of the default branch as it was a "
    "while ago (DRILL_TARGET_AGE), verified against production, timed (RTO), its data-loss "
    "window measured (RPO), then deleted; the report goes to the alerts channel\n"
    "`/drill status` the drill running now, or the last one\n"
    "`/drill history` the latest drills with their RTO and RPO\n"
    "`/drill help` this help"
)


@dataclass(frozen=True)
class DrillStart:
    pass


@dataclass(frozen=True)
class DrillStatusCommand:
    pass


@dataclass(frozen=True)
class DrillHistory:
    pass


@dataclass(frozen=True)
class DrillHelp:
    pass


DrillCommand = DrillStart | DrillStatusCommand | DrillHistory | DrillHelp

_SUBCOMMANDS: dict[str, DrillCommand] = {
    "start": DrillStart(), "status": DrillStatusCommand(), "history": DrillHistory(),
    "help": DrillHelp(),
}


def _shown(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return escape(text if len(text) <= 40 else text[:40] + "…")


def parse_drill_command(text: str) -> DrillCommand:
    """Read the text after `/drill`; nothing at all shows the help. Raises InvalidInput
    with what is accepted."""
    words = text.split()
    if not words:
        return DrillHelp()
    subcommand = words[0].lower()
    parsed = _SUBCOMMANDS.get(subcommand)
    if parsed is None:
        raise InvalidInput(f"`{_shown(words[0])}` is not a /drill command. Accepted: "
                           f"{', '.join(_SUBCOMMANDS)}.\n{DRILL_USAGE}")
    if len(words) > 1:
        raise InvalidInput(f"`/drill {subcommand}` takes nothing after it (got "
                           f"`{_shown(' '.join(words[1:]))}`).\n{DRILL_USAGE}")
    return parsed


# --- what a drill found, in words (bot.services.drills) --------------------------------


def restored_timestamps(report: VerificationReport) -> list[str | None]:
    """Every newest `…_at` value read on the restored (target) side."""
    return [target for table in report.tables for (_, target) in table.newest.values()]


def verification_failure(report: VerificationReport, drill: Drill, source_name: str,
                          target_age: timedelta) -> tuple[str, str]:
    """(what failed, what to do next) for a verification that did not pass: mrkdwn-ready,
    with the names and messages from Neon and PostgreSQL escaped."""
    instant = utc_text(drill.target_instant)
    age = format_duration(target_age)
    source = escape(source_name)
    if report.error:
        return (f"Verification could not finish: {escape(report.error)}",
                "Check that Lifeguard can reach Neon's computes (`python -m bot doctor`), "
                "then run `/drill start` again.")
    if report.compared_tables == 0 and report.missing_in_target:
        missing = ", ".join(escape(name) for name in report.missing_in_target[:5])
        more = (f" and {len(report.missing_in_target) - 5} more"
                if len(report.missing_in_target) > 5 else "")
        return (f"The drill compared no tables: none of production's tables ({missing}"
                f"{more}) are in `{source}` as restored to {instant}, so nothing was "
                "verified.",
                f"If those tables were created less than {age} ago, they did not exist at the "
                "target instant: run the drill again once they are older than DRILL_TARGET_AGE "
                f"({age}). Otherwise a point-in-time restore is not giving your data back: "
                "investigate now (the restore window, the default branch) before you need it.")
    if report.compared_tables == 0:
        return (f"The drill compared no tables: production (`{source}`) has no tables, "
                "so nothing was verified.",
                "Check that NEON_PROJECT_ID names the production project and that its "
                "default branch holds the data; a drill that compares nothing proves nothing.")
    return (f"Verification failed: {report.summary()}",
            "Look at what is listed as missing or failed above: a restore to this instant "
            "would not give that back. Fix the cause (or the VERIFY_CHECKS check), then run "
            "`/drill start` again.")


def utc_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
