"""Waiting for what a user would see in Slack: a channel message or a response_url post
whose text contains some words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.fake_slack import FakeSlack


def first_with_text(slack: FakeSlack, items: Callable[[], list[dict[str, Any]]], words: str,
                    timeout: float) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((item for item in items() if words in item.get("text", "")), None)

    return slack.wait_for(found, timeout=timeout)


def wait_for_card(slack: FakeSlack, channel: str, words: str,
                  timeout: float = 20) -> dict[str, Any]:
    """The bot's message in `channel` once its (possibly updated) text contains `words`."""
    return first_with_text(slack, lambda: slack.messages(channel), words, timeout)


def wait_for_response(slack: FakeSlack, url: str, words: str,
                      timeout: float = 20) -> dict[str, Any]:
    """The post to `url` (a response_url) whose text contains `words`."""
    return first_with_text(slack, lambda: slack.responses(url), words, timeout)
