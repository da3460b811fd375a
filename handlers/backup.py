"""`/backup` and its buttons: parse, call the backup service, render. Nothing else.

Listeners are handed the services (`backups`, `health`, `scheduled` …) and the person who
asked (`asker`) through Bolt's context (handlers.wiring); whatever they raise is told
privately to that person by the one error handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.domain.backups import (
    Backup,
    BackupDelete,
    BackupHealth,
    BackupHelp,
    BackupList,
    BackupNow,
    BackupPrune,
    BackupSchedule,
    BackupStatus,
    BackupVerify,
    parse_backup_command,
)
from bot.domain.errors import InvalidInput
from bot.domain.export_commands import BackupExport, BackupExports
from bot.domain.text import escape
from bot.services.backups import BackupService
from bot.services.exports import ExportService
from bot.services.health import HealthService
from bot.services.ports import MessageRef
from bot.services.restores import RestoreService
from bot.services.scheduled_backups import ScheduledBackups
from handlers import blocks, health_blocks, ids
from handlers import restore_blocks as restore_cards
from handlers.answers import Asker
from handlers.cards import CANNOT_POST_HERE, show_card
from handlers.export import handle_export_command
from handlers.payloads import PLAN_HASH, click, slash_command
from handlers.verification_blocks import backup_verified

log = logging.getLogger("lifeguard.handlers.backup")

NOTHING_DELETED = "nothing was deleted"
BACKUP_RECORDED = ("the backup is recorded, and Lifeguard goes on with it by itself once it "
                   "can; `/backup list` shows where it stands")

def register(app: App) -> None:
    app.command(ids.BACKUP_COMMAND)(handle_backup_command)
    app.action(ids.PRUNE_CONFIRM)(handle_prune_confirm)
    app.action(ids.PRUNE_CANCEL)(handle_prune_cancel)


def handle_backup_command(ack: Ack, command: dict[str, Any], respond: Respond,
                          backups: BackupService, health: HealthService,
                          scheduled: ScheduledBackups, describe_schedule: Callable[[], Any],
                          restores: RestoreService, approvals_channel: str,
                          asker: Asker, exports: ExportService | None = None) -> None:
    asked = slash_command(command)
    try:
        parsed = parse_backup_command(asked.text)
    except InvalidInput as problem:
        ack(**blocks.error_message(str(problem)))
        return
    if isinstance(parsed, BackupHelp):
        ack(**blocks.backup_help(parsed.problem))
    elif isinstance(parsed, BackupExport | BackupExports):
        handle_export_command(parsed, asked, ack, respond, exports, asker)
    elif isinstance(parsed, BackupNow):
        backup = backups.request_backup(asked.user_id, parsed.reason,
                                        channel_id=asked.channel_id,
                                        response_url=asked.response_url)  # before the ack
        ack(**blocks.backup_accepted(backup))
        asker.later(lambda: backups.advance(backup.id), f"backup {backup.branch_name}",
                    unchanged=BACKUP_RECORDED)
    elif isinstance(parsed, BackupList):
        ack()
        asker.later(lambda: respond(**blocks.backup_list(backups.list_backups(),
                                                         datetime.now(UTC))), "backup list")
    elif isinstance(parsed, BackupDelete):
        # A backup is a recovery point: deleting it is a change request a second person
        # approves on its card, like a restore.
        ack()
        asker.later(lambda: respond(**restore_cards.request_accepted(
            restores.request_backup_deletion(asked.user_id, parsed.branch_name, "",
                                             channel_id=asked.channel_id,
                                             response_url=asked.response_url),
            approvals_channel)),
            f"backup delete {parsed.branch_name}", unchanged=NOTHING_DELETED)
    elif isinstance(parsed, BackupVerify):
        ack(**blocks.ephemeral(f":mag: Verifying `{escape(parsed.branch_name)}` against "
                               "production…"))
        asker.later(lambda: respond(**backup_verified(
            parsed.branch_name, *restores.backup_checks.verify(asked.user_id,
                                                                parsed.branch_name))),
            f"backup verify {parsed.branch_name}")
    elif isinstance(parsed, BackupSchedule):
        ack(**health_blocks.schedule_view(describe_schedule()))
    elif isinstance(parsed, BackupHealth):
        ack()
        asker.later(lambda: respond(**health_blocks.health_report(health.report())),
                    "backup health")
    elif isinstance(parsed, BackupPrune):
        ack()
        asker.later(lambda: respond(**health_blocks.prune_plan(
            scheduled.show_prune(asked.user_id))), "backup prune", unchanged=NOTHING_DELETED)


def handle_prune_confirm(ack: Ack, body: dict[str, Any], respond: Respond,
                         scheduled: ScheduledBackups, restores: RestoreService,
                         approvals_channel: str, asker: Asker) -> None:
    """The plan shown becomes a change request: pruning deletes recovery points, so a
    second person approves it on its card, like a restore."""
    clicked = click(body, PLAN_HASH, "the hash of a prune plan")
    asker.replace_original = True  # the answer takes the private plan's place
    asker.unchanged = NOTHING_DELETED
    ack()

    def ask() -> None:
        view = scheduled.current_plan(clicked.user_id, clicked.value)
        request = restores.request_prune(
            clicked.user_id, tuple(c.name for c in view.plan.delete), view.plan_hash,
            channel_id=clicked.channel_id, response_url=None)
        respond(**{**restore_cards.request_accepted(request, approvals_channel),
                   "replace_original": True})

    asker.later(ask, "backup prune asked")


def handle_prune_cancel(ack: Ack, body: dict[str, Any], respond: Respond,
                        scheduled: ScheduledBackups, asker: Asker) -> None:
    clicked = click(body, PLAN_HASH, "the hash of a prune plan")
    asker.replace_original = True
    scheduled.cancel_prune(clicked.user_id, clicked.value)  # recorded before the ack
    ack()
    respond(**health_blocks.prune_cancelled())


class SlackBackupNotifier:
    """Shows a backup's progress: one status message in the channel where it was asked,
    updated in place; failures before anything was created go only to the requester."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def backup_changed(self, backup: Backup) -> MessageRef | None:
        if backup.status == BackupStatus.FAILED and backup.branch_id is None \
                and backup.card_ts is None:
            self._respond(backup, blocks.backup_not_started(backup))
            return None
        card = blocks.backup_card(backup)
        if backup.status in (BackupStatus.DELETING, BackupStatus.DELETED) \
                and not backup.card_ts:
            return None  # deletion is answered to whoever confirmed it
        if not backup.channel_id:
            return None
        try:
            return show_card(self.client, backup.card_channel or backup.channel_id,
                             backup.card_ts, backup.id,
                             backup.created_at, card)
        except SlackApiError as error:
            if error.response.get("error") not in CANNOT_POST_HERE:
                raise
            self._respond(backup, {**card, "response_type": "ephemeral",
                                   "replace_original": True})
            return None

    @staticmethod
    def _respond(backup: Backup, message: dict[str, Any]) -> None:
        if backup.response_url:
            WebhookClient(backup.response_url).send_dict(message)

