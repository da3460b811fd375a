"""The `/backup` and `/drill` listeners and their buttons, called directly with fakes."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import Mock

import pytest

from bot.domain.backups import BackupStatus
from bot.domain.errors import Conflict, NotAllowed
from bot.domain.retention import PruneCandidate, PrunePlan, RetentionPolicy
from bot.services.backups import BackupService, Listing
from bot.services.drills import DrillService
from bot.services.health import HealthService
from bot.services.restores import RestoreService
from bot.services.scheduled_backups import PruneView, ScheduledBackups
from handlers import backup, drill
from handlers.payloads import MalformedPayload
from tests.support.handler_fakes import (
    ALERTS,
    ALICE,
    APPROVALS,
    BOB,
    T0,
    RecordingAsker,
    Said,
    click_body,
    command,
    make_backup,
    make_drill,
    make_request,
)

PLAN_HASH = "ab" * 32


@pytest.fixture
def backups() -> Mock:
    service = Mock(spec=BackupService)
    service.request_backup.return_value = make_backup(BackupStatus.REQUESTED)
    service.list_backups.return_value = Listing([])
    return service


@pytest.fixture
def scheduled() -> Mock:
    return Mock(spec=ScheduledBackups)


def run_backup(text: str, backups: Mock, scheduled: Mock | None = None,
               health: Mock | None = None, restores: Mock | None = None
               ) -> tuple[Said, Said, RecordingAsker]:
    ack, respond, asker = Said(), Said(), RecordingAsker()
    backup.handle_backup_command(ack, command(text, command="/backup"), respond, backups,
                                 health or Mock(spec=HealthService),
                                 scheduled or Mock(spec=ScheduledBackups),
                                 lambda: {"jobs": []}, restores or Mock(spec=RestoreService),
                                 APPROVALS, asker)
    return ack, respond, asker


def test_backup_now_is_recorded_before_the_ack_and_taken_after(backups):
    ack, _, asker = run_backup("now nightly", backups)
    backups.request_backup.assert_called_once_with(
        ALICE, "nightly", channel_id="C0OPS", response_url="https://hooks.slack.test/answer")
    assert "Taking backup `backup-20260113-142500`" in ack.texts[0]
    assert asker.ran == ["backup backup-20260113-142500"]
    backups.advance.assert_called_once_with("b0000001")


def test_a_backup_that_fails_unexpectedly_after_the_ack_says_it_is_recorded(backups):
    backups.advance.side_effect = RuntimeError("store down")
    _, _, asker = run_backup("now", backups)
    [told] = asker.told_texts
    assert "error id" in told and "the backup is recorded" in told


def test_backup_list_is_answered_after_the_ack(backups):
    ack, respond, _ = run_backup("list", backups)
    assert ack.calls == [{}]
    assert respond.calls and respond.calls[0]["response_type"] == "ephemeral"


def test_a_refused_deletion_says_nothing_was_deleted(backups):
    restores = Mock(spec=RestoreService)
    restores.request_backup_deletion.side_effect = NotAllowed(
        "`main` is not a backup Lifeguard took.")
    _, respond, asker = run_backup("delete main", backups, restores=restores)
    assert respond.calls == []
    assert asker.told_texts == [":warning: `main` is not a backup Lifeguard took. "
                                "Nothing was deleted."]


def test_a_deletion_is_a_change_request_a_second_person_approves(backups):
    restores = Mock(spec=RestoreService)
    request = make_request()
    restores.request_backup_deletion.return_value = request
    _, respond, asker = run_backup("delete backup-20260113-142500", backups, restores=restores)
    restores.request_backup_deletion.assert_called_once_with(
        ALICE, "backup-20260113-142500", "", channel_id="C0OPS",
        response_url="https://hooks.slack.test/answer")
    assert request.id in respond.texts[0]
    assert asker.ran == ["backup delete backup-20260113-142500"]
    backups.confirm_delete.assert_not_called()  # nothing is deleted by the asking alone


def test_the_prune_plan_failing_says_nothing_was_deleted(backups, scheduled):
    scheduled.show_prune.side_effect = RuntimeError("neon down")
    _, _, asker = run_backup("prune", backups, scheduled)
    [told] = asker.told_texts
    assert "error id" in told and "nothing was deleted" in told


def test_a_confirmed_prune_plan_becomes_a_change_request(scheduled):
    restores = Mock(spec=RestoreService)
    restores.request_prune.return_value = make_request()
    old = PruneCandidate("backup-20251201-030000", T0 - timedelta(days=43), True, False, False)
    scheduled.current_plan.return_value = PruneView(
        PrunePlan(keep=(), delete=(old,), reasons={}), PLAN_HASH, RetentionPolicy(7, 4, 12),
        "UTC")
    ack, respond, asker = Said(), Said(), RecordingAsker("block_actions", BOB)
    backup.handle_prune_confirm(ack, click_body("backup.prune.confirm", PLAN_HASH), respond,
                                scheduled, restores, APPROVALS, asker)
    assert ack.calls == [{}]
    scheduled.current_plan.assert_called_once_with(BOB, PLAN_HASH)
    restores.request_prune.assert_called_once_with(
        BOB, ("backup-20251201-030000",), PLAN_HASH, channel_id="C0APPROVALS",
        response_url=None)
    assert "waiting for approval" in respond.texts[0]


def test_a_prune_request_failing_after_the_ack_says_nothing_was_deleted(scheduled):
    scheduled.current_plan.side_effect = RuntimeError("store down")
    ack, respond, asker = Said(), Said(), RecordingAsker("block_actions", BOB)
    backup.handle_prune_confirm(ack, click_body("backup.prune.confirm", PLAN_HASH), respond,
                                scheduled, Mock(spec=RestoreService), APPROVALS, asker)
    [told] = asker.told
    assert "error id" in told["text"] and "nothing was deleted" in told["text"]
    assert told["replace_original"] is True  # takes the place of the private plan


@pytest.mark.parametrize("value", ["short", 42, "zz" * 32])
def test_a_prune_click_without_a_plan_hash_touches_nothing(scheduled, value):
    with pytest.raises(MalformedPayload, match="hash of a prune plan"):
        backup.handle_prune_cancel(Said(), click_body("backup.prune.cancel", value), Said(),
                                   scheduled, RecordingAsker("block_actions", BOB))
    scheduled.cancel_prune.assert_not_called()


@pytest.fixture
def drills() -> Mock:
    service = Mock(spec=DrillService)
    service.start.return_value = make_drill()
    return service


def test_drill_start_is_recorded_before_the_ack_and_run_after(drills):
    ack, asker = Said(), RecordingAsker()
    drill.handle_drill_command(ack, command("start", command="/drill"), Said(), drills, asker,
                               ALERTS)
    drills.start.assert_called_once_with(ALICE, "C0OPS")
    assert "Drill `d0000001` started" in ack.texts[0]
    drills.advance.assert_called_once_with("d0000001")


def test_a_drill_that_cannot_start_says_no_new_drill_was_started(drills):
    drills.start.side_effect = Conflict("Drill d0000009 is still running: one drill runs at "
                                        "a time.")
    asker = RecordingAsker("block_actions", BOB)
    with pytest.raises(Conflict):
        drill.handle_drill_start(Said(), click_body("drill.start", "start"), Said(), drills,
                                 asker, ALERTS)
    assert asker.unchanged == "no new drill was started"


def test_the_start_button_answers_privately_without_replacing_the_reminder(drills):
    respond = Said()
    drill.handle_drill_start(Said(), click_body("drill.start", "start"), respond, drills,
                             RecordingAsker("block_actions", BOB), ALERTS)
    drills.start.assert_called_once_with(BOB, "C0APPROVALS")
    [answer] = respond.calls
    assert answer["replace_original"] is False and "started" in answer["text"]
