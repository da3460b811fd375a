"""An incident's timeline: what happened, who did it, when.

Entries come from three places: the incident's own steps (opened, status changes, notes,
closing), and the milestones of the work linked to it (a change request asked, approved,
its Neon operations started and finished, verified, promoted, undone; a backup; a drill).
`milestones_of_*` list every milestone a record's current state implies, each under a
key that is stable for that record, so the timeline keeps each once however often the
record is shown, and a milestone missed during a crash still appears, in order, at the
next change.

An entry's `text` is mrkdwn-ready (bot.domain.text): outside values escaped where they
were written in, composed errors taken as they are. `to_markdown` turns it into plain
Markdown for `/incident timeline` and the closing summary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.domain.backups import Backup, BackupStatus
from bot.domain.drills import Drill, DrillState
from bot.domain.requests import (
    ACTION_TITLES,
    ChangeRequest,
    RequestAction,
    RequestState,
    Step,
)
from bot.domain.restores import PRESERVE_NAME
from bot.domain.text import escape

LIFEGUARD = "lifeguard"  # the actor of what Lifeguard itself did


@dataclass(frozen=True)
class Milestone:
    """Something that happened to a piece of work, once (by `key`)."""

    key: str
    actor: str  # a Slack user id, or LIFEGUARD
    text: str  # mrkdwn-ready
    at: datetime | None = None  # when it happened, when the record says; else when seen


@dataclass(frozen=True)
class TimelineEntry:
    incident_id: str
    key: str
    at: datetime
    actor: str
    text: str  # mrkdwn-ready
    posted_ts: str | None = None  # the message in the incident's channel, once posted


@dataclass(frozen=True)
class LineClaim:
    """The right to post one timeline line, held by `owner` until `until`. Only one
    caller holds it at a time (the store takes it by compare-and-set). `earlier_since` is
    when the claim before this one began, when there was one: its poster died or failed,
    maybe after Slack took the line, so the channel is searched from then before posting."""

    owner: str
    until: datetime
    earlier_since: datetime | None = None


def _what(request: ChangeRequest) -> str:
    plan = request.plan
    source, target = escape(plan.source_branch_name), escape(plan.target_branch_name)
    title = ACTION_TITLES[plan.action]
    if plan.action == RequestAction.RESTORE_POINT_IN_TIME and plan.instant is not None:
        instant = plan.instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{title}: `{source}` as it was at {instant}, into `{target}`"
    if plan.action == RequestAction.PROMOTE:
        return f"{title}: `{target}` restored in place from `{source}`"
    if plan.action == RequestAction.PRUNE_BACKUPS:
        return f"{title}: {len(plan.branches)} backup(s)"
    if plan.action == RequestAction.DELETE_BACKUP:
        return f"{title}: `{source}`"
    return f"{title}: `{source}` into `{target}`"


def is_undo(request: ChangeRequest) -> bool:
    """A promotion of a pre-restore-… branch puts back what an earlier promotion kept."""
    return (request.plan.action == RequestAction.PROMOTE
            and PRESERVE_NAME.match(request.plan.source_branch_name) is not None)


def milestones_of_request(request: ChangeRequest) -> list[Milestone]:
    """Every milestone the request's state implies, oldest first."""
    rid, plan = request.id, request.plan
    key = f"request:{rid}"
    reason = f" · reason: _{escape(request.reason)}_" if request.reason else ""
    found = [Milestone(f"{key}:asked", request.requester,
                       f"asked for request `{rid}` · {_what(request)}{reason}",
                       request.created_at)]
    found += [Milestone(f"{key}:approved:{a.user_id}", a.user_id,
                        f"approved request `{rid}`", a.at) for a in request.approvals]
    state, step = request.state, request.step
    if state in (RequestState.REJECTED, RequestState.CANCELLED):
        verb = "rejected" if state == RequestState.REJECTED else "cancelled"
        found.append(Milestone(f"{key}:{verb}", request.decided_by or LIFEGUARD,
                               f"{verb} request `{rid}`; nothing was run",
                               request.finished_at))
    if state == RequestState.EXPIRED:
        found.append(Milestone(f"{key}:expired", LIFEGUARD,
                               f"request `{rid}` expired without enough approvals; nothing "
                               "was run", request.finished_at))
    ran = state in (RequestState.RUNNING, RequestState.SUCCEEDED) or (
        state == RequestState.FAILED and step is not None)
    if not ran:
        return found
    if request.operation_ids or request.branch_id or step not in (None, Step.CREATE_BRANCH,
                                                                  Step.PROMOTE):
        operations = ", ".join(f"`{escape(o)}`" for o in request.operation_ids) or "none"
        if plan.action == RequestAction.PROMOTE:
            verb = "undo" if is_undo(request) else "promotion"
            what = (f"Neon started the {verb} of request `{rid}`: "
                    f"`{escape(plan.target_branch_name)}` is restored in place from "
                    f"`{escape(plan.source_branch_name)}`, its old "
                    f"state kept as `{escape(plan.preserve_under_name or '')}` · operations "
                    f"{operations}")
        elif plan.action in (RequestAction.DELETE_BACKUP, RequestAction.PRUNE_BACKUPS):
            what = f"Neon is deleting what request `{rid}` names"
        else:
            what = (f"Neon started creating `{escape(plan.target_branch_name)}` for request "
                    f"`{rid}`" + (f" (branch `{escape(request.branch_id)}`)"
                                  if request.branch_id else "")
                    + f" · operations {operations}")
        found.append(Milestone(f"{key}:neon_started", LIFEGUARD, what))
    if step in (Step.VERIFY, Step.DONE) or request.verification is not None:
        found.append(Milestone(f"{key}:neon_finished", LIFEGUARD,
                               f"Neon finished the operations of request `{rid}`; verifying"))
    if request.verification is not None:
        ok = bool(request.verification.get("ok"))
        found.append(Milestone(f"{key}:verified", LIFEGUARD,
                               f"verification of request `{rid}`: "
                               + ("passed" if ok else "failed")))
    if state == RequestState.SUCCEEDED:
        target = escape(plan.target_branch_name)
        if plan.action == RequestAction.PROMOTE:
            verb = "undone" if is_undo(request) else "promoted"
            text = (f"request `{rid}` done: `{target}` holds "
                    f"`{escape(plan.source_branch_name)}`'s data ({verb}); undo with "
                    f"`/restore promote {escape(plan.preserve_under_name or '')}`")
        elif plan.action in (RequestAction.DELETE_BACKUP, RequestAction.PRUNE_BACKUPS):
            text = f"request `{rid}` done: the backup(s) were deleted"
        else:
            text = f"request `{rid}` done: `{target}` is restored and verified"
        found.append(Milestone(f"{key}:succeeded", LIFEGUARD, text, request.finished_at))
    if state == RequestState.FAILED:
        found.append(Milestone(f"{key}:failed", LIFEGUARD,
                               f"request `{rid}` failed: {request.error or 'no reason given'}",
                               request.finished_at))
    return found


