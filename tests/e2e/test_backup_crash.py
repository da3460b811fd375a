"""A crash in the middle of a backup: the work resumes after a restart, on the same card,
with exactly one branch and a complete audit trail."""

from __future__ import annotations

from tests.e2e.conftest import ALICE, OPS_CHANNEL
from tests.support.bot_process import BotProcess, audit_entries
from tests.support.waits import wait_for_card


def test_sigkill_while_neon_creates_the_branch_then_restart_completes_it(bot_env, neon,
                                                                          slack, driver, bot):
    neon.operation_seconds = 4.0  # Neon is slow today
    driver.command("/backup", "now before the crash", user_id=ALICE, channel_id=OPS_CHANNEL)
    card = wait_for_card(slack, OPS_CHANNEL, "Creating backup")
    assert len([b for b in neon.branches() if b["name"].startswith("backup-")]) == 1
    bot.kill()

    with BotProcess(bot_env):
        done = wait_for_card(slack, OPS_CHANNEL, "is ready", timeout=90)
    assert done["ts"] == card["ts"]  # the same message, updated in place
    assert len(slack.messages(OPS_CHANNEL)) == 1
    names = [b["name"] for b in neon.branches() if b["name"].startswith("backup-")]
    assert len(names) == 1
    creates = [r for r in neon.mutations() if r.method == "POST" and r.path.endswith("/branches")]
    assert len(creates) == 1
    actions = [e["action"] for e in audit_entries(bot_env) if e["subject"] == names[0]]
    assert actions == ["backup.requested", "backup.creating", "backup.ready"]
