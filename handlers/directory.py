"""Who people are, read from Slack: time zones (users.info) and approver user groups
(usergroups.users.list). Answers are cached briefly; when Slack cannot say, approval
questions answer None and the caller refuses (fail closed)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient

from bot.domain.errors import ExternalServiceError

log = logging.getLogger("lifeguard.directory")

GROUP_CACHE_SECONDS = 60.0
ZONE_CACHE_SECONDS = 600.0


class SlackDirectory:
    def __init__(self, client: WebClient, approvers: tuple[str, ...], *,
                 group_cache_seconds: float = GROUP_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.approver_users = frozenset(a for a in approvers if not a.startswith("S"))
        self.approver_groups = tuple(a for a in approvers if a.startswith("S"))
        self.group_cache_seconds = group_cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._zones: dict[str, tuple[float, tzinfo]] = {}

    def time_zone(self, user_id: str) -> tzinfo:
        with self._lock:
            cached = self._zones.get(user_id)
        if cached and self.clock() - cached[0] < ZONE_CACHE_SECONDS:
            return cached[1]
        try:
            user = self.client.users_info(user=user_id)["user"]
            zone: tzinfo = ZoneInfo(str(user.get("tz") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        except Exception as error:
            log.warning("users.info failed for %s: %s", user_id, error)
            raise ExternalServiceError(
                "Lifeguard could not read your time zone from Slack, so it cannot tell what "
                "a time without a zone means. Try again in a minute.") from None
        with self._lock:
            self._zones[user_id] = (self.clock(), zone)
        return zone

    def _members(self, group_id: str, cache: bool = True) -> frozenset[str] | None:
        """The group's members. Decisions use reads made when a click arrives (`cache`:
        reused briefly); other lookups neither use nor fill that cache."""
        with self._lock:
            cached = self._groups.get(group_id)
        if cache and cached and self.clock() - cached[0] < self.group_cache_seconds:
            return cached[1]
        try:
            users = self.client.usergroups_users_list(usergroup=group_id)["users"]
        except Exception as error:
            log.warning("usergroups.users.list failed for %s: %s", group_id, error)
            return None
        members = frozenset(str(u) for u in users)
        if cache:
            with self._lock:
                self._groups[group_id] = (self.clock(), members)
        return members

    def is_approver(self, user_id: str) -> bool | None:
        if user_id in self.approver_users:
            return True
        unknown = False
        for group in self.approver_groups:
            members = self._members(group)
            if members is None:
                unknown = True
            elif user_id in members:
                return True
        return None if unknown else False

    def approver_ids(self) -> list[str]:
        """Everyone who may approve, as far as Slack can tell now (for reminders)."""
        people = set(self.approver_users)
        for group in self.approver_groups:
            people |= self._members(group, cache=False) or frozenset()
        return sorted(people)

    def mention_approvers(self) -> str:
        mentions = [f"<@{u}>" for u in sorted(self.approver_users)]
        mentions += [f"<!subteam^{g}>" for g in self.approver_groups]
        return ", ".join(mentions) or "nobody (APPROVERS is empty)"
