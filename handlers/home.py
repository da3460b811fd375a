"""The App Home tab: what Lifeguard is, its commands, the latest backups."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.domain.restores import RESTORE_USAGE
from bot.services.backups import BackupService
from bot.services.restores import RestoreService
from handlers import blocks, ids
from handlers.payloads import event_user
from handlers.restore_blocks import request_line


def register(app: App) -> None:
    app.event(ids.APP_HOME_OPENED)(handle_home_opened)


def handle_home_opened(event: dict[str, Any], client: WebClient, backups: BackupService,
                       restores: RestoreService) -> None:
    user_id = event_user(event)
    if event.get("tab", "home") != "home":
        return
    view = blocks.home_view(backups.recent(),
                            [request_line(r) for r in restores.open_requests()],
                            RESTORE_USAGE)
    client.views_publish(user_id=user_id, view=view)
