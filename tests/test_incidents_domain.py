"""Incident rules: channel names from titles by Slack's rules, the command's grammar, the
timeline's milestones (each once, in order), Markdown, the summary's facts; and every
Block Kit payload incidents and the App Home build, within Slack's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.export_jobs import Export, ExportState, ExportStep
from bot.domain.health import Check, Level
from bot.domain.incident_summary import summarize
from bot.domain.incident_timeline import (
    LIFEGUARD,
    TimelineEntry,
    milestones_of_request,
    timeline_markdown,
    to_markdown,
)
from bot.domain.incidents import (
    CHANNEL_NAME,
    Incident,
    IncidentClose,
    IncidentNote,
    IncidentOpen,
    IncidentSetStatus,
    IncidentState,
    IncidentStatus,
    IncidentStep,
    channel_name,
    check_in_incident,
    check_incident_transition,
    name_attempt,
    parse_incident_command,
    slugify,
    topic_text,
)
from bot.domain.requests import Approval, RequestState, Step
from bot.services.alerts import Alert
from handlers import health_blocks, home_blocks, ids, restore_blocks
from handlers import incident_blocks as blocks
from tests.support.block_kit import problems
from tests.support.handler_fakes import ALICE, BOB, T0, make_backup, make_request

HOSTILE = "<!channel> & <@U0MALLORY> <https://evil.example|click> `x` " + "é" * 200


def make_incident(**changes: object) -> Incident:
    incident = Incident(
        id="0a1b2c3d", title="Orders table emptied", state=IncidentState.OPEN,
        status=IncidentStatus.INVESTIGATING, opened_by=ALICE, lead=ALICE, day="20260113",
        slug="orders-table-emptied", created_at=T0, updated_at=T0,
        channel_name="inc-20260113-orders-table-emptied", channel_id="C0INC",
        card_channel="C0INC", card_ts="1.000001")
    return replace(incident, **changes)  # type: ignore[arg-type]


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("title", "slug"), [
    ("Orders table emptied", "orders-table-emptied"),
    ("Ça a planté: la base «prod»!", "ca-a-plante-la-base-prod"),
    ("  --DROP TABLE users;--  ", "drop-table-users"),
    ("Replica_lag > 5s", "replica-lag-5s"),
])
def test_titles_become_slugs_of_the_letters_slack_allows(title: str, slug: str) -> None:
    assert slugify(title) == slug


@given(st.text(max_size=300))
def test_every_channel_name_made_is_one_slack_accepts(title: str) -> None:
    slug = slugify(title)
    if not slug:
        return
    for attempt in (1, 2, 20):
        name = channel_name("20260113", slug, attempt)
        assert CHANNEL_NAME.match(name) and len(name) <= 80
        assert name_attempt(name, "20260113", slug) == attempt


def test_a_title_that_slugs_to_nothing_or_is_too_long_is_refused() -> None:
    for title in ("!!!", "日本語のタイトル", "   "):
        with pytest.raises(InvalidInput):
            parse_incident_command(f"open {title}")
    with pytest.raises(InvalidInput, match="at most 120"):
        parse_incident_command("open " + "a" * 121)


def test_the_command_grammar() -> None:
    assert parse_incident_command("open  Orders   gone ") == IncidentOpen("Orders gone")
    assert parse_incident_command("note rows back") == IncidentNote("rows back")
    assert parse_incident_command("STATUS Identified") == IncidentSetStatus(
        IncidentStatus.IDENTIFIED)
    assert parse_incident_command("close") == IncidentClose("")
    for bad, says in (("status fixed", "not an incident status"), ("note", "needs the text"),
                      ("timeline now", "takes nothing"), ("reopen x", "not an /incident")):
        with pytest.raises(InvalidInput, match=says):
            parse_incident_command(bad)


def test_commands_outside_an_incident_channel_or_after_closing_are_refused() -> None:
    with pytest.raises(NotAllowed, match="only in an incident's own channel"):
        check_in_incident(None, "note")
    with pytest.raises(NotAllowed, match="closed or closing"):
        check_in_incident(make_incident(state=IncidentState.CLOSED), "note")


def test_states_move_only_forward_or_to_stalled_and_back() -> None:
    check_incident_transition(IncidentState.OPENING, IncidentState.STALLED)
    check_incident_transition(IncidentState.STALLED, IncidentState.OPENING)
    for current, new in ((IncidentState.CLOSED, IncidentState.OPEN),
                         (IncidentState.OPEN, IncidentState.OPENING)):
        with pytest.raises(ValueError):
            check_incident_transition(current, new)


def test_the_topic_fits_slacks_250_characters_and_escapes_the_title() -> None:
    topic = topic_text(make_incident(title=HOSTILE[:120]))
    assert len(topic) <= 250 and "<!channel>" not in topic and f"<@{ALICE}>" in topic
    assert "investigating" in topic


# --- the timeline ---------------------------------------------------------------------------


def test_a_restores_milestones_come_in_order_and_each_once() -> None:
    pending = make_request()
    approved = replace(pending, state=RequestState.APPROVED,
                       approvals=(Approval(BOB, T0 + timedelta(minutes=1)),))
    running = replace(approved, state=RequestState.RUNNING, step=Step.WAIT_BRANCH,
                      branch_id="br-restore", operation_ids=("op-1",))
    done = replace(running, state=RequestState.SUCCEEDED, step=Step.DONE,
                   verification={"ok": True}, finished_at=T0 + timedelta(minutes=3))
    keys = [[m.key.rsplit(":", 1)[-1] if "approved" not in m.key else "approved"
             for m in milestones_of_request(r)] for r in (pending, approved, running, done)]
    assert keys[0] == ["asked"]
    assert keys[1] == ["asked", "approved"]
    assert keys[2] == ["asked", "approved", "neon_started"]
    assert keys[3] == ["asked", "approved", "neon_started", "neon_finished", "verified",
                       "succeeded"]
    texts = [m.text for m in milestones_of_request(done)]
    assert "op-1" in texts[2] and "br-restore" in texts[2] and "restored and verified" in texts[5]
    rejected = replace(pending, state=RequestState.REJECTED, decided_by=BOB)
    assert [m.actor for m in milestones_of_request(rejected)] == [ALICE, BOB]


def test_milestone_texts_escape_what_people_typed() -> None:
    asked = milestones_of_request(replace(make_request(), reason=HOSTILE))[0]
    assert "<!channel>" not in asked.text and "&lt;!channel&gt;" in asked.text


def test_markdown_turns_slack_markup_into_plain_markdown() -> None:
    text = (f"<@{ALICE}> wrote &lt;b&gt; at <!date^1700000000^{{time}}|14:25 UTC> in "
            "<#C0INC|inc-x> see <https://r.example|the runbook>")
    assert to_markdown(text, {ALICE: "alice"}) == (
        "@alice wrote <b> at 14:25 UTC in #inc-x see [the runbook](https://r.example)")
    entries = [TimelineEntry("0a1b2c3d", "k", T0, ALICE, "noted: _x_"),
               TimelineEntry("0a1b2c3d", "l", T0, LIFEGUARD, "done")]
    markdown = timeline_markdown("Orders", "inc-x", entries, {ALICE: "alice"})
    assert markdown.startswith("# Timeline of Orders")
    assert "- **2026-01-13 14:25:00** @alice: noted: _x_" in markdown
    assert "Lifeguard: done" in markdown


def test_the_summary_counts_from_opening_to_the_first_verified_restore() -> None:
    done = replace(make_request(), state=RequestState.SUCCEEDED, verification={"ok": True},
                   approvals=(Approval(BOB, T0),), branch_id="br-r", operation_ids=("op-9",),
                   finished_at=T0 + timedelta(minutes=42))
    summary = summarize(make_incident(), "we fixed it", "proj-1", [done], [make_backup()], [],
                        T0 + timedelta(hours=1))
    assert summary.restored_after == timedelta(minutes=42)
    assert summary.opened_for == timedelta(hours=1)
    assert ("restore-20260113-1325", "br-r") in summary.support.branches
    assert summary.support.operation_ids == ("op-9",)
    message = blocks.summary_message(summary)
    text = str(message)
    assert f"<@{ALICE}>" in text and f"<@{BOB}>" in text and "restore-20260113-1325" in text
    assert "For Neon support" in text and "proj-1" in text and "42 min" in text


# --- Block Kit limits -------------------------------------------------------------------------


def test_the_limit_checker_catches_what_slack_refuses() -> None:
    too_many = {"text": "x", "blocks": [{"type": "divider"}] * 51}
    assert problems(too_many) == ["51 blocks, at most 50 in a message"]
    long_section = {"text": "x", "blocks": [{"type": "section",
                                             "text": {"type": "mrkdwn", "text": "a" * 3001}}]}
    assert "3001 characters, at most 3000" in problems(long_section)[0]
    bad_header = {"text": "x", "blocks": [{"type": "header",
                                           "text": {"type": "mrkdwn", "text": "h" * 151}}]}
    assert len(problems(bad_header)) == 2
    long_button = {"text": "x", "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b" * 76}}]}]}
    assert "at most 75" in problems(long_button)[0]
    assert problems({"type": "home", "blocks": [{"type": "divider"}] * 101}, "home") == [
        "101 blocks, at most 100 in a home"]


def big_incident() -> Incident:
    return make_incident(
        title=HOSTILE[:120], state=IncidentState.STALLED, step=IncidentStep.INVITE,
        error="Lifeguard stopped while inviting: " + "e" * 3000,
        links=tuple(f"request:{n:08x}" for n in range(60)),
        not_invited={f"U0GHOST{n}": "user_not_found" for n in range(40)})


def test_every_incident_message_fits_slacks_limits() -> None:
    incident = big_incident()
    entry = TimelineEntry(incident.id, "k", T0, ALICE, "noted: " + "n" * 2990)
    requests = [replace(make_request(request_id=f"{n:08x}"), reason=HOSTILE,
                        state=RequestState.FAILED, error="boom " * 300) for n in range(40)]
    summary = summarize(incident, HOSTILE * 10, "proj-1", requests, [make_backup()], [],
                        T0 + timedelta(hours=2))
    long_markdown = "\n".join(f"- line {n} " + "m" * 200 for n in range(2000))
    messages = [blocks.status_card(incident), blocks.announcement(incident),
                blocks.entry_message(entry), blocks.summary_message(summary),
                blocks.archive_warning(incident), blocks.incident_help(),
                blocks.opened(incident), blocks.closing(incident),
                *blocks.timeline_messages(incident, long_markdown),
                restore_blocks.request_card(make_request()),
                health_blocks.alert_message(Alert("t", "tried", "next", "err",
                                                  subject="1a2b3c4d")),
                health_blocks.health_alert(Check("k", "Newest backup", Level.FAIL, "49 h",
                                                 "warn 26 h", "take one"), Level.OK)]
    for message in messages:
        assert problems(message) == [], message.get("text")
    assert len(blocks.timeline_messages(incident, long_markdown)) > 1  # split, not cut
    whole = "".join(all_code(m) for m in blocks.timeline_messages(incident, long_markdown))
    assert "line 1999 " in whole and "line 0 " in whole


def all_code(message: dict[str, object]) -> str:
    return "".join(b["text"]["text"] for b in message["blocks"][1:])  # type: ignore[index]


def test_the_open_incident_button_is_on_request_cards_and_failure_alerts() -> None:
    def values(message: dict[str, object]) -> list[str]:
        return [b["accessory"]["value"] for b in message["blocks"]  # type: ignore[attr-defined]
                if "accessory" in b and b["accessory"]["action_id"] == ids.INCIDENT_OPEN]

    for state in RequestState:
        assert values(restore_blocks.request_card(make_request(state))) == ["1a2b3c4d"]
    assert values(health_blocks.alert_message(Alert("t", "x", "y", subject="1a2b3c4d"))) \
        == ["1a2b3c4d"]
    assert values(health_blocks.alert_message(Alert("t", "x", "y", subject="backup-1"))) == [""]
    ok = Check("k", "Newest backup", Level.OK, "2 h", "warn 26 h", "")
    assert values(health_blocks.health_alert(ok, Level.FAIL)) == []


def make_export(**changes: object) -> Export:
    export = Export(id="e1a2b3c4d5e6", state=ExportState.SUCCEEDED, step=ExportStep.DONE,
                    requested_by=ALICE, reason="weekly", folder="p/20261121-142500-e1/",
                    branch_name="export-e1a2b3c4d5e6", created_at=T0, updated_at=T0,
                    source_backup="backup-20261121-142500", check_passed=True,
                    checked_at=T0)
    return replace(export, **changes)  # type: ignore[arg-type]


def test_the_app_home_lists_the_latest_exports_while_exports_are_on() -> None:
    hostile = make_export(source_backup="<!channel> <https://evil.example|x>")
    view = home_blocks.home_view(home_blocks.HomeFacts(
        user_id=ALICE, exports=[make_export(), hostile,
                                make_export(id="e2", check_passed=False)]))
    text = str(view)
    assert "Latest exports" in text and "`e1a2b3c4d5e6` · backup-20261121-142500" in text
    assert ":white_check_mark: last check passed" in text and ":x: last check failed" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert problems(view, "home") == []
    none_yet = str(home_blocks.home_view(home_blocks.HomeFacts(user_id=ALICE, exports=[])))
    assert "No exports yet" in none_yet


def test_the_app_home_fits_100_blocks_however_much_there_is() -> None:
    many = [make_request(request_id=f"{n:08x}") for n in range(30)]
    facts = home_blocks.HomeFacts(
        user_id=BOB, waiting=many, mine=many, incidents=[big_incident()] * 30,
        checks=[Check(f"k{n}", "Check " + "c" * 100, Level.WARN, "v" * 200, "t", "a")
                for n in range(30)],
        backups=[make_backup()] * 30, exports=[make_export()] * 30, drill=None,
        schedule=["job"] * 30, problems=["the drills"])
    view = home_blocks.home_view(facts)
    assert problems(view, "home") == []
    buttons = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert {b["action_id"] for b in buttons} == {ids.APPROVE, ids.REJECT}
    empty = home_blocks.home_view(home_blocks.HomeFacts(user_id=ALICE))
    assert problems(empty, "home") == [] and "Nothing is waiting for you" in str(empty)
    assert "exports" not in str(empty).lower()  # exports off: no empty part for them


def test_incident_settings_are_validated_like_approvers_and_https_links() -> None:
    from bot.config import SettingsError, load_settings

    base = {"slack_bot_token": "xoxb-1-2", "slack_signing_secret": "s", "neon_api_key": "k",
            "neon_project_id": "young-sun-123", "approvals_channel": "C0APPROVALS",
            "alerts_channel": "C0ALERTS"}
    settings = load_settings(**base, incident_responders="U0ALICE, S0ONCALL",
                             incident_runbook_url="https://runbooks.example/db")
    assert settings.incident_responders == ("U0ALICE", "S0ONCALL")
    assert settings.incident_runbook_url == "https://runbooks.example/db"
    for bad, says in (({"incident_responders": "@oncall"}, "INCIDENT_RESPONDERS is malformed"),
                      ({"incident_runbook_url": "http://runbooks.example"},
                       "INCIDENT_RUNBOOK_URL is malformed"),
                      ({"incident_runbook_url": "javascript:alert(1)"},
                       "INCIDENT_RUNBOOK_URL is malformed"),
                      ({"incident_responders": "U..."}, "INCIDENT_RESPONDERS is still a "
                                                        "placeholder")):
        with pytest.raises(SettingsError) as error:
            load_settings(**base, **bad)
        assert any(says in problem for problem in error.value.problems), error.value.problems


def test_hostile_titles_notes_and_summaries_show_as_text_in_every_incident_message() -> None:
    from tests.support.mrkdwn import HOSTILE as ATTACK
    from tests.support.mrkdwn import assert_shows_as_text

    incident = make_incident(title=ATTACK, state=IncidentState.CLOSED, closed_at=T0,
                             closed_by=BOB)
    entry = milestones_of_request(replace(make_request(), reason=ATTACK))[0]
    summary = summarize(incident, ATTACK, "proj-1", [replace(make_request(), reason=ATTACK)],
                        [], [], T0 + timedelta(hours=1))
    for message in (blocks.status_card(incident), blocks.announcement(incident),
                    blocks.entry_message(TimelineEntry(incident.id, "k", T0, ALICE,
                                                       entry.text)),
                    blocks.summary_message(summary), blocks.opened(make_incident(title=ATTACK)),
                    *blocks.timeline_messages(incident, timeline_markdown(
                        ATTACK, "inc-x", [TimelineEntry(incident.id, "k", T0, ALICE,
                                                        entry.text)], {}))):
        assert_shows_as_text(message)