def milestones_of_backup(backup: Backup) -> list[Milestone]:
    key, name = f"backup:{backup.id}", escape(backup.branch_name)
    reason = f" · reason: _{escape(backup.reason)}_" if backup.reason else ""
    found = [Milestone(f"{key}:asked", backup.requested_by,
                       f"asked for backup `{name}`{reason}", backup.created_at)]
    if backup.status in (BackupStatus.READY, BackupStatus.DELETING, BackupStatus.DELETED):
        found.append(Milestone(f"{key}:ready", LIFEGUARD, f"backup `{name}` is ready"
                               + (f" (branch `{escape(backup.branch_id)}`)"
                                  if backup.branch_id else "")))
    if backup.status == BackupStatus.FAILED:
        found.append(Milestone(f"{key}:failed", LIFEGUARD,
                               f"backup `{name}` failed: {backup.error or 'no reason given'}"))
    return found


def milestones_of_drill(drill: Drill) -> list[Milestone]:
    key, name = f"drill:{drill.id}", escape(drill.branch_name)
    found = [Milestone(f"{key}:asked", drill.started_by, f"started restore drill `{name}`",
                       drill.created_at)]
    if drill.state == DrillState.SUCCEEDED:
        rto = f" in {drill.rto_seconds:.0f} s" if drill.rto_seconds is not None else ""
        found.append(Milestone(f"{key}:succeeded", LIFEGUARD,
                               f"restore drill `{name}` succeeded{rto}", drill.finished_at))
    if drill.state == DrillState.FAILED:
        found.append(Milestone(f"{key}:failed", LIFEGUARD,
                               f"restore drill `{name}` failed: "
                               f"{drill.error or 'no reason given'}", drill.finished_at))
    return found


# --- Markdown -----------------------------------------------------------------------------

_USER = re.compile(r"<@([UW][A-Z0-9_]+)(?:\|[^>]*)?>")
_DATE = re.compile(r"<!date\^[0-9]+\^[^|>]*\|([^>]*)>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9_]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")
_BARE_LINK = re.compile(r"<(https?://[^|>]+)>")
_SPECIAL = re.compile(r"<!(?:subteam\^([A-Z0-9]+)|(here|channel|everyone))[^>]*>")


def to_markdown(text: str, names: Mapping[str, str] | None = None) -> str:
    """mrkdwn-ready text as plain Markdown: mentions as `@name`, Slack's dates as their
    UTC text, links as Markdown links, entities back to characters; `*bold*` and
    `_italic_` are the same in both."""
    names = names or {}
    text = _USER.sub(lambda m: f"@{names.get(m.group(1), m.group(1))}", text)
    text = _DATE.sub(lambda m: m.group(1), text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", text)
    text = _BARE_LINK.sub(lambda m: m.group(1), text)
    text = _SPECIAL.sub(lambda m: f"@{m.group(1) or m.group(2)}", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def actor_markdown(actor: str, names: Mapping[str, str]) -> str:
    if actor == LIFEGUARD:
        return "Lifeguard"
    return f"@{names.get(actor, actor)}"


def timeline_markdown(title: str, channel_name: str, entries: list[TimelineEntry],
                      names: Mapping[str, str]) -> str:
    """The whole timeline as a Markdown document, times in UTC."""
    lines = [f"# Timeline of {title}", "", f"Channel: #{channel_name} · times in UTC", ""]
    for entry in entries:
        at = entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"- **{at}** {actor_markdown(entry.actor, names)}: "
                     f"{to_markdown(entry.text, names)}")
    if not entries:
        lines.append("- (nothing recorded)")
    return "\n".join(lines)
