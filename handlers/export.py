"""`/backup export` and `/backup exports` (reached from handlers.backup's command
listener), and the export's status card. Parse, call the export service, render."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from slack_bolt import Ack, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.domain.errors import LifeguardError
from bot.domain.export_commands import BackupExport, BackupExports
from bot.domain.export_jobs import Export, ExportState
from bot.services.exports import ExportService, ExportsOff
from bot.services.ports import MessageRef
from handlers import export_blocks
from handlers.answers import Asker
from handlers.cards import CANNOT_POST_HERE, show_card
from handlers.payloads import SlashCommand

log = logging.getLogger("lifeguard.handlers.export")

EXPORT_RECORDED = ("the export is recorded, and Lifeguard goes on with it by itself; "
                   "`/backup exports` shows where it stands")


def handle_export_command(parsed: BackupExport | BackupExports, asked: SlashCommand,
                          ack: Ack, respond: Respond, exports: ExportService | None,
                          asker: Asker) -> None:
    if exports is None:  # an app wired without the export service
        raise ExportsOff()
    if isinstance(parsed, BackupExport):
        try:
            export = exports.request_export(asked.user_id, parsed.branch, parsed.reason,
                                            channel_id=asked.channel_id,
                                            response_url=asked.response_url)  # before the ack
        except LifeguardError as refusal:  # told privately by the error handler; alerted
            asker.run_later(partial(exports.alert_refused, asked.user_id, parsed.branch,
                                    refusal), "export refused")
            raise
        ack(**export_blocks.export_accepted(export))
        asker.later(lambda: exports.advance(export.id), f"export {export.id}",
                    unchanged=EXPORT_RECORDED)
    else:
        if not exports.enabled:
            exports.listing()  # raises ExportsOff, told privately by the error handler
        ack()
        asker.later(lambda: respond(**export_blocks.export_list(exports.listing(),
                                                                datetime.now(UTC))),
                    "backup exports")


class SlackExportNotifier:
    """One status card per export, in the channel where it was asked, updated in place
    (progress included); a scheduled export has no card (its failure alerts)."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def export_changed(self, export: Export) -> MessageRef | None:
        if not export.channel_id:
            return None
        if export.state in (ExportState.DELETING, ExportState.DELETED) and not export.card_ts:
            return None
        card = export_blocks.export_card(export, datetime.now(UTC))
        return self._show(export, card)

    def export_progress(self, export: Export, written: int, database: str) -> None:
        if not (export.card_channel and export.card_ts):
            return
        card = export_blocks.export_card(export, datetime.now(UTC), written=written,
                                         database=database)
        self.client.chat_update(channel=export.card_channel, ts=export.card_ts, **card)

    def _show(self, export: Export, card: dict[str, Any]) -> MessageRef | None:
        assert export.channel_id is not None
        try:
            return show_card(self.client, export.card_channel or export.channel_id,
                             export.card_ts, export.id, export.created_at, card)
        except SlackApiError as error:
            if error.response.get("error") not in CANNOT_POST_HERE:
                raise
            if export.response_url:  # a channel the bot is not in: tell the requester
                WebhookClient(export.response_url).send_dict(
                    {**card, "response_type": "ephemeral", "replace_original": False})
            return None
