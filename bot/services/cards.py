"""Showing a piece of work's status card and remembering where it was posted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from bot.services.ports import MessageRef

log = logging.getLogger("lifeguard.cards")

Work = TypeVar("Work", bound=Any)  # a dataclass with card_channel and card_ts fields


def show_and_remember(work: Work, *, show: Callable[[Work], MessageRef | None],
                      remember: Callable[[Work, MessageRef], Work | None],
                      reload: Callable[[], Work], what: str) -> Work:
    """Show `work` in Slack; when a new card was posted, store where (a compare-and-set,
    re-read and tried again when another change got there first). Slack trouble is logged
    and never stops the work itself."""
    try:
        posted = show(work)
    except Exception:
        log.exception("could not show %s in Slack", what)
        return work
    if posted is None:
        return work
    for _ in range(3):
        updated = remember(work, posted)
        if updated is not None:
            return updated
        work = reload()
    return replace(work, card_channel=posted.channel_id, card_ts=posted.ts)
