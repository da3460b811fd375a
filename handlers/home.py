"""The App Home tab: what Lifeguard is, its commands, the latest backups."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.services.backups import BackupService
from handlers import blocks


def register_home_handlers(app: App, backups: BackupService) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        client.views_publish(user_id=event["user"], view=blocks.home_view(backups.recent()))
