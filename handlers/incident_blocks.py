"""Block Kit for incidents: the pinned status card, the announcement, timeline lines, the
closing summary, the timeline as Markdown, the warning before archiving, the answers to
`/incident`. Pure functions from data to messages; titles, notes and summaries people
typed are escaped where they are written in (bot.domain.text), timeline texts and errors
come mrkdwn-ready. Times show in UTC and in each reader's own zone."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from bot.domain.durations import humanize_age
from bot.domain.incident_summary import IncidentSummary, RequestOutcome
from bot.domain.incident_timeline import LIFEGUARD, TimelineEntry
from bot.domain.incidents import INCIDENT_USAGE, Incident, IncidentState
from bot.domain.text import escape
from handlers import ids
from handlers.blocks import Message, context, ephemeral, section, usage_help, when

HEADER_LIMIT = 150
SECTION_ROOM = 2900  # a section holds 3000 characters; room for the code fence
MESSAGE_BLOCKS = 50

STATUS_ICON = {"investigating": ":mag:", "identified": ":dart:", "monitoring": ":eyes:",
               "resolved": ":white_check_mark:"}


def header(text: str) -> dict[str, Any]:
    """A header block: plain text, at most 150 characters."""
    shown = text if len(text) <= HEADER_LIMIT else text[:HEADER_LIMIT - 1] + "…"
    return {"type": "header", "text": {"type": "plain_text", "text": shown, "emoji": True}}


def who(user_or_group: str) -> str:
    if user_or_group == LIFEGUARD:
        return "Lifeguard"
    if user_or_group.startswith("S"):
        return f"<!subteam^{user_or_group}>"
    return f"<@{user_or_group}>"


def open_incident_button(request_id: str | None) -> dict[str, Any]:
    """The `incident.open` button every request card and failure alert carries."""
    return {"type": "button", "action_id": ids.INCIDENT_OPEN, "value": request_id or "",
            "text": {"type": "plain_text", "text": "Open incident"}}


def open_incident_section(request_id: str | None, text: str) -> dict[str, Any]:
    """A line with the `incident.open` button beside it (a section's accessory, so the
    card's own row of buttons stays as it is)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text},
            "accessory": open_incident_button(request_id)}


def incident_help(problem: str | None = None) -> Message:
    return usage_help("Incidents", INCIDENT_USAGE, problem)


def _not_invited(incident: Incident) -> list[dict[str, Any]]:
    if not incident.not_invited:
        return []
    shown = " · ".join(f"{who(person)}: {escape(str(why))}"
                       for person, why in list(incident.not_invited.items())[:20])
    return [context(f":warning: Not invited: {shown}. Invite them by hand.")]


def status_card(incident: Incident) -> Message:
    status = incident.status.value
    headline = f"{STATUS_ICON.get(status, '')} *Status: {status}* · lead {who(incident.lead)}"
    blocks: list[dict[str, Any]] = [
        header(f"Incident: {incident.title}"),
        section(headline),
        context(f"Opened {when(incident.created_at)} by {who(incident.opened_by)}"
                + (f" · from request `{incident.request_id}`" if incident.request_id else "")),
    ]
    linked = [link for link in incident.links]
    if linked:
        blocks.append(section("*Linked work:* " + ", ".join(
            f"{link.split(':', 1)[0]} `{escape(link.split(':', 1)[1])}`"
            for link in linked[:30])))
    blocks += _not_invited(incident)
    if incident.state == IncidentState.STALLED:
        blocks.append(section(f":warning: {incident.error} " + _finish_hint(incident)))
    if incident.state == IncidentState.CLOSED and incident.closed_at:
        blocks.append(section(f":lock: Closed {when(incident.closed_at)} by "
                              f"{who(incident.closed_by or incident.opened_by)}; the summary "
                              "and the timeline are below."))
    else:
        blocks.append(context(escape("`/incident note <text>` · `/incident status "
                                     "investigating|identified|monitoring|resolved` · "
                                     "`/incident timeline` · `/incident close [summary]`")))
    return {"text": f"Incident {escape(incident.title)}: {status}", "blocks": blocks}


def _finish_hint(incident: Incident) -> str:
    if incident.closing_at is not None:
        return "`/incident close` again in this channel finishes closing it."
    if incident.request_id:
        return ("Clicking *Open incident* on the request's card again finishes opening it.")
    return f"`/incident open {escape(incident.title)}` again finishes opening it."


def announcement(incident: Incident) -> Message:
    channel = f"<#{incident.channel_id}>" if incident.channel_id else "its channel"
    title = escape(incident.title)
    if incident.state == IncidentState.CLOSED:
        text = (f":lock: Incident _{title}_ ({channel}) was closed by "
                f"{who(incident.closed_by or incident.opened_by)}; its summary and timeline "
                "are in the archived channel.")
    else:
        text = (f":rotating_light: Incident _{title}_ opened by {who(incident.opened_by)}: "
                f"join {channel} · status {incident.status.value}")
    return {"text": text, "blocks": [section(text)]}


def entry_message(entry: TimelineEntry) -> Message:
    # Lifeguard's own lines read as what happened; a person's begin with who did it
    by = ":gear:" if entry.actor == LIFEGUARD else who(entry.actor)
    text = f"{by} {entry.text[:1].upper() + entry.text[1:] if by == ':gear:' else entry.text}"
    return {"text": text, "blocks": [section(text), context(when(entry.at))]}


def _duration(value: timedelta | None) -> str:
    return "not restored and verified by Lifeguard" if value is None else humanize_age(value)


