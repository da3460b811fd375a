"""Block Kit builders: pure functions from data to Slack messages.

Each returns a dict ready to pass to ack/respond/chat.postMessage: `text` (the
notification and screen-reader fallback) and `blocks`. Times are shown in UTC and, through
Slack's date formatting, in each reader's own time zone.

Both `text` and the blocks' mrkdwn are read by Slack for mentions and links: every value
from outside (a reason, a branch name) is escaped here where it is written in, and
composed sentences (errors, problems) come mrkdwn-ready; see bot.domain.text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.domain.backups import BACKUP_USAGE, Backup, BackupStatus
from bot.domain.durations import humanize_age
from bot.domain.text import escape
from bot.services.backups import Listing

Message = dict[str, Any]


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section; `text` is mrkdwn-ready (outside values escaped)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def when(at: datetime) -> str:
    """`2026-11-21 14:25 UTC (Sat 21 Nov, 15:25 your time)`: UTC plus the reader's zone."""
    utc = at.astimezone(UTC)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    local = f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"
    return f"{fallback} ({local} your time)"


def size(value: int | None) -> str:
    if value is None:
        return "size unknown"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


def ephemeral(text: str, blocks: list[dict[str, Any]] | None = None) -> Message:
    return {"response_type": "ephemeral", "text": text,
            "blocks": blocks or [section(text)]}


def error_message(text: str) -> Message:
    return ephemeral(f":warning: {text}")


def usage_help(title: str, usage: str, problem: str | None = None) -> Message:
    """A command's usage, after what was wrong with the input when something was."""
    intro = f":warning: {problem}\n\n" if problem else ""
    return ephemeral(f"{intro}*{title}*\n{usage}")


def backup_help(problem: str | None = None) -> Message:
    return usage_help("Backups", BACKUP_USAGE, problem)


def backup_accepted(backup: Backup) -> Message:
    return ephemeral(f":hourglass_flowing_sand: Taking backup `{escape(backup.branch_name)}` "
                     "of the default branch. Progress is posted in this channel.")


def backup_card(backup: Backup) -> Message:
    """The one status message of a backup, updated in place as it moves."""
    who = f"<@{backup.requested_by}>"
    reason = f" · _{escape(backup.reason)}_" if backup.reason else ""
    name = f"`{escape(backup.branch_name)}`"
    headline = {
        BackupStatus.REQUESTED: f":hourglass_flowing_sand: Backup {name} requested by {who}",
        BackupStatus.CREATING: f":hourglass_flowing_sand: Creating backup {name} "
                               f"(requested by {who})…",
        BackupStatus.READY: f":white_check_mark: Backup {name} is ready (requested by {who})",
        BackupStatus.FAILED: f":x: Backup {name} failed (requested by {who})",
        BackupStatus.DELETING: f":wastebasket: Deleting backup {name}…",
        BackupStatus.DELETED: f":wastebasket: Backup {name} was deleted",
    }[backup.status]
    lines = [headline + reason]
    facts = [f"Started {when(backup.created_at)}"]
    if backup.status == BackupStatus.READY:
        facts.append(size(backup.logical_size))
        facts.append(f"expires {when(backup.expires_at)}")
    if backup.status in (BackupStatus.DELETING, BackupStatus.DELETED) and backup.deleted_by:
        facts.append(f"deletion confirmed by <@{backup.deleted_by}>")
    blocks = [section(lines[0]), context(" · ".join(facts))]
    if backup.error:
        next_step = ("Try `/backup now` again." if backup.status == BackupStatus.FAILED
                     else "")
        blocks.append(section(f"*What went wrong:* {backup.error} {next_step}".strip()))
    return {"text": lines[0], "blocks": blocks}


def backup_not_started(backup: Backup) -> Message:
    """A backup that failed before Neon created anything: told only to the requester."""
    return ephemeral(f":x: Backup `{escape(backup.branch_name)}` was not taken: {backup.error} "
                     "Nothing was created.")


def backup_list(listing: Listing, now: datetime) -> Message:
    if not listing.items:
        text = "No backups yet. `/backup now [reason]` takes one."
        return ephemeral(text)
    blocks: list[dict[str, Any]] = [section(f"*Backups* ({len(listing.items)})")]
    for item in listing.items:
        backup, branch = item.backup, item.branch
        age = humanize_age(now - backup.created_at)
        state = "" if backup.status == BackupStatus.READY else f" · _{backup.status.value}_"
        logical = branch.logical_size if branch else backup.logical_size
        expires = branch.expires_at if branch and branch.expires_at else backup.expires_at
        reason = escape(backup.reason) if backup.reason else "no reason given"
        blocks.append(section(
            f"`{escape(backup.branch_name)}`{state}\n{age} old · {size(logical)} · "
            f"expires {when(expires)} · by <@{backup.requested_by}> · {reason}"))
    if listing.neon_problem:
        blocks.append(context(f":warning: Sizes and expiries from Lifeguard's records only: "
                              f"{listing.neon_problem}"))
    return ephemeral(f"{len(listing.items)} backups", blocks[:50])


def home_notice(text: str) -> dict[str, Any]:
    """The Home tab when it cannot be shown: what went wrong instead."""
    return {"type": "home", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Lifeguard"}},
        section(text)]}


def notice_view(text: str) -> dict[str, Any]:
    """A form replaced by what came of submitting it (when that failed)."""
    return {"type": "modal",
            "title": {"type": "plain_text", "text": "Lifeguard"},
            "close": {"type": "plain_text", "text": "Close"},
            "blocks": [section(text)]}
