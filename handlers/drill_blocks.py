"""Block Kit for restore drills: the report card, answers to /drill, the reminder. Pure
functions from data to messages; connection strings never appear in any of them. Branch
names (the default branch's comes from Neon) are escaped where they are written in;
errors, advice and verification summaries come mrkdwn-ready (bot.domain.text)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.domain.drills import (
    DRILL_USAGE,
    STEP_TITLES,
    TIMED_STEPS,
    Drill,
    DrillState,
    DrillStep,
    describe_seconds,
)
from bot.domain.durations import humanize_age
from bot.domain.text import escape
from bot.domain.verification import VerificationReport
from bot.services.drills import DrillOverview
from handlers import ids
from handlers.blocks import Message, context, ephemeral, section, usage_help, when
from handlers.verification_blocks import table_report

_STATE_MARK = {
    DrillState.REQUESTED: ":hourglass_flowing_sand:",
    DrillState.RUNNING: ":hourglass_flowing_sand:",
    DrillState.SUCCEEDED: ":white_check_mark:",
    DrillState.FAILED: ":x:",
}
_IN_PROGRESS = {
    DrillStep.CREATE_BRANCH: "creating the drill branch…",
    DrillStep.WAIT_BRANCH: "Neon is creating the drill branch…",
    DrillStep.VERIFY: "verifying against production…",
    DrillStep.DELETE_BRANCH: "deleting the drill branch…",
    DrillStep.DONE: "recording the result…",
}


def drill_help(problem: str | None = None) -> Message:
    return usage_help("Restore drills", DRILL_USAGE, problem)


def drill_started(drill: Drill, alerts_channel: str) -> Message:
    return ephemeral(
        f":stopwatch: Drill `{drill.id}` started: the default branch as it was at "
        f"{when(drill.target_instant)} goes into `{escape(drill.branch_name)}`, is verified "
        f"against production, then deleted. The report is posted in <#{alerts_channel}>; "
        "`/drill status` shows where it is.")


def _headline(drill: Drill) -> str:
    mark = _STATE_MARK[drill.state]
    who = f"<@{drill.started_by}>"
    if drill.state == DrillState.SUCCEEDED:
        return f"{mark} *Restore drill `{drill.id}` succeeded* (started by {who})"
    if drill.state == DrillState.FAILED:
        return f"{mark} *Restore drill `{drill.id}` failed* (started by {who})"
    doing = _IN_PROGRESS[drill.step] if drill.state == DrillState.RUNNING else "starting…"
    if drill.state == DrillState.RUNNING and drill.error and drill.step in (
            DrillStep.DELETE_BRANCH, DrillStep.DONE):
        doing = f"failed at “{STEP_TITLES[drill.failed_step or drill.step]}”; " + doing
    return f"{mark} *Restore drill `{drill.id}`* (started by {who}): {doing}"


def _source(drill: Drill) -> str:
    """The branch the drill restores, as Neon names it (escaped)."""
    return (f"`{escape(drill.source_branch_name)}`" if drill.source_branch_name
            else "the default branch")


def _what(drill: Drill) -> str:
    source = _source(drill)
    return (f"Restores {source} as it was at {when(drill.target_instant)} into "
            f"`{escape(drill.branch_name)}`, verifies it against production (tables, row counts, "
            "connectivity), times each step and deletes the branch again.")


def _step_line(drill: Drill, step: DrillStep) -> str:
    title = STEP_TITLES[step]
    seconds = drill.step_timings.get(step.value)
    took = f" · {describe_seconds(seconds)}" if seconds is not None else ""
    if drill.failed_step == step:
        return f":x: {title}{took} (failed)"
    if step == DrillStep.DELETE_BRANCH and drill.cleanup_error:
        return f":x: {title}{took} (not deleted)"
    if seconds is not None and (drill.step != step or drill.state in (DrillState.SUCCEEDED,
                                                                      DrillState.FAILED)):
        return f":white_check_mark: {title}{took}"
    if drill.state == DrillState.RUNNING and drill.step == step:
        return f":hourglass_flowing_sand: {title} (in progress)"
    if drill.failed_step is not None and step != DrillStep.DELETE_BRANCH:
        return f":heavy_minus_sign: {title} (skipped after the failure)"
    return f":white_small_square: {title}"


def _steps(drill: Drill) -> str:
    return "*Steps*\n" + "\n".join(_step_line(drill, step) for step in TIMED_STEPS)


def _measures(drill: Drill) -> str:
    if drill.rto_seconds is not None:
        rto = (f"*RTO* (start → data verified): *{describe_seconds(drill.rto_seconds)}*")
    elif drill.failing:
        rto = "*RTO*: not measured: the restored data was not verified"
    else:
        rto = "*RTO* (start → data verified): not yet measured"
    if drill.rpo_seconds is not None and drill.newest_restored_at is not None:
        newest = drill.newest_restored_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        rpo = (f"*RPO* (data-loss window): at most *{describe_seconds(drill.rpo_seconds)}* "
               f"(newest `…_at` in the restored data {newest}, target "
               f"{drill.target_instant.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)")
    elif drill.verification is not None:
        rpo = ("*RPO* (data-loss window): unknown: the restored data has no `…_at` "
               "timestamp at or before the target instant")
    else:
        rpo = "*RPO* (data-loss window): not yet measured"
    return f"{rto}\n{rpo}"


def _verification(drill: Drill) -> list[dict[str, Any]]:
    if drill.verification is None:
        return []
    report = VerificationReport.from_dict(drill.verification)
    passed = report.ok and report.compared_tables > 0
    mark = ":white_check_mark:" if passed else ":x:"
    # The tables and counts checked, by name: what a drill report filed as evidence says.
    return [section(f"{mark} *Verification* ({_tables(report.compared_tables)} compared, "
                    f"{report.seconds:.1f} s): {report.summary()}"),
            *table_report(report, here="restored", source="production")]


def _tried(drill: Drill) -> str:
    """What was tried, in the order it was, from the stored steps."""
    source, instant = _source(drill), drill.target_instant.astimezone(UTC)
    phrases = {
        DrillStep.CREATE_BRANCH: f"creating `{escape(drill.branch_name)}` from {source} as it "
                                 f"was at {instant:%Y-%m-%d %H:%M:%S} UTC",
        DrillStep.WAIT_BRANCH: "waiting for Neon to make it ready",
        DrillStep.VERIFY: "comparing its tables and row counts with production",
    }
    done = [phrase + (" (failed)" if drill.failed_step == step else " (done)")
            for step, phrase in phrases.items() if step.value in drill.step_timings]
    if drill.branch_deleted:
        done.append("deleting the drill branch (done)")
    elif drill.cleanup_error:
        done.append("deleting the drill branch (failed)")
    return "; ".join(done) + "." if done else "nothing reached Neon."


def _tables(count: int) -> str:
    return f"{count} table{'' if count == 1 else 's'}"


def _failure(drill: Drill) -> list[dict[str, Any]]:
    if not drill.failing:
        return []
    what = " ".join(filter(None, (drill.error, drill.cleanup_error)))
    where = f" (at “{STEP_TITLES[drill.failed_step]}”)" if drill.failed_step in STEP_TITLES \
        else ""
    return [section(f"*What failed*{where}: {what}"),
            section(f"*What was tried:* {_tried(drill)}"),
            section(f"*What to do next:* {drill.next_step or 'run `/drill start` again.'}")]


def drill_card(drill: Drill) -> Message:
    """The drill's report card in the alerts channel, updated in place at every step."""
    facts = [f"Started {when(drill.created_at)}"]
    if drill.finished_at:
        facts.append(f"finished {when(drill.finished_at)}")
    if drill.state in (DrillState.SUCCEEDED, DrillState.FAILED):
        facts.append("drill branch deleted" if drill.branch_deleted
                     else f":warning: `{escape(drill.branch_name)}` still exists")
    facts.append("`/drill history` lists past drills")
    blocks: list[dict[str, Any]] = [
        section(_headline(drill)),
        section(_what(drill)),
        section(_steps(drill)),
        section(_measures(drill)),
        *_verification(drill),
        *_failure(drill),
        context(" · ".join(facts)),
    ]
    text = f"Restore drill {drill.id}: {drill.state.value}"
    if drill.state == DrillState.FAILED and drill.error:
        text += f": {drill.error}"
    return {"text": text[:3000], "blocks": blocks}


