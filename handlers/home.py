"""The App Home tab: what Lifeguard is, its commands, the latest backups."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.domain.restores import RESTORE_USAGE
from bot.services.backups import BackupService
from bot.services.restores import RestoreService
from handlers import blocks
from handlers.restore_blocks import request_line


def register_home_handlers(app: App, backups: BackupService, restores: RestoreService) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        view = blocks.home_view(backups.recent(),
                                [request_line(r) for r in restores.open_requests()],
                                RESTORE_USAGE)
        client.views_publish(user_id=event["user"], view=view)
