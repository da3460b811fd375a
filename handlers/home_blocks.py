"""The App Home tab, for the person looking at it: the approvals waiting for them (with
Approve / Reject buttons that act as the card's do), their open requests, the open
incidents, the health checks, the latest backups, exports and drill, and the next
scheduled runs. A pure function of what the services read; within Slack's 100 blocks a
view (each part is capped, and the whole is checked)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.domain.backups import Backup
from bot.domain.drills import Drill
from bot.domain.export_jobs import Export
from bot.domain.health import Check
from bot.domain.incidents import Incident
from bot.domain.requests import ACTION_TITLES, ChangeRequest
from bot.domain.text import escape
from handlers import ids
from handlers.blocks import context, section, size, when
from handlers.export_blocks import export_state
from handlers.health_blocks import ICON, level_text
from handlers.incident_blocks import header

VIEW_BLOCKS = 100  # Slack's limit for a Home tab view
PART_ITEMS = 8  # at most this many items in each part


@dataclass(frozen=True)
class HomeFacts:
    """What the Home shows one person; a part that could not be read says why."""

    user_id: str
    waiting: list[ChangeRequest] = field(default_factory=list)  # theirs to decide
    mine: list[ChangeRequest] = field(default_factory=list)  # their open requests
    incidents: list[Incident] = field(default_factory=list)
    checks: list[Check] | None = None  # None: the health report could not be made
    backups: list[Backup] = field(default_factory=list)
    exports: list[Export] | None = None  # None: exports are off
    drill: Drill | None = None
    schedule: list[str] = field(default_factory=list)  # one mrkdwn line a job
    problems: list[str] = field(default_factory=list)


def _part(title: str, lines: list[dict[str, Any]], empty: str) -> list[dict[str, Any]]:
    return [{"type": "divider"}, section(f"*{title}*"),
            *(lines[:PART_ITEMS] or [context(empty)])]


def _approval(request: ChangeRequest) -> list[dict[str, Any]]:
    plan = request.plan
    text = (f"*{ACTION_TITLES[plan.action]}* `{request.id}` asked by <@{request.requester}>: "
            f"`{escape(plan.source_branch_name)}` → `{escape(plan.target_branch_name)}`"
            + (f" · _{escape(request.reason)}_" if request.reason else "")
            + f" · expires {when(request.expires_at)}")
    return [section(text), {"type": "actions", "block_id": f"home.{request.id}", "elements": [
        {"type": "button", "action_id": ids.APPROVE, "value": request.id, "style": "primary",
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": ids.REJECT, "value": request.id, "style": "danger",
         "text": {"type": "plain_text", "text": "Reject"}}]}]


def home_view(facts: HomeFacts) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        header("Lifeguard"),
        section("Backups and restores of your Neon database with a second pair of eyes. "
                "This page shows what needs you now and how things stand; it is refreshed "
                "each time you open it and after each decision. `/backup help`, "
                "`/restore help`, `/drill help` and `/incident help` explain the commands."),
    ]
    waiting = [b for r in facts.waiting[:PART_ITEMS] for b in _approval(r)]
    blocks += [{"type": "divider"}, section("*Waiting for your approval*"),
               *(waiting or [context("Nothing is waiting for you.")])]
    blocks += _part("Your open requests", [context(
        f"`{r.id}` · {ACTION_TITLES[r.plan.action]} · {r.state.value} · "
        f"`{escape(r.plan.target_branch_name)}` · asked {when(r.created_at)}")
        for r in facts.mine], "You have no open requests.")
    blocks += _part("Open incidents", [context(
        (f"<#{i.channel_id}>" if i.channel_id else f"`{i.id}` (opening)")
        + f" · _{escape(i.title)}_ · {i.status.value} · lead <@{i.lead}>")
        for i in facts.incidents], "No open incidents.")
    if facts.checks is None:
        checks = [context(":warning: The health report could not be made just now.")]
    else:
        checks = [context(f"{ICON[c.level]} *{c.title}* · {level_text(c.level)} · {c.value}")
                  for c in facts.checks]
    blocks += _part("Health", checks, "No checks.")
    blocks += _part("Latest backups", [context(
        f"`{escape(b.branch_name)}` · {b.status.value} · {when(b.created_at)} · "
        f"<@{b.requested_by}>") for b in facts.backups], "No backups yet.")
    if facts.exports is not None:
        blocks += _part("Latest exports", [context(
            f"`{e.id}` · {escape(e.source)} · {size(e.size)} · {when(e.created_at)} · "
            f"{export_state(e)}") for e in facts.exports],
            "No exports yet: `/backup export` takes one.")
    drill = facts.drill
    blocks += _part("Latest restore drill", [context(
        f"`{escape(drill.branch_name)}` · {drill.state.value} · {when(drill.created_at)}"
        + (f" · RTO {drill.rto_seconds:.0f} s" if drill.rto_seconds is not None else ""))]
        if drill else [], "No drill yet: `/drill start` runs one.")
    blocks += _part("Next scheduled runs", [context(line) for line in facts.schedule],
                    "Nothing is scheduled.")
    if facts.problems:
        blocks.append(context(":warning: Could not read " + "; ".join(facts.problems)))
    return {"type": "home", "blocks": blocks[:VIEW_BLOCKS]}
