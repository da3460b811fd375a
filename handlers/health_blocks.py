"""Block Kit for health, alerts, reminders, pruning and the schedule: pure functions from
data to messages, and `SlackOpsNotifier`, which posts them (alerts and the daily digest to
ALERTS_CHANNEL, reminders in the thread of an approval card). Check values, problems and
alert texts come mrkdwn-ready; branch names are escaped where they are written in
(bot.domain.text)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient

from bot.domain.durations import humanize_age
from bot.domain.health import Check, Level
from bot.domain.requests import ACTION_TITLES, ChangeRequest
from bot.domain.restores import REQUEST_ID
from bot.domain.text import escape
from bot.services.alerts import Alert
from bot.services.health import HealthReport
from bot.services.scheduled_backups import PruneView
from handlers import ids
from handlers.blocks import Message, context, ephemeral, section, when
from handlers.directory import SlackDirectory
from handlers.incident_blocks import open_incident_section

MAX_BLOCKS = 50

ICON = {Level.OK: ":large_green_circle:", Level.WARN: ":large_yellow_circle:",
        Level.FAIL: ":red_circle:"}


def level_text(level: Level) -> str:
    return level.value.upper()


# --- health --------------------------------------------------------------------------------


def check_block(check: Check) -> dict[str, Any]:
    lines = [f"{ICON[check.level]} *{check.title}* · {level_text(check.level)}",
             f"{check.value} · _threshold: {check.threshold}_"]
    if check.advice:
        lines.append(check.advice)
    return section("\n".join(lines))


def _report_blocks(report: HealthReport, heading: str) -> list[dict[str, Any]]:
    blocks = [section(f"{ICON[report.level]} *{heading}: {level_text(report.level)}*"),
              *[check_block(c) for c in report.checks],
              context(f"As of {when(report.at)}")]
    if report.problems:
        blocks.append(context(":warning: Could not read " + "; ".join(report.problems)))
    return blocks


def _report_text(report: HealthReport, heading: str) -> str:
    worst = [f"{c.title} {level_text(c.level)} ({c.value})" for c in report.checks
             if c.level != Level.OK]
    return (f"{heading}: {level_text(report.level)}"
            + (" · " + " · ".join(worst) if worst else " · every check OK"))


def health_report(report: HealthReport) -> Message:
    """The report on demand (`/backup health`): only the asker sees it."""
    heading = "Health report"
    return ephemeral(_report_text(report, heading), _report_blocks(report, heading))


def health_digest(report: HealthReport) -> Message:
    """The daily digest in ALERTS_CHANNEL."""
    heading = "Daily health report"
    return {"text": _report_text(report, heading), "blocks": _report_blocks(report, heading)}


def health_alert(check: Check, previous: Level | None) -> Message:
    was = f"was {level_text(previous)}" if previous else "first report"
    text = (f"Health alert: {check.title} is {level_text(check.level)} ({was}): "
            f"{check.value}")
    if check.level == Level.OK:
        text = f"Health: {check.title} is OK again ({was}): {check.value}"
    blocks = [section(f"{ICON[check.level]} {text}"), context(f"Threshold: {check.threshold}"),
              *([section(check.advice)] if check.advice else [])]
    if check.level != Level.OK:  # a failing check is an alert about a failure
        blocks.append(open_incident_section(None, "_Coordinate it in an incident channel._"))
    return {"text": text, "blocks": blocks}


# --- alerts and reminders -------------------------------------------------------------------


def alert_message(alert: Alert) -> Message:
    text = f":rotating_light: {alert.title}"
    blocks = [section(f"*{text}*")]
    if alert.error:
        blocks.append(section(f"*What failed:* {alert.error}"))
    blocks += [section(f"*What was tried:* {alert.tried}"),
               section(f"*What to do next:* {alert.next_step}"),
               open_incident_section(alert.subject if REQUEST_ID.match(alert.subject) else None,
                                     "_Coordinate it in an incident channel._")]
    return {"text": f"{text}: {alert.error}" if alert.error else text, "blocks": blocks}


def reminder(request: ChangeRequest, waited: timedelta, mentions: str) -> Message:
    text = (f":bell: {mentions}: request `{request.id}` "
            f"({ACTION_TITLES[request.plan.action].lower()} asked by "
            f"<@{request.requester}>) has waited {humanize_age(waited)} for approval; "
            f"it expires {when(request.expires_at)}.")
    return {"text": text, "blocks": [section(text)]}


# --- pruning ----------------------------------------------------------------------------------


def _lines(title: str, lines: list[str]) -> list[dict[str, Any]]:
    """A heading and the lines, in sections of at most ~3000 characters."""
    blocks, chunk = [section(title)], ""
    for line in lines:
        if len(chunk) + len(line) + 1 > 2900:
            blocks.append(section(chunk))
            chunk = ""
        chunk += line + "\n"
    if chunk:
        blocks.append(section(chunk))
    return blocks


def prune_plan(view: PruneView) -> Message:
    plan = view.plan
    count = len(plan.delete)
    intro = (f"*Retention policy:* {view.policy.describe()} (periods in {view.zone}). "
             "Only backups Lifeguard took and recorded are ever deleted; the default "
             "branch, protected branches and branches made by others are kept.")
    delete = [f":wastebasket: `{escape(c.name)}` · {when(c.created_at)}" for c in plan.delete]
    keep = [f":white_check_mark: `{escape(c.name)}` · {when(c.created_at)} · "
            f"_{plan.reasons.get(c.name, 'kept')}_" for c in plan.keep]
    blocks = [section(intro),
              *_lines(f"*Would delete ({count})*", delete or ["Nothing."]),
              *_lines(f"*Keeps ({len(plan.keep)})*", keep or ["Nothing."])]
    text = (f"Pruning would delete {count} backup(s) and keep {len(plan.keep)}."
            if count else f"Nothing to prune: all {len(plan.keep)} backup(s) are kept.")
    blocks = blocks[:MAX_BLOCKS - 2]
    if count:
        noun = "backup" if count == 1 else "backups"
        blocks.append({"type": "actions", "block_id": "backup.prune", "elements": [
            {"type": "button", "action_id": ids.PRUNE_CONFIRM, "style": "danger",
             "text": {"type": "plain_text",
                      "text": f"Ask a second person to delete {count} {noun}"},
             "value": view.plan_hash},
            {"type": "button", "action_id": ids.PRUNE_CANCEL,
             "text": {"type": "plain_text", "text": "Cancel"}, "value": view.plan_hash},
        ]})
    blocks.insert(0, section(f":broom: {text}"))
    return ephemeral(text, blocks[:MAX_BLOCKS])


def prune_cancelled() -> Message:
    return {**ephemeral("Nothing was deleted."), "replace_original": True}


# --- the schedule -------------------------------------------------------------------------------


def _describe(value: Any) -> list[str]:
    """Whatever the scheduler describes its jobs as: text, a mapping, or rows of those."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [f"*{k}*: {_flat(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [_flat(item) for item in value]
    return [_flat(value)]


def _flat(value: Any) -> str:
    if hasattr(value, "name") and hasattr(value, "trigger_text"):  # bot.scheduler's jobs
        next_run = getattr(value, "next_run", None)
        setting = getattr(value, "setting", None)
        return (f"*{value.name}* · {getattr(value, 'description', '')} · "
                f"`{value.trigger_text}`" + (f" ({setting.upper()})" if setting else "")
                + (f" · next {when(next_run)}" if isinstance(next_run, datetime) else ""))
    if isinstance(value, Mapping):
        return " · ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    if isinstance(value, (list, tuple)):
        return " · ".join(str(v) for v in value if v not in (None, ""))
    if hasattr(value, "__dataclass_fields__"):
        return " · ".join(f"{k}: {getattr(value, k)}" for k in value.__dataclass_fields__
                          if getattr(value, k) not in (None, ""))
    return str(value)


def schedule_lines(described: Any) -> list[str]:
    """One mrkdwn line for each scheduled job (the App Home's "next scheduled runs")."""
    return _describe(described)


def schedule_view(described: Any) -> Message:
    lines = _describe(described) or ["No scheduled jobs."]
    return ephemeral("Schedule", _lines("*Schedule*", lines)[:MAX_BLOCKS])


# --- posting ---------------------------------------------------------------------------------


class SlackOpsNotifier:
    """Posts alerts and the daily digest to ALERTS_CHANNEL, and approval reminders in the
    thread of the request's card. Errors are raised to the caller, which decides."""

    def __init__(self, client: WebClient, directory: SlackDirectory, *, alerts_channel: str,
                 approvals_channel: str) -> None:
        self.client = client
        self.directory = directory
        self.alerts_channel = alerts_channel
        self.approvals_channel = approvals_channel

    def post_alert(self, alert: Alert) -> None:
        self.client.chat_postMessage(channel=self.alerts_channel, **alert_message(alert))

    def health_changed(self, check: Check, previous: Level | None) -> None:
        self.client.chat_postMessage(channel=self.alerts_channel,
                                     **health_alert(check, previous))

    def health_digest(self, report: HealthReport) -> None:
        self.client.chat_postMessage(channel=self.alerts_channel, **health_digest(report))

    def remind_approvers(self, request: ChangeRequest, waited: timedelta) -> None:
        message = reminder(request, waited, self.directory.mention_approvers())
        channel = request.card_channel or self.approvals_channel
        if request.card_ts:
            self.client.chat_postMessage(channel=channel, thread_ts=request.card_ts,
                                         **message)
        else:
            self.client.chat_postMessage(channel=channel, **message)
