"""Block Kit builders for exports: pure functions from data to Slack messages. Outside
values (a reason, a branch or database name, a bucket) are escaped where they are written
in; a stored error comes mrkdwn-ready (bot.domain.text)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.durations import humanize_age
from bot.domain.export_jobs import Export, ExportState, ExportStep, throughput
from bot.domain.text import escape
from bot.services.exports import ExportListing
from handlers.blocks import Message, context, ephemeral, section, size, when

SCHEDULER = "scheduler"
_DOING = {
    ExportStep.CREATE_BRANCH: "making its branch",
    ExportStep.WAIT_BRANCH: "waiting for Neon to make its branch",
    ExportStep.DUMP: "dumping",
    ExportStep.FINISH: "writing SHA256SUMS and manifest.json",
    ExportStep.VERIFY: "reading every file back to check it",
    ExportStep.DROP_BRANCH: "deleting its branch",
    ExportStep.CLEANUP: "removing what it wrote and its branch",
    ExportStep.DELETE: "deleting its files (retention)",
}


def elapsed(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def rate(bytes_per_second: float | None) -> str:
    return "–" if bytes_per_second is None else f"{size(int(bytes_per_second))}/s"


def _who(user_id: str) -> str:
    return "the schedule" if user_id == SCHEDULER else f"<@{user_id}>"


def export_accepted(export: Export) -> Message:
    return ephemeral(f":hourglass_flowing_sand: Export `{export.id}` of "
                     f"{escape(export.source)} is under way. Its progress is posted in this "
                     "channel.")


def export_card(export: Export, now: datetime, *, written: int | None = None,
                database: str | None = None) -> Message:
    """The one status message of an export, updated in place; `written` and `database`
    while a dump runs."""
    source = escape(export.source)
    reason = f" · _{escape(export.reason)}_" if export.reason else ""
    name = f"`{export.id}`"
    if export.state == ExportState.SUCCEEDED:
        headline = f":white_check_mark: Export {name} of {source} is done and verified"
    elif export.state in (ExportState.FAILED, ExportState.CLEANING):
        headline = f":x: Export {name} of {source} failed"
    elif export.state in (ExportState.DELETING, ExportState.DELETED):
        headline = f":wastebasket: Export {name} of {source} was let go by retention"
    else:
        headline = f":hourglass_flowing_sand: Exporting {source} ({name})…"
    blocks: list[dict[str, Any]] = [section(f"{headline} (asked by "
                                            f"{_who(export.requested_by)}){reason}")]
    facts = [f"Started {when(export.created_at)}"]
    if export.state == ExportState.RUNNING:
        doing = _DOING.get(export.step, export.step.value)
        if export.step == ExportStep.DUMP:
            current = database or export.next_database() or ""
            doing = f"dumping database `{escape(current)}`"
        shown = export.size if written is None else written
        facts += [doing, f"{size(shown)} written", f"{elapsed(export.seconds(now))} elapsed"]
    elif export.state == ExportState.SUCCEEDED and export.finished_at is not None:
        seconds = export.seconds(export.finished_at)
        facts += [f"{size(export.size)} in {len(export.dumps)} file(s)",
                  f"took {elapsed(seconds)}",
                  f"{rate(throughput(export.size, seconds))}",
                  "archives read whole" if export.archive_read else "checksums checked"]
    blocks.append(context(" · ".join(facts)))
    if export.state == ExportState.SUCCEEDED:
        blocks.append(section(f"Export id `{export.id}` · `/restore export {export.id}` "
                              "restores it; `/backup exports` lists every export."))
    if export.error:
        blocks.append(section(f"*What went wrong:* {export.error}"))
    if export.state == ExportState.FAILED:
        cleaned = (f"*Cleaning up:* {export.cleanup_error}" if export.cleanup_error else
                   "Nothing it wrote is left and its branch is deleted; it is not listed as "
                   "an export. Fix the cause and run `/backup export` again.")
        blocks.append(context(cleaned))
    elif export.cleanup_error:
        blocks.append(context(f":warning: {export.cleanup_error}"))
    return {"text": headline, "blocks": blocks}


def export_state(export: Export, in_store: set[str] | None = None) -> str:
    """Where an export stands, for a listing: under way, gone from the bucket (when the
    bucket was read: `in_store`), or how its last check went."""
    if export.state != ExportState.SUCCEEDED:
        return f"_{export.state.value}: {_DOING.get(export.step, export.step.value)}_"
    if in_store is not None and export.id not in in_store:
        return ":warning: _its manifest is no longer in the bucket_"
    if export.check_passed:
        return (":white_check_mark: last check passed "
                + ("(archives read whole)" if export.archive_read else "(checksums)")
                + (f" {when(export.checked_at)}" if export.checked_at else ""))
    return ":x: last check failed"


def export_list(listing: ExportListing, now: datetime) -> Message:
    if not listing.exports and not listing.unrecorded:
        return ephemeral("No exports yet. `/backup export [reason]` takes one.")
    blocks: list[dict[str, Any]] = [section(f"*Exports* ({len(listing.exports)})")]
    for export in listing.exports:
        age = humanize_age(now - export.created_at)
        state = export_state(export, listing.in_store)
        blocks.append(section(
            f"`{export.id}` · {escape(export.source)} · {age} old · {size(export.size)}\n"
            f"{when(export.created_at)} · by {_who(export.requested_by)} · {state}"))
    for found in listing.unrecorded[:10]:
        blocks.append(context(f"`{escape(found.export_id)}` · {when(found.started_at)} · "
                              f"{size(found.size)} · in the bucket, not recorded by this "
                              "Lifeguard (retention leaves it alone)"))
    if listing.problem:
        blocks.append(context(f":warning: The bucket could not be read, so this is "
                              f"Lifeguard's records only: {listing.problem}"))
    return ephemeral(f"{len(listing.exports)} exports", blocks[:50])
