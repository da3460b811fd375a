"""`/backup` and its buttons: parse, call the backup service, render. Nothing else."""

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
    BackupHelp,
    BackupList,
    BackupNow,
    BackupStatus,
    parse_backup_command,
)
from bot.domain.errors import InvalidInput, LifeguardError
from bot.services.backups import BackupService
from bot.services.ports import MessageRef
from handlers import blocks
from handlers.cards import CANNOT_POST_HERE, show_card

log = logging.getLogger("lifeguard.handlers.backup")

RunLater = Callable[[Callable[[], object], str], object]
STORE_DOWN = ("Lifeguard could not record the request: its own store did not answer. "
              "Nothing was started; try again in a minute.")


def register_backup_handlers(app: App, backups: BackupService, run_later: RunLater) -> None:
    @app.command("/backup")
    def backup_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        user_id = command["user_id"]
        try:
            parsed = parse_backup_command(command.get("text") or "")
        except InvalidInput as problem:
            ack(**blocks.error_message(str(problem)))
            return
        if isinstance(parsed, BackupHelp):
            ack(**blocks.backup_help(parsed.problem))
        elif isinstance(parsed, BackupNow):
            try:
                backup = backups.request_backup(user_id, parsed.reason,
                                                channel_id=command.get("channel_id"),
                                                response_url=command.get("response_url"))
            except LifeguardError as problem:
                ack(**blocks.error_message(str(problem)))
                return
            except Exception:
                log.exception("could not record a backup request")
                ack(**blocks.error_message(STORE_DOWN))
                return
            ack(**blocks.backup_accepted(backup))
            run_later(lambda: backups.advance(backup.id), f"backup {backup.branch_name}")
        elif isinstance(parsed, BackupList):
            ack()
            run_later(lambda: respond(**blocks.backup_list(backups.list_backups(),
                                                           datetime.now(UTC))), "backup list")
        elif isinstance(parsed, BackupDelete):
            ack()
            run_later(lambda: _ask_to_delete(backups, user_id, parsed.branch_name, respond),
                      f"backup delete {parsed.branch_name}")

    @app.action(blocks.DELETE_CONFIRM)
    def confirm_delete(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        user_id, backup_id = body["user"]["id"], body["actions"][0]["value"]
        try:
            backup = backups.confirm_delete(user_id, backup_id)
        except LifeguardError as problem:
            ack()
            respond(**{**blocks.error_message(str(problem)), "replace_original": True})
            return
        ack()
        respond(**blocks.delete_outcome(backup))
        run_later(lambda: respond(**blocks.delete_outcome(backups.settle(backup_id) or backup)),
                  f"delete {backup.branch_name}")

    @app.action(blocks.DELETE_CANCEL)
    def cancel_delete(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        backup = backups.cancel_delete(body["user"]["id"], body["actions"][0]["value"])
        respond(**blocks.kept(backup.branch_name if backup else "the backup"))


def _ask_to_delete(backups: BackupService, user_id: str, branch_name: str,
                   respond: Respond) -> None:
    try:
        backup = backups.prepare_delete(user_id, branch_name)
    except LifeguardError as problem:
        respond(**blocks.error_message(f"{problem} Nothing was deleted."))
        return
    respond(**blocks.delete_confirmation(backup))


class SlackBackupNotifier:
    """Shows a backup's progress: one status message in the channel where it was asked,
    updated in place; failures before anything was created go only to the requester."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def backup_changed(self, backup: Backup) -> MessageRef | None:
        if backup.status == BackupStatus.FAILED and backup.branch_id is None \
                and backup.message_ts is None:
            self._respond(backup, blocks.backup_not_started(backup))
            return None
        card = blocks.backup_card(backup)
        if backup.status in (BackupStatus.DELETING, BackupStatus.DELETED) \
                and not backup.message_ts:
            return None  # deletion is answered to whoever confirmed it
        if not backup.channel_id:
            return None
        try:
            return show_card(self.client, backup.channel_id, backup.message_ts, backup.id,
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