def drill_line(drill: Drill) -> str:
    """One drill in a list: when, outcome, RTO, RPO, who."""
    mark = _STATE_MARK[drill.state]
    parts = [f"{mark} `{drill.id}` · {drill.state.value}", when(drill.created_at)]
    if drill.rto_seconds is not None:
        parts.append(f"RTO {describe_seconds(drill.rto_seconds)}")
    if drill.rpo_seconds is not None:
        parts.append(f"RPO ≤ {describe_seconds(drill.rpo_seconds)}")
    if drill.verification is not None:
        parts.append(f"{_tables(int(drill.verification.get('compared_tables', 0)))} compared")
    if drill.state == DrillState.FAILED and drill.error:
        error = drill.error if len(drill.error) <= 120 else drill.error[:120] + "…"
        parts.append(error)
    parts.append(f"by <@{drill.started_by}>")
    return " · ".join(parts)


def drill_history(drills: list[Drill]) -> Message:
    if not drills:
        return ephemeral("No restore drills yet. `/drill start` runs one.")
    return ephemeral(f"{len(drills)} latest restore drills",
                     [section(f"*Restore drills* (latest {len(drills)})"),
                      *[section(drill_line(d)) for d in drills[:40]]])


def drill_status(overview: DrillOverview, now: datetime) -> Message:
    blocks: list[dict[str, Any]] = []
    if overview.current is not None:
        blocks += drill_card(overview.current)["blocks"]
        text = f"Restore drill {overview.current.id} is {overview.current.state.value}"
    elif overview.latest is not None:
        text = "No restore drill is running"
        blocks.append(section(f"No restore drill is running. The last one, "
                              f"{humanize_age(now - overview.latest.created_at)} ago:"))
        blocks += drill_card(overview.latest)["blocks"]
    else:
        return ephemeral("No restore drill has run yet. `/drill start` runs one.")
    success = overview.last_success
    if success is None:
        blocks.append(context(":warning: No drill has succeeded yet."))
    elif overview.current is None or success.id != overview.current.id:
        blocks.append(context(f"Last successful drill: `{success.id}`, "
                              f"{humanize_age(now - success.created_at)} ago "
                              f"(RTO {describe_seconds(success.rto_seconds)}, "
                              f"RPO ≤ {describe_seconds(success.rpo_seconds)})."))
    return ephemeral(text, blocks[:50])


def drill_reminder(last_success: Drill | None = None, *,
                   now: datetime | None = None) -> Message:
    """The scheduled reminder (first Monday of each quarter by default), with a
    "Start drill" button (`drill.start`)."""
    now = now or datetime.now(UTC)
    if last_success is None:
        last = "No restore drill has succeeded yet."
    else:
        last = (f"The last successful drill was {humanize_age(now - last_success.created_at)} "
                f"ago (RTO {describe_seconds(last_success.rto_seconds)}, "
                f"RPO ≤ {describe_seconds(last_success.rpo_seconds)}).")
    text = ("Time for a restore drill: restore the default branch as it was a while ago into "
            "a throwaway branch, verify it against production, measure RTO and RPO, and "
            "delete it again. Nothing in production changes.")
    return {"text": f":stopwatch: {text}", "blocks": [
        section(f":stopwatch: *{text}*"),
        context(f"{last} `/drill start` does the same."),
        {"type": "actions", "block_id": "drill.reminder", "elements": [
            {"type": "button", "action_id": ids.DRILL_START, "value": "start", "style": "primary",
             "text": {"type": "plain_text", "text": "Start drill"}},
        ]},
    ]}
