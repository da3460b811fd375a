"""`/backup` end to end: signed requests to the real bot's HTTP endpoint, the fake Slack
and fake Neon on loopback, branches that are real databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from tests.e2e.conftest import ALICE, BOB, MALLORY, OPS_CHANNEL
from tests.support.bot_process import APPROVALS_CHANNEL, audit_entries
from tests.support.fake_neon import FakeNeon
from tests.support.restore_steps import ask, card, click
from tests.support.waits import wait_for_card, wait_for_response

APPROVE, CANCEL = "request.approve", "request.cancel"


def ack_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("response_type", "ephemeral") == "ephemeral"
    return body["text"]


def recorded(bot_env: dict[str, str]) -> list[dict]:
    """What commands recorded: the audit trail without the scheduler's own entries (a
    starting bot records that it leads the scheduler)."""
    return [e for e in audit_entries(bot_env) if not e["action"].startswith("scheduler.")]


def backup_branches(neon: FakeNeon) -> list[dict]:
    return [b for b in neon.branches() if b["name"].startswith("backup-")]


def create_main_data(neon: FakeNeon) -> None:
    with psycopg.connect(neon.connect_url("main")) as conn:
        conn.execute("CREATE TABLE orders (id serial primary key, created_at timestamptz "
                     "default now())")
        conn.execute("INSERT INTO orders DEFAULT VALUES")
        conn.execute("INSERT INTO orders DEFAULT VALUES")


def test_help_and_empty_text_show_usage_only_to_the_requester(driver, neon):
    for text in ("", "help"):
        shown = ack_text(driver.command("/backup", text, user_id=ALICE))
        assert "/backup now [reason]" in shown and "/backup delete &lt;branch&gt;" in shown
    assert neon.mutations() == []


def test_backup_now_takes_one_branch_and_updates_one_message(driver, neon, slack, bot_env):
    create_main_data(neon)
    before = datetime.now(UTC)
    response = driver.command("/backup", "now pre-migration v1.5", user_id=ALICE,
                              channel_id=OPS_CHANNEL)
    accepted = ack_text(response)
    assert "Taking backup `backup-" in accepted

    card = wait_for_card(slack, OPS_CHANNEL, "is ready")
    assert f"<@{ALICE}>" in card["text"]
    # exactly one status message, posted once and then updated in place
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(slack.calls_to("chat.update")) >= 1
    assert len(slack.messages(OPS_CHANNEL)) == 1

    [branch] = backup_branches(neon)
    name = branch["name"]
    assert name in card["text"]
    stamp = datetime.strptime(name, "backup-%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)
    assert branch["parent_id"] == neon.default_branch()["id"]
    expires = datetime.fromisoformat(branch["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (stamp + timedelta(days=7))) < timedelta(seconds=5)
    with psycopg.connect(neon.connect_url(name)) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    entries = audit_entries(bot_env)
    requested = [e for e in entries if e["action"] == "backup.requested"]
    assert [(e["actor"], e["subject"]) for e in requested] == [(ALICE, name)]
    assert requested[0]["details"]["reason"] == "pre-migration v1.5"
    assert [e["subject"] for e in entries if e["action"] == "backup.ready"] == [name]


def test_exactly_one_branch_despite_rate_limits_and_a_lock(driver, neon, slack):
    neon.fail_next(429, times=3, retry_after=0.2, method="POST", path_contains="/branches")
    neon.fail_next(423, times=1, method="POST", path_contains="/branches")
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready", timeout=60)
    assert len(backup_branches(neon)) == 1
    creates = [r for r in neon.mutations()
               if r.method == "POST" and r.path.endswith("/branches")]
    assert len(creates) == 1
    refused = [r for r in neon.requests if r.method == "POST" and r.path.endswith("/branches")
               and r.status in (423, 429)]
    assert sorted(r.status for r in refused) == [423, 429, 429, 429]


def test_a_lost_create_answer_is_looked_up_not_sent_again(driver, neon, slack):
    neon.drop_next(1, after_processing=True, method="POST", path_contains="/branches")
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready", timeout=60)
    assert len(backup_branches(neon)) == 1


def test_unsigned_forged_and_stale_requests_are_rejected_with_no_neon_call(driver, neon,
                                                                             slack):
    unsigned = driver.command("/backup", "now", sign=False)
    forged = driver.command("/backup", "now", secret="not-the-signing-secret")
    stale = driver.command("/backup", "now", timestamp=int(time.time()) - 5 * 60 - 1)
    assert [r.status_code for r in (unsigned, forged, stale)] == [401, 401, 401]
    time.sleep(0.5)
    assert neon.requests == []
    assert slack.calls == []


def test_unknown_subcommand_says_what_is_accepted(driver, neon, bot_env):
    shown = ack_text(driver.command("/backup", "nwo please", user_id=ALICE))
    assert "`nwo` is not a /backup command" in shown
    assert "now, list, delete, help" in shown
    assert neon.requests == []
    assert recorded(bot_env) == []


def test_a_reason_over_500_characters_is_refused_and_nothing_recorded(driver, neon, bot_env):
    shown = ack_text(driver.command("/backup", "now " + "x" * 501, user_id=ALICE))
    assert "501 characters" in shown and "at most 500" in shown
    time.sleep(0.3)
    assert neon.requests == []
    assert recorded(bot_env) == []


def test_deleting_a_branch_that_is_not_a_backup_is_refused(driver, neon, slack, bot_env):
    url = slack.new_response_url()
    assert driver.command("/backup", "delete main", user_id=ALICE,
                          response_url=url).status_code == 200
    refusal = wait_for_response(slack, url, "not a backup Lifeguard took")
    assert refusal["response_type"] == "ephemeral"
    assert "Nothing was deleted" in refusal["text"]
    assert neon.mutations() == []
    assert neon.branch_by_name("main") is not None
    assert [e["action"] for e in recorded(bot_env)] == ["backup.delete_refused"]


def test_deleting_a_backup_needs_a_second_person_then_deletes_it(driver, neon, slack,
                                                                  bot_env):
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [branch] = backup_branches(neon)
    # Mallory is no approver: asking is all Mallory can do.
    request_id = ask(driver, slack, f"delete {branch['name']}", MALLORY, command="/backup")
    asked = card(slack, request_id, "cannot be undone")
    assert "Deletion of a backup" in asked["text"]
    assert neon.branch_by_name(branch["name"]) is not None  # nothing deleted by asking
    own = click(driver, slack, APPROVE, request_id, MALLORY)  # the requester, no approver
    assert "two-person rule" in wait_for_response(slack, own, "cannot approve")["text"]
    assert neon.branch_by_name(branch["name"]) is not None

    click(driver, slack, APPROVE, request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=60)
    assert f"Backup `{branch['name']}` was deleted" in done["text"]
    assert neon.branch_by_name(branch["name"]) is None
    actions = [(e["action"], e["actor"]) for e in audit_entries(bot_env)]
    assert ("request.created", MALLORY) in actions and ("request.approved", BOB) in actions
    assert ("backup.deleted", MALLORY) in actions

    # the same click again (a double click) decides nothing more and says so
    again = slack.new_response_url()
    driver.click(APPROVE, request_id, user_id=BOB, channel_id=APPROVALS_CHANNEL,
                 message_ts=asked["ts"], response_url=again)
    assert "already succeeded" in wait_for_response(slack, again, "already")["text"]


def test_a_deletion_request_cancelled_deletes_nothing(driver, neon, slack, bot_env):
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [branch] = backup_branches(neon)
    request_id = ask(driver, slack, f"delete {branch['name']}", ALICE, command="/backup")
    click(driver, slack, CANCEL, request_id, ALICE)
    card(slack, request_id, "cancelled by")
    assert neon.branch_by_name(branch["name"]) is not None
    assert "request.cancelled" in [e["action"] for e in audit_entries(bot_env)]


def test_a_click_whose_value_names_another_request_is_refused(driver, neon, slack, bot_env):
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [branch] = backup_branches(neon)
    first = ask(driver, slack, f"delete {branch['name']}", ALICE, command="/backup")
    first_card = card(slack, first)
    second = ask(driver, slack, f"from {branch['name']} roll back", ALICE)
    # Approve on the second card, its value altered to name the first request.
    second_card = card(slack, second)
    url = slack.new_response_url()
    driver.click(APPROVE, first, user_id=BOB, channel_id=APPROVALS_CHANNEL,
                 message_ts=second_card["ts"], response_url=url)
    told = wait_for_response(slack, url, "not on the card")
    assert told["response_type"] == "ephemeral"
    assert neon.branch_by_name(branch["name"]) is not None
    assert "waiting for approval" in card(slack, first)["text"]
    refusals = [e for e in audit_entries(bot_env)
                if e["action"] == "request.refused" and e["subject"] == first]
    assert len(refusals) == 1 and "not on the card" in refusals[0]["details"]["reason"]
    assert first_card["ts"] != second_card["ts"]


def test_a_protected_backup_is_not_deleted(driver, neon, slack):
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [branch] = backup_branches(neon)
    httpx.patch(f"{neon.url}/projects/{neon.project_id}/branches/{branch['id']}",
                json={"branch": {"protected": True}},
                headers={"Authorization": f"Bearer {neon.api_key}"}).raise_for_status()
    url = slack.new_response_url()
    driver.command("/backup", f"delete {branch['name']}", user_id=ALICE, response_url=url)
    refusal = wait_for_response(slack, url, "protected branch")
    assert refusal["response_type"] == "ephemeral"
    assert neon.branch_by_name(branch["name"]) is not None


def test_neon_unreachable_is_told_to_the_requester_only(driver, neon, slack, bot_env):
    neon.unreachable = True
    url = slack.new_response_url()
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL,
                            response_url=url))
    told = wait_for_response(slack, url, "Could not reach Neon", timeout=60)
    assert told["response_type"] == "ephemeral"
    assert "Nothing was created" in told["text"]
    neon.unreachable = False
    assert backup_branches(neon) == []
    assert slack.messages(OPS_CHANNEL) == []  # nothing posted for the whole channel
    assert "backup.failed" in [e["action"] for e in audit_entries(bot_env)]


def test_a_refused_api_key_is_told_plainly(driver, neon, slack):
    neon.api_key = "rotated-key"
    try:
        url = slack.new_response_url()
        ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL,
                                response_url=url))
        told = wait_for_response(slack, url, "Neon refused the API key")
        assert told["response_type"] == "ephemeral"
        assert "NEON_API_KEY" in told["text"]
        assert neon.mutations() == []
        assert slack.messages(OPS_CHANNEL) == []
    finally:
        neon.api_key = "neon-test-key"


def test_backup_list_shows_backups_with_size_and_reason(driver, neon, slack):
    create_main_data(neon)
    ack_text(driver.command("/backup", "now before the big import", user_id=ALICE,
                            channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [branch] = backup_branches(neon)
    url = slack.new_response_url()
    assert driver.command("/backup", "list", user_id=BOB, response_url=url).status_code == 200
    listing = wait_for_response(slack, url, "1 backups")
    assert listing["response_type"] == "ephemeral"
    text = str(listing["blocks"])
    assert branch["name"] in text and "before the big import" in text
    assert "expires" in text and "UTC" in text


def test_app_home_shows_recent_backups(driver, neon, slack):
    ack_text(driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL))
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    driver.event({"type": "app_home_opened", "user": BOB, "channel": "D0BOB", "tab": "home"})
    published = slack.wait_for(lambda: slack.calls_to("views.publish"))
    assert published[0].args["user_id"] == BOB
    assert backup_branches(neon)[0]["name"] in str(published[0].args["view"])
