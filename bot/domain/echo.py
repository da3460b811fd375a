"""Echoing what a person typed back to them in Slack, safely."""

from __future__ import annotations

import unicodedata

from bot.domain.text import escape


def echo(text: str, limit: int = 60) -> str:
    """Some of what a person typed, safe to show inside `code` in Slack: shortened, with
    control characters, backticks and Slack's special characters (& < >) neutralised."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    shown = "".join("?" if unicodedata.category(c).startswith("C") else c for c in shown)
    return escape(shown).replace("`", "'")
