"""Restores with two-person approval, end to end: signed requests to the real bot, the
fake Slack and Neon on loopback, branches that are real databases."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import ALICE, BOB, CAROL, MALLORY, OPS_CHANNEL
from tests.support.bot_process import APPROVALS_CHANNEL, BotProcess, audit_entries
from tests.support.restore_steps import ask, card, click, refused, rows, write
from tests.support.waits import wait_for_card, wait_for_response

APPROVE, REJECT, CANCEL = "request.approve", "request.reject", "request.cancel"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def restore_branches(neon) -> list[dict]:
    return [b for b in neon.branches() if b["name"].startswith("restore-")]


def actions_of(bot_env, request_id: str) -> list[tuple[str, str]]:
    return [(e["action"], e["actor"]) for e in audit_entries(bot_env)
            if e["subject"] == request_id]


def test_point_in_time_restore_between_checkpoints_holds_the_older_data(
        driver, neon, slack, bot_env):
    write(neon, "main", "A")
    t1 = neon.checkpoint()
    time.sleep(1.0)
    write(neon, "main", "B")
    t2 = neon.checkpoint()
    between = t1 + (t2 - t1) / 2

    request_id = ask(driver, slack, f"{rfc3339(between)} bad deploy", ALICE)
    pending = card(slack, request_id, "waiting for approval")
    text = pending["text"]
    assert f"<@{ALICE}>" in text and "bad deploy" in text
    assert f"{between:%Y-%m-%d %H:%M} UTC" in text and "<!date^" in text
    assert "0 of 1" in text and "expires" in text and "restore window" in text
    buttons = {e["action_id"]: e["value"] for b in pending["blocks"] if b["type"] == "actions"
               for e in b["elements"]}
    assert buttons == {APPROVE: request_id, REJECT: request_id, CANCEL: request_id}
    # approvers are told, with a link to the card; nothing ran yet
    slack.wait_for(lambda: len([c for c in slack.calls_to("chat.postMessage")
                                if c.args.get("channel", "").startswith("D")]) == 2)
    assert restore_branches(neon) == []

    click(driver, slack, APPROVE, request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=60)
    assert "Verification" in done["text"]
    [branch] = restore_branches(neon)
    assert rows(neon, branch["name"]) == ["A"]  # the older checkpoint's data
    assert rows(neon, "main") == ["A", "B"]  # production untouched
    # compared with live production, which has moved on: flagged, not hidden
    assert "differ" in done["text"]
    assert "postgresql://" not in str(slack.calls)  # no connection string ever posted
    actions = actions_of(bot_env, request_id)
    assert actions[0] == ("request.created", ALICE)
    assert ("request.approved", BOB) in actions
    assert actions[-1] == ("request.succeeded", "system")


def test_self_approval_and_non_approvers_are_refused(driver, neon, slack, bot_env):
    request_id = ask(driver, slack, "5 minutes ago oops", ALICE)
    card(slack, request_id, "waiting for approval")
    own = click(driver, slack, APPROVE, request_id, ALICE)
    told = wait_for_response(slack, own, "two-person rule")
    assert told["response_type"] == "ephemeral"
    stranger = click(driver, slack, APPROVE, request_id, MALLORY)
    assert "not one of them" in wait_for_response(slack, stranger, "APPROVERS")["text"]
    time.sleep(0.5)
    assert "0 of 1" in card(slack, request_id)["text"]
    assert neon.mutations() == []
    refusals = [a for a in actions_of(bot_env, request_id) if a[0] == "request.refused"]
    assert refusals == [("request.refused", ALICE), ("request.refused", MALLORY)]


def test_unreadable_group_membership_refuses_the_click(bot_env, neon, slack, driver, bot):
    bot.stop()
    slack.set_usergroup("S0DBAS", [BOB])
    with BotProcess({**bot_env, "APPROVERS": "S0DBAS"}) as grouped:
        driver.bot_url = grouped.url
        driver.events_url = grouped.url + "/slack/events"
        request_id = ask(driver, slack, "10 minutes ago", ALICE)
        card(slack, request_id, "waiting for approval")
        slack.fail_next("usergroups.users.list", error="internal_error", times=1)
        url = click(driver, slack, APPROVE, request_id, BOB)
        assert "could not check" in wait_for_response(slack, url, "refuses")["text"]
        assert "0 of 1" in card(slack, request_id)["text"]
        assert neon.mutations() == []
        click(driver, slack, APPROVE, request_id, BOB)  # Slack answers again: accepted
        card(slack, request_id, "done (approved by", timeout=60)


def test_two_approvals_need_two_different_approvers(bot_env, neon, slack, driver, bot):
    bot.stop()
    with BotProcess({**bot_env, "REQUIRED_APPROVALS": "2"}) as strict:
        driver.bot_url = strict.url
        driver.events_url = strict.url + "/slack/events"
        request_id = ask(driver, slack, "3 minutes ago", ALICE)
        click(driver, slack, APPROVE, request_id, BOB)
        card(slack, request_id, "1 of 2")
        again = click(driver, slack, APPROVE, request_id, BOB)
        assert "already approved" in wait_for_response(slack, again, "already approved")["text"]
        time.sleep(0.5)
        assert restore_branches(neon) == []
        click(driver, slack, APPROVE, request_id, CAROL)
        card(slack, request_id, "done (approved by", timeout=60)
    assert len(restore_branches(neon)) == 1


def test_a_double_click_and_a_slack_retry_run_once(driver, neon, slack, bot_env):
    request_id = ask(driver, slack, "2 minutes ago", ALICE)
    card(slack, request_id, "waiting for approval")
    clicks = [threading.Thread(target=driver.click, args=(APPROVE, request_id),
                               kwargs={"user_id": BOB, "channel_id": APPROVALS_CHANNEL,
                                       "retry_num": n or None, "retry_reason": "http_timeout"
                                       if n else None})
              for n in range(3)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    card(slack, request_id, "done (approved by", timeout=60)
    time.sleep(1)
    assert len(restore_branches(neon)) == 1
    creates = [r for r in neon.mutations() if r.method == "POST" and r.path.endswith("/branches")]
    assert len(creates) == 1
    assert [a for a in actions_of(bot_env, request_id)].count(("request.approved", BOB)) == 1


def test_two_bots_on_one_postgresql_store_run_an_approval_once(bot_env, neon, slack, driver,
                                                               bot, postgres):
    bot.stop()
    shared = {**bot_env, "DATABASE_URL": postgres.create_database("two_bots")}
    with BotProcess(shared) as first, BotProcess(shared) as second:
        driver.bot_url = first.url
        driver.events_url = first.url + "/slack/events"
        request_id = ask(driver, slack, "4 minutes ago", ALICE)
        card(slack, request_id, "waiting for approval")
        targets = [first.url, second.url]
        threads = []
        for url in targets:  # the same click reaches both replicas at once
            other = type(driver)(url, driver.signing_secret, slack)
            threads.append(threading.Thread(target=other.click, args=(APPROVE, request_id),
                                            kwargs={"user_id": BOB,
                                                    "channel_id": APPROVALS_CHANNEL}))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        card(slack, request_id, "done (approved by", timeout=60)
        time.sleep(3)  # both reconcilers have had their turn
    assert len(restore_branches(neon)) == 1
    creates = [r for r in neon.mutations() if r.method == "POST" and r.path.endswith("/branches")]
    assert len(creates) == 1
    actions = actions_of(shared, request_id)
    assert actions.count(("request.approved", BOB)) == 1
    assert actions.count(("request.succeeded", "system")) == 1


def test_an_expired_request_updates_its_card_without_a_click(bot_env, neon, slack, driver, bot):
    bot.stop()
    with BotProcess({**bot_env, "APPROVAL_TTL": "3s", "RECONCILE_INTERVAL": "1s"}) as quick:
        driver.bot_url = quick.url
        driver.events_url = quick.url + "/slack/events"
        request_id = ask(driver, slack, "6 minutes ago", ALICE)
        expired = card(slack, request_id, "expired at", timeout=20)
        assert "nothing was run" in expired["text"]
        assert not [b for b in expired["blocks"] if b["type"] == "actions"]  # no buttons left
        late = click(driver, slack, APPROVE, request_id, BOB)
        assert "expired" in wait_for_response(slack, late, "expired")["text"]
    assert neon.mutations() == []
    assert ("request.expired", "system") in actions_of(bot_env, request_id)


def test_reject_and_cancel_end_the_request_with_nothing_run(driver, neon, slack, bot_env):
    rejected = ask(driver, slack, "7 minutes ago", ALICE)
    click(driver, slack, REJECT, rejected, CAROL)
    assert f"rejected by <@{CAROL}>" in card(slack, rejected, "rejected by")["text"]

    cancelled = ask(driver, slack, "8 minutes ago", ALICE)
    click(driver, slack, CANCEL, cancelled, ALICE)
    card(slack, cancelled, "cancelled by")

    by_command = ask(driver, slack, "9 minutes ago", ALICE)
    driver.command("/restore", f"cancel {by_command}", user_id=ALICE)
    card(slack, by_command, "cancelled by")

    too_late = click(driver, slack, APPROVE, rejected, BOB)
    assert "already rejected" in wait_for_response(slack, too_late, "already")["text"]
    time.sleep(0.5)
    assert neon.mutations() == []


def test_restore_from_a_backup_then_promote_it_and_undo(driver, neon, slack, bot_env):
    write(neon, "main", "original")
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [backup] = [b["name"] for b in neon.branches() if b["name"].startswith("backup-")]
    write(neon, "main", "bad deploy wrote this")

    restore_id = ask(driver, slack, f"from {backup} roll back", ALICE)
    click(driver, slack, APPROVE, restore_id, BOB)
    ready = card(slack, restore_id, "done (approved by", timeout=60)
    assert "row counts match" in ready["text"] or "match" in ready["text"]
    [restored] = [b["name"] for b in restore_branches(neon)]
    assert rows(neon, restored) == ["original"]
    assert f"/restore promote {restored}" in ready["text"]

    main_url_before = neon.connect_url("main")
    promote_id = ask(driver, slack, f"promote {restored} roll back", ALICE)
    click(driver, slack, APPROVE, promote_id, CAROL)
    promoted = card(slack, promote_id, "done (approved by", timeout=60)
    assert rows(neon, "main") == ["original"]
    assert neon.connect_url("main") == main_url_before  # connection strings do not change
    [kept] = [b["name"] for b in neon.branches() if b["name"].startswith("pre-restore-")]
    assert rows(neon, kept) == ["original", "bad deploy wrote this"]
    assert f"/restore promote {kept}" in promoted["text"]

    undo_id = ask(driver, slack, f"promote {kept} undo", ALICE)
    click(driver, slack, APPROVE, undo_id, BOB)
    card(slack, undo_id, "done (approved by", timeout=60)
    assert rows(neon, "main") == ["original", "bad deploy wrote this"]


def test_verification_flags_a_table_whose_row_count_differs(driver, neon, slack, bot_env):
    write(neon, "main", "one", "two")
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [backup] = [b["name"] for b in neon.branches() if b["name"].startswith("backup-")]
    neon.operation_seconds = 3.0
    request_id = ask(driver, slack, f"from {backup}", ALICE)
    click(driver, slack, APPROVE, request_id, BOB)
    card(slack, request_id, "Neon is creating")
    [restored] = [b["name"] for b in restore_branches(neon)]
    write(neon, restored, "appeared from nowhere")  # before Lifeguard verifies
    failed = card(slack, request_id, "failed", timeout=60)
    assert "orders" in failed["text"] and "3" in failed["text"] and "2" in failed["text"]
    assert ("request.verification_failed", "system") in actions_of(bot_env, request_id)


def test_status_and_log_answer_who_asked_who_approved_and_what_ran(driver, neon, slack):
    request_id = ask(driver, slack, "11 minutes ago audit me", ALICE)
    click(driver, slack, APPROVE, request_id, CAROL)
    card(slack, request_id, "done (approved by", timeout=60)
    url = slack.new_response_url()
    driver.command("/restore", f"log {request_id}", user_id=MALLORY, response_url=url)
    history = wait_for_response(slack, url, "History")
    text = str(history["blocks"])
    assert f"<@{ALICE}>" in text and "request.created" in text
    assert f"<@{CAROL}>" in text and "request.approved" in text
    assert "request.branch_created" in text and "request.succeeded" in text
    url = slack.new_response_url()
    driver.command("/restore", f"status {request_id}", user_id=MALLORY, response_url=url)
    assert "succeeded" in wait_for_response(slack, url, "succeeded")["text"]


def test_bad_restore_input_is_explained_only_to_the_requester(driver, neon, slack, bot_env):
    refused(driver, slack, "25:99", ALICE, "is not a time of day")
    refused(driver, slack, "tomorrow", ALICE, "nor a time")
    future = refused(driver, slack, rfc3339(datetime.now(UTC) + timedelta(hours=1)), ALICE,
                     "in the future")
    assert "UTC" in future["text"]
    old = refused(driver, slack, "2020-01-01 10:00 UTC", ALICE, "restore window")
    assert "UTC" in old["text"] and "Europe/Berlin" in old["text"]  # Alice's own zone too
    refused(driver, slack, "promote main", ALICE, "restore-")
    refused(driver, slack, "from feature-x", ALICE, "backup-")
    refused(driver, slack, "cancel zzz", ALICE, "is not a request id")
    time.sleep(0.5)
    assert neon.mutations() == []
    assert slack.messages(APPROVALS_CHANNEL) == []


def test_restore_alone_opens_a_form_whose_answer_becomes_a_request(driver, neon, slack):
    assert driver.command("/restore", "", user_id=ALICE).status_code == 200
    [opened] = slack.wait_for(lambda: slack.calls_to("views.open"))
    view = opened.args["view"]
    assert view["callback_id"] == "restore.form"
    picked = int((datetime.now(UTC) - timedelta(minutes=15)).timestamp())
    response = driver.submit_view("restore.form", {
        "when": {"when": {"type": "datetimepicker", "selected_date_time": picked}},
        "source": {"source": {"type": "plain_text_input", "value": None}},
        "reason": {"reason": {"type": "plain_text_input", "value": "from the form"}},
    }, user_id=ALICE)
    assert response.status_code == 200
    told = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage")
                                   if "waiting for approval" in c.args.get("text", "")])
    assert told[0].args["channel"].startswith("D")
    assert [m for m in slack.messages(APPROVALS_CHANNEL) if "from the form" in str(m)]


def test_sigkill_while_neon_works_then_restart_completes_the_restore(
        bot_env, neon, slack, driver, bot):
    write(neon, "main", "kept")
    kept_at = neon.checkpoint()
    time.sleep(0.5)
    neon.operation_seconds = 4.0
    request_id = ask(driver, slack, rfc3339(kept_at + timedelta(seconds=0.2)), ALICE)
    click(driver, slack, APPROVE, request_id, BOB)
    card(slack, request_id, "Neon is creating")
    bot.kill()
    with BotProcess(bot_env):
        done = card(slack, request_id, "done (approved by", timeout=90)
    assert len(restore_branches(neon)) == 1
    assert len([m for m in slack.messages(APPROVALS_CHANNEL) if request_id in m["text"]]) == 1
    actions = [a for a, _ in actions_of(bot_env, request_id)]
    assert actions[:2] == ["request.created", "request.approved"]
    assert actions.count("request.branch_created") == 1
    assert actions[-1] == "request.succeeded"
    assert "Verification" in done["text"]
    [branch] = restore_branches(neon)
    assert rows(neon, branch["name"]) == ["kept"]
