"""After a SIGKILL in the middle of a restore or a promotion, the restarted bot finishes
the work within seconds: leases are short and renewed by a heartbeat, so nothing waits
out a long lease of the dead worker."""

from __future__ import annotations

import time
from datetime import UTC, timedelta

from tests.e2e.conftest import ALICE, BOB, CAROL, OPS_CHANNEL
from tests.support.bot_process import BotProcess, audit_entries
from tests.support.restore_steps import ask, card, click, rows, write
from tests.support.waits import wait_for_card

APPROVE = "request.approve"
RESUME_GOAL_SECONDS = 10.0


def resumed_within(bot_env: dict[str, str], slack, request_id: str) -> float:
    """Start the bot again; seconds from the restart to the request's card saying done."""
    started = time.monotonic()
    with BotProcess(bot_env):
        card(slack, request_id, "done (approved by", timeout=60)
        return time.monotonic() - started


def test_a_promotion_killed_mid_way_finishes_within_seconds_of_the_restart(
        bot_env, neon, slack, driver, bot):
    write(neon, "main", "original")
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [backup] = [b["name"] for b in neon.branches() if b["name"].startswith("backup-")]
    write(neon, "main", "bad deploy wrote this")

    neon.operation_seconds = 2.0  # each of Neon's operations: the restore, an endpoint
    promote_id = ask(driver, slack, f"promote {backup} roll back", ALICE)
    click(driver, slack, APPROVE, promote_id, CAROL)
    card(slack, promote_id, "Neon is restoring")
    bot.kill()
    seconds = resumed_within(bot_env, slack, promote_id)
    print(f"\npromotion: done {seconds:.1f} s after the restart "
          f"(goal {RESUME_GOAL_SECONDS:.0f} s)")
    assert seconds < RESUME_GOAL_SECONDS
    assert rows(neon, "main") == ["original"]
    actions = [e["action"] for e in audit_entries(bot_env) if e["subject"] == promote_id]
    assert actions.count("request.promoted") == 1 and actions[-1] == "request.succeeded"


def test_a_restore_killed_mid_way_finishes_within_seconds_of_the_restart(
        bot_env, neon, slack, driver, bot):
    write(neon, "main", "kept")
    kept_at = neon.checkpoint()
    time.sleep(0.5)
    neon.operation_seconds = 2.0
    when = (kept_at + timedelta(seconds=0.2)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    request_id = ask(driver, slack, when, ALICE)
    click(driver, slack, APPROVE, request_id, BOB)
    card(slack, request_id, "Neon is creating")
    bot.kill()
    seconds = resumed_within(bot_env, slack, request_id)
    print(f"\nrestore: done {seconds:.1f} s after the restart "
          f"(goal {RESUME_GOAL_SECONDS:.0f} s)")
    assert seconds < RESUME_GOAL_SECONDS
    actions = [e["action"] for e in audit_entries(bot_env) if e["subject"] == request_id]
    assert actions.count("request.branch_created") == 1 and actions[-1] == "request.succeeded"
