"""Faults after the restore branch exists: transient trouble is retried (the steps are
idempotent), and a restore that fails for good removes the branch it made."""

from __future__ import annotations

from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.support.bot_process import audit_entries
from tests.support.restore_steps import ask, card, click, rows, write
from tests.support.waits import wait_for_card

APPROVE = "request.approve"


def restore_branches(neon) -> list[str]:
    return [b["name"] for b in neon.branches() if b["name"].startswith("restore-")]


def take_backup(driver, slack, neon) -> str:
    write(neon, "main", "original")
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [backup] = [b["name"] for b in neon.branches() if b["name"].startswith("backup-")]
    return backup


def actions(bot_env, request_id: str) -> list[str]:
    return [e["action"] for e in audit_entries(bot_env) if e["subject"] == request_id]


def test_transient_neon_trouble_after_the_branch_exists_is_retried(driver, neon, slack,
                                                                   bot_env):
    backup = take_backup(driver, slack, neon)
    request_id = ask(driver, slack, f"from {backup} roll back", ALICE)
    # Verification lists endpoints: Neon fails that more often than the client retries.
    neon.fail_next(500, times=8, method="GET", path_contains="/endpoints")
    click(driver, slack, APPROVE, request_id, BOB)
    done = card(slack, request_id, "done (approved by", timeout=90)
    assert "failed" not in done["text"]
    [restored] = restore_branches(neon)
    assert rows(neon, restored) == ["original"]
    assert "request.failed" not in actions(bot_env, request_id)
    assert actions(bot_env, request_id)[-1] == "request.succeeded"


def test_a_restore_that_fails_for_good_removes_the_branch_it_made(driver, neon, slack,
                                                                 bot_env):
    backup = take_backup(driver, slack, neon)
    request_id = ask(driver, slack, f"from {backup} roll back", ALICE)
    # Verification needs a read-only endpoint on the backup: Neon refuses it for good.
    neon.fail_next(422, times=1, method="POST", path_contains="/endpoints",
                   message="endpoint limit reached")
    click(driver, slack, APPROVE, request_id, BOB)
    failed = card(slack, request_id, "failed", timeout=60)
    assert "was removed" in failed["text"]
    assert restore_branches(neon) == []
    steps = [a for a in actions(bot_env, request_id) if a.startswith("request.")]
    assert steps.count("request.branch_created") == 1
    assert steps[-2:] == ["request.step_failed", "request.failed"]
    assert "alert.posted" in actions(bot_env, request_id)  # and the failure was alerted