def _request_line(outcome: RequestOutcome) -> str:
    approvers = ", ".join(who(a) for a in outcome.approvers) or "nobody"
    decided = f" · {outcome.state} by {who(outcome.decided_by)}" if outcome.decided_by else ""
    verified = {None: "", True: " · verification passed", False: " · verification failed"}
    target = f" → `{escape(outcome.target_branch)}`"
    kept = (f" (old state kept as `{escape(outcome.preserved_branch)}`)"
            if outcome.preserved_branch else "")
    return (f"• `{outcome.id}` {outcome.title}: *{outcome.state}*{verified[outcome.verified]}"
            f" · asked by {who(outcome.requester)} · approved by {approvers}{decided} · "
            f"`{escape(outcome.source_branch)}`{target}{kept}")


def summary_message(summary: IncidentSummary) -> Message:
    incident = summary.incident
    written = escape(summary.written) if summary.written else "_(no summary was written)_"
    blocks: list[dict[str, Any]] = [
        header(f"Incident summary: {incident.title}"),
        section(f"*What happened:* {written}"),
        section(f"*Open for:* {humanize_age(summary.opened_for)} · *opening to data "
                f"restored and verified:* {_duration(summary.restored_after)} · lead "
                f"{who(incident.lead)} · closed by {who(incident.closed_by or incident.lead)}"),
    ]
    lines = [_request_line(o) for o in summary.requests] or ["No request was linked."]
    blocks += _chunks("*Requests and outcomes*", lines)
    support = summary.support
    facts = [f"Project: `{escape(support.project_id)}`"]
    facts += [f"Branch `{escape(name)}`: `{escape(branch_id)}`"
              for name, branch_id in support.branches]
    facts.append("Operations: " + (", ".join(f"`{escape(o)}`" for o in support.operation_ids)
                                   or "none"))
    facts += [f"{escape(what)}: {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
              for what, at in support.times]
    facts += [f"Error: {error}" for error in support.errors] or ["Errors: none"]
    blocks += _chunks("*For Neon support*", facts)
    return {"text": f"Incident summary: {escape(incident.title)}",
            "blocks": blocks[:MESSAGE_BLOCKS]}


def _chunks(title: str, lines: list[str]) -> list[dict[str, Any]]:
    blocks, chunk = [], title
    for line in lines:
        if len(chunk) + len(line) + 1 > SECTION_ROOM:
            blocks.append(section(chunk))
            chunk = ""
        chunk += ("\n" if chunk else "") + line
    blocks.append(section(chunk))
    return blocks


def timeline_messages(incident: Incident, markdown: str) -> list[Message]:
    """The Markdown timeline in code blocks, as many messages as it takes (each within
    50 blocks and 3000 characters a block)."""
    pieces, chunk = [], ""
    for line in escape(markdown).splitlines():
        line = line[:SECTION_ROOM - 10]
        if len(chunk) + len(line) + 1 > SECTION_ROOM - 10:
            pieces.append(chunk)
            chunk = ""
        chunk += line + "\n"
    if chunk:
        pieces.append(chunk)
    blocks = [section(f"```{piece}```") for piece in pieces]
    title = f"Timeline of {escape(incident.title)} (Markdown)"
    messages = []
    for start in range(0, len(blocks), MESSAGE_BLOCKS - 1):
        part = blocks[start:start + MESSAGE_BLOCKS - 1]
        messages.append({"text": title, "blocks": [section(f"*{title}*"), *part]})
    return messages


def archive_warning(incident: Incident) -> Message:
    text = escape(":warning: This channel is archived now. Slack does not let a bot unarchive "
                  "a channel, so a later incident opens a new channel "
                  "(`/incident open <title>`). The summary and the timeline above stay "
                  "readable here.")
    return {"text": text, "blocks": [section(text)]}


# --- answers to the person who asked -------------------------------------------------------


def opening(title: str) -> Message:
    return ephemeral(f":hourglass_flowing_sand: Opening an incident channel for "
                     f"_{escape(title)}_…")


def opened(incident: Incident) -> Message:
    if incident.state == IncidentState.STALLED:
        return ephemeral(f":warning: {incident.error} {_finish_hint(incident)}")
    channel = f"<#{incident.channel_id}>" if incident.channel_id else "its channel"
    if incident.state == IncidentState.OPENING:
        return ephemeral(f":hourglass_flowing_sand: Incident _{escape(incident.title)}_ is "
                         f"still being opened; {channel} will show its status card.")
    text = f":rotating_light: Incident {channel} is open (_{escape(incident.title)}_)."
    if incident.not_invited:
        text += " Not invited: " + ", ".join(
            f"{who(p)} ({escape(str(why))})" for p, why in incident.not_invited.items()) + "."
    return ephemeral(text)


def closing(incident: Incident) -> Message:
    return ephemeral(f":lock: Closing incident _{escape(incident.title)}_: the summary and "
                     "the timeline are posted here, then the channel is archived.")


def closed(incident: Incident) -> Message:
    if incident.state == IncidentState.STALLED:
        return ephemeral(f":warning: {incident.error} {_finish_hint(incident)}")
    return ephemeral(f":lock: Incident _{escape(incident.title)}_ is closed and its channel "
                     "archived.")


def noted() -> Message:
    return ephemeral(":memo: Added to the timeline.")


def status_set(incident: Incident) -> Message:
    return ephemeral(f"Status set to *{incident.status.value}*; the status card and the "
                     "topic follow.")
