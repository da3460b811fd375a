"""Block Kit for restores: the approval card, answers to /restore, the form. Pure
functions from data to messages; connection strings never appear in any of them. Values
from outside (reasons, branch names from Neon, what was typed) are escaped where they are
written in; errors and verification summaries come mrkdwn-ready (bot.domain.text)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.domain.audit import AuditEntry
from bot.domain.durations import humanize_age
from bot.domain.requests import (
    ACTION_TITLES,
    ChangeRequest,
    RequestAction,
    RequestState,
    Step,
)
from bot.domain.restores import RESTORE_USAGE
from bot.domain.text import escape
from bot.domain.verification import VerificationReport
from handlers import ids
from handlers import table_restore_blocks as table_blocks
from handlers.blocks import Message, context, ephemeral, section, size, usage_help, when
from handlers.incident_blocks import open_incident_section
from handlers.verification_blocks import table_report

STEP_TEXT = {
    Step.CREATE_BRANCH: ":hourglass_flowing_sand: creating the restore branch…",
    Step.WAIT_BRANCH: ":hourglass_flowing_sand: Neon is creating the branch…",
    Step.PROMOTE: ":hourglass_flowing_sand: restoring the live branch in place…",
    Step.WAIT_PROMOTION: ":hourglass_flowing_sand: Neon is restoring the live branch…",
    Step.VERIFY: ":mag: verifying tables and row counts…",
    Step.CLEAN_UP: ":broom: the restore cannot go on; removing the branch it made…",
    Step.DELETE_BACKUP: ":wastebasket: deleting the backup branch…",
    **table_blocks.STEP_TEXT,
    Step.CHECK_EXPORT: ":mag: checking every file of the export against its manifest…",
    Step.EMPTY_DATABASES: ":broom: emptying the new branch: deleting its databases…",
    Step.RESTORE_DATABASES: ":hourglass_flowing_sand: restoring the export's databases "
                            "with pg_restore…",
}


def restore_help(problem: str | None = None) -> Message:
    return usage_help("Restores", RESTORE_USAGE, problem)


def _names(request: ChangeRequest) -> tuple[str, str, str]:
    """The plan's source, target and preserved branch names, escaped: the default branch's
    name is whatever Neon calls it."""
    plan = request.plan
    return (escape(plan.source_branch_name), escape(plan.target_branch_name),
            escape(plan.preserve_under_name or ""))


def _what(request: ChangeRequest) -> str:
    plan = request.plan
    source, target, preserve = _names(request)
    if plan.action == RequestAction.RESTORE_POINT_IN_TIME:
        assert plan.instant is not None
        return f"New branch `{target}` from `{source}` as it was at {when(plan.instant)}"
    if plan.action == RequestAction.RESTORE_FROM_BRANCH:
        return f"New branch `{target}` from backup `{source}`"
    if plan.action == RequestAction.RESTORE_TABLE:
        return table_blocks.what(request)
    if plan.action == RequestAction.RESTORE_EXPORT:
        return f"New branch `{target}` holding exactly {_export(request)}"
    if plan.action == RequestAction.DELETE_BACKUP:
        return f"Delete backup `{source}` from Neon. It is a recovery point: this cannot be undone"
    if plan.action == RequestAction.PRUNE_BACKUPS:
        shown = ", ".join(f"`{escape(name)}`" for name in plan.branches[:20])
        more = f" and {len(plan.branches) - 20} more" if len(plan.branches) > 20 else ""
        return (f"Delete the {len(plan.branches)} backup(s) the retention policy no longer "
                f"keeps: {shown}{more}. They are recovery points: this cannot be undone")
    return (f"Restore the live branch `{target}` in place from `{source}`; its current state "
            f"is kept as `{preserve}`. Connection strings do not change.")


def _export(request: ChangeRequest) -> str:
    """The export a request restores, as stored when it was asked: id, when, source branch,
    databases and sizes; every name from outside escaped."""
    facts = request.extra.get("export") or {}
    taken = facts.get("started_at")
    try:
        taken_at = when(datetime.fromisoformat(taken)) if taken else "at an unknown time"
    except (TypeError, ValueError):
        taken_at = "at an unknown time"
    databases = ", ".join(
        f"`{escape(str(d.get('name')))}` ({size(d.get('size'))}, {d.get('tables')} tables)"
        for d in facts.get("databases") or [])
    return (f"export `{escape(str(request.plan.export_id))}`, taken {taken_at} from branch "
            f"`{escape(str(facts.get('branch_name')))}`: {databases or 'no databases'}")


def _status(request: ChangeRequest) -> str:
    approvers = ", ".join(f"<@{a.user_id}>" for a in request.approvals)
    if request.state == RequestState.PENDING:
        return (f":raising_hand: waiting for approval: {len(request.approvals)} of "
                f"{request.required_approvals}" + (f" (by {approvers})" if approvers else "")
                + f" · expires {when(request.expires_at)}")
    if request.state == RequestState.APPROVED:
        return f":white_check_mark: approved by {approvers}; starting…"
    if request.state == RequestState.RUNNING:
        return f"approved by {approvers} · " + STEP_TEXT.get(request.step or Step.VERIFY, "")
    if request.state == RequestState.SUCCEEDED:
        return f":white_check_mark: done (approved by {approvers})"
    if request.state == RequestState.FAILED:
        return f":x: failed: {request.error}"
    if request.state == RequestState.REJECTED:
        return f":no_entry: rejected by <@{request.decided_by}>; nothing was run"
    if request.state == RequestState.CANCELLED:
        return f":heavy_multiplication_x: cancelled by <@{request.decided_by}>; nothing was run"
    return f":hourglass: expired at {when(request.expires_at)} without enough approvals; " \
           "nothing was run"


def _outcome(request: ChangeRequest) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if request.verification:
        report = VerificationReport.from_dict(request.verification)
        differs = any(t.differs for t in report.tables) or report.missing_in_target
        mark = ":white_check_mark:" if report.ok and not differs else ":warning:"
        blocks.append(section(f"{mark} *Verification:* {report.summary()}"))
        blocks += table_report(report)
    plan = request.plan
    source, target, preserve = _names(request)
    if request.state == RequestState.SUCCEEDED:
        if plan.action == RequestAction.RESTORE_TABLE:
            blocks += table_blocks.outcome(request)
        elif plan.action == RequestAction.DELETE_BACKUP:
            blocks.append(section(f"Backup `{source}` was deleted."))
        elif plan.action == RequestAction.PRUNE_BACKUPS:
            blocks.append(section(f"{len(plan.branches)} backup(s) were deleted."))
        elif plan.action == RequestAction.PROMOTE:
            blocks.append(section(
                f"`{target}` now holds `{source}`'s data; nothing needs a redeploy. To undo: "
                f"`/restore promote {preserve}`"))
        else:
            blocks.append(section(
                f"Branch `{target}` is ready. Connect to it from the Neon console; to make it "
                f"the live data: `/restore promote {target}`"))
    if request.state == RequestState.FAILED:
        blocks.append(section(f"*Next:* {_next_step(request)}"))
    return blocks


def _next_step(request: ChangeRequest) -> str:
    if request.error and request.error.startswith("Verification failed"):
        _, checked, preserve = _names(request)
        undo = ""
        if request.plan.action == RequestAction.PROMOTE:
            undo = f" To undo the promotion: `/restore promote {preserve}`."
        return (f"look at the differences in `{checked}` before relying on it; "
                f"`/restore log {request.id}` shows what ran.{undo}")
    return f"`/restore log {request.id}` shows what ran; ask again once the cause is fixed."


def request_card(request: ChangeRequest) -> Message:
    plan = request.plan
    title = ACTION_TITLES[plan.action]
    headline = f"*{title}* requested by <@{plan.requester}> · request `{request.id}`"
    blocks: list[dict[str, Any]] = [
        section(headline),
        section(_what(request)),
        context(f"Reason: {escape(request.reason) if request.reason else '(none given)'}"
                + (f" · restore window at request time: "
                   f"{humanize_age_seconds(request.extra.get('window_seconds'))}"
                   if request.extra.get("window_seconds") else "")),
        section(_status(request)),
        *_outcome(request),
        open_incident_section(request.id, "_Data in trouble? Coordinate it in an incident "
                                          "channel._"),
    ]
    if request.state == RequestState.PENDING:
        blocks.append({"type": "actions", "block_id": f"request.{request.id}", "elements": [
            _button("Approve", ids.APPROVE, request.id, "primary"),
            _button("Reject", ids.REJECT, request.id, "danger"),
            _button("Cancel", ids.CANCEL, request.id, None),
        ]})
    return {"text": f"{title} {request.id}: {request.state.value}", "blocks": blocks}


def humanize_age_seconds(seconds: object) -> str:
    return humanize_age(timedelta(seconds=int(seconds))) if isinstance(seconds, int) else "?"


def _button(text: str, action_id: str, value: str, style: str | None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": value,
                              "text": {"type": "plain_text", "text": text}}
    if style:
        button["style"] = style
    return button


def request_accepted(request: ChangeRequest, approvals_channel: str) -> Message:
    return ephemeral(
        f":raising_hand: Request `{request.id}` is waiting for approval in "
        f"<#{approvals_channel}>: {_what(request)}. It expires {when(request.expires_at)}. "
        f"`/restore cancel {request.id}` withdraws it.")


def checking(text: str) -> Message:
    """`text`: what the person typed after `/restore`."""
    return ephemeral(f":mag: Checking `/restore {escape(text)}`…")


def approver_dm(request: ChangeRequest, permalink: str | None) -> Message:
    link = f"<{permalink}|the card>" if permalink else "the card in the approvals channel"
    return {"text": f"<@{request.requester}> asks for approval of request `{request.id}` "
                    f"({ACTION_TITLES[request.plan.action].lower()}); see {link}."}


def request_line(request: ChangeRequest) -> str:
    return (f"`{request.id}` · {ACTION_TITLES[request.plan.action]} · {request.state.value} · "
            f"by <@{request.requester}> · {escape(request.plan.target_branch_name)}")


def status_list(requests: list[ChangeRequest]) -> Message:
    if not requests:
        return ephemeral("No open restore requests.")
    lines = [request_line(r) for r in requests]
    return ephemeral(f"{len(requests)} open requests", [section("*Open requests*"),
                                                        *[section(line) for line in lines]])


def request_status(request: ChangeRequest) -> Message:
    card = request_card(request)
    blocks = [b for b in card["blocks"] if b.get("type") != "actions"]
    return ephemeral(card["text"], blocks)


def request_log(request: ChangeRequest, entries: list[AuditEntry]) -> Message:
    def who(actor: str) -> str:
        return f"<@{actor}>" if actor.startswith(("U", "W")) else escape(actor)

    def incident(entry: AuditEntry) -> str:  # a link to an incident names its channel
        name = entry.details.get("channel") if entry.action == "incident.linked" else None
        return f" · incident `#{escape(str(name))}`" if name else ""

    lines = [f"{when(e.created_at)} · {who(e.actor)} · `{e.action}`{incident(e)}"
             for e in entries]
    text = f"History of request {request.id}"
    return ephemeral(text, [section(f"*History of request `{request.id}`* "
                                    f"({ACTION_TITLES[request.plan.action]})"),
                            *[context(line) for line in lines[-40:]]])


def restore_form(now: datetime) -> dict[str, Any]:
    """The modal `/restore` alone opens: an instant, an optional backup, a reason."""
    return {
        "type": "modal", "callback_id": ids.RESTORE_FORM,
        "title": {"type": "plain_text", "text": "Restore"},
        "submit": {"type": "plain_text", "text": "Ask for approval"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": ids.FORM_WHEN, "optional": True,
             "label": {"type": "plain_text", "text": "Restore the default branch as it was at"},
             "element": {"type": "datetimepicker", "action_id": ids.FORM_WHEN,
                         "initial_date_time": int(now.timestamp()) - 3600},
             "hint": {"type": "plain_text", "text": "Your time zone. Leave empty to restore "
                      "from a backup instead."}},
            {"type": "input", "block_id": ids.FORM_SOURCE, "optional": True,
             "label": {"type": "plain_text", "text": "…or from this backup branch"},
             "element": {"type": "plain_text_input", "action_id": ids.FORM_SOURCE,
                         "placeholder": {"type": "plain_text",
                                         "text": "backup-20261121-142500"}}},
            {"type": "input", "block_id": ids.FORM_REASON, "optional": True,
             "label": {"type": "plain_text", "text": "Reason"},
             "element": {"type": "plain_text_input", "action_id": ids.FORM_REASON,
                         "max_length": 500}},
        ],
    }
