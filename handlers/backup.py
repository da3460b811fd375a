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
    BackupHealth,
    BackupHelp,
    BackupList,
    BackupNow,
    BackupPrune,
    BackupSchedule,
    BackupStatus,
    parse_backup_command,
)
from bot.domain.errors import InvalidInput, LifeguardError
from bot.services.backups import BackupService
from bot.services.health import HealthService
from bot.services.ports import MessageRef
from bot.services.scheduled_backups import ScheduledBackups
from handlers import blocks, health_blocks
from handlers.cards import CANNOT_POST_HERE, show_card

log = logging.getLogger("lifeguard.handlers.backup")

RunLater = Callable[[Callable[[], object], str], object]
STORE_DOWN = ("Lifeguard could not record the request: its own store did not answer. "
              "Nothing was started; try again in a minute.")
NOT_WIRED = "This part of Lifeguard is not set up in this deployment."
UNANSWERED = ("Lifeguard could not answer: its store or Neon failed (see its log; "
              "`python -m bot doctor` says what is unreachable).")


def register_backup_handlers(app: App, backups: BackupService, run_later: RunLater, *,
                             health: HealthService | None = None,
                             scheduled: ScheduledBackups | None = None,
                             describe_schedule: Callable[[], Any] | None = None) -> None:
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
        elif isinstance(parsed, BackupHealth | BackupPrune | BackupSchedule):
            _ops_command(parsed, user_id, ack, respond)

    def _ops_command(parsed: BackupHealth | BackupPrune | BackupSchedule, user_id: str,
                     ack: Ack, respond: Respond) -> None:
        """`/backup health | prune | schedule`: answered only to the asker."""
        if isinstance(parsed, BackupSchedule):
            if describe_schedule is None:
                ack(**blocks.error_message(NOT_WIRED))
                return
            try:
                ack(**health_blocks.schedule_view(describe_schedule()))
            except Exception:
                log.exception("could not describe the schedule")
                ack(**blocks.error_message("Lifeguard could not describe its schedule; "
                                           "see its log."))
            return
        if isinstance(parsed, BackupHealth):
            if health is None:
                ack(**blocks.error_message(NOT_WIRED))
                return
            ack()

            def report() -> None:
                try:
                    respond(**health_blocks.health_report(health.report()))
                except Exception:
                    log.exception("could not build the health report")
                    respond(**blocks.error_message(UNANSWERED))
            run_later(report, "backup health")
            return
        if scheduled is None:
            ack(**blocks.error_message(NOT_WIRED))
            return
        ack()

        def show_plan() -> None:
            try:
                respond(**health_blocks.prune_plan(scheduled.show_prune(user_id)))
            except LifeguardError as problem:
                respond(**blocks.error_message(f"{problem} Nothing was deleted."))
            except Exception:
                log.exception("could not plan the prune")
                respond(**blocks.error_message(f"{UNANSWERED} Nothing was deleted."))
        run_later(show_plan, "backup prune")

    @app.action(health_blocks.PRUNE_CONFIRM)
    def confirm_prune(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        if scheduled is None:
            ack()
            return
        user_id, plan_hash = body["user"]["id"], body["actions"][0]["value"]
        try:
            scheduled.confirm_prune(user_id, plan_hash)  # recorded before the ack
        except Exception:
            log.exception("could not record a prune confirmation")
            ack()
            respond(**{**blocks.error_message(STORE_DOWN), "replace_original": True})
            return
        ack()
        respond(**health_blocks.prune_started())

        def prune() -> None:
            try:
                outcome = scheduled.execute_prune(user_id, plan_hash)
            except LifeguardError as problem:
                respond(**{**blocks.error_message(str(problem)), "replace_original": True})
                return
            except Exception:
                log.exception("could not prune")
                respond(**{**blocks.error_message(UNANSWERED), "replace_original": True})
                return
            respond(**health_blocks.prune_outcome(outcome))
        run_later(prune, "backup prune confirmed")

    @app.action(health_blocks.PRUNE_CANCEL)
    def cancel_prune(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        if scheduled is not None:
            try:
                scheduled.cancel_prune(body["user"]["id"], body["actions"][0]["value"])
            except Exception:
                log.exception("could not record a prune cancellation")
        ack()
        respond(**health_blocks.prune_cancelled())

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

