"""The App Home tab: what needs the person looking at it, and how things stand. Published
when they open it and again after each of their decisions (approve, reject), so the
approvals waiting for them are never stale for long."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.domain.requests import RequestState
from bot.services.backups import BackupService
from bot.services.drills import DrillService
from bot.services.exports import ExportService
from bot.services.health import HealthService
from bot.services.incidents import IncidentService
from bot.services.restores import RestoreService
from handlers import ids
from handlers.health_blocks import schedule_lines
from handlers.home_blocks import PART_ITEMS, HomeFacts, home_view
from handlers.payloads import event_user

log = logging.getLogger("lifeguard.handlers.home")


def register(app: App) -> None:
    app.event(ids.APP_HOME_OPENED)(handle_home_opened)


def handle_home_opened(event: dict[str, Any], client: WebClient, context: Any) -> None:
    user_id = event_user(event)
    if event.get("tab", "home") != "home":
        return
    publish_home(client, user_id, context)


def publish_home(client: WebClient, user_id: str, services: Mapping[str, Any]) -> None:
    """Read what the Home shows `user_id` (`services`: Bolt's context, where the wiring
    put each service) and publish it."""
    client.views_publish(user_id=user_id, view=home_view(home_facts(user_id, services)))


def home_facts(user_id: str, services: Mapping[str, Any]) -> HomeFacts:
    restores: RestoreService = services["restores"]
    backups: BackupService = services["backups"]
    drills: DrillService = services["drills"]
    health: HealthService = services["health"]
    incidents: IncidentService | None = services.get("incidents")
    exports: ExportService | None = services.get("exports")
    describe_schedule: Callable[[], object] = services["describe_schedule"]
    problems: list[str] = []

    def read(what: str, call: Callable[[], Any], default: Any) -> Any:
        try:
            return call()
        except Exception as error:  # one part unreadable: the rest still shows
            log.warning("App Home: could not read %s: %s", what, error)
            problems.append(what)
            return default

    requests = read("the requests", restores.open_requests, [])
    pending = [r for r in requests if r.state == RequestState.PENDING]
    may_decide = bool(pending) and user_id != "" and read(
        "whether you approve", lambda: restores.directory.is_approver(user_id), None) is True
    waiting = [r for r in pending if may_decide and r.requester != user_id
               and user_id not in r.approvers]
    report = read("the health report", health.report, None)
    drill = read("the drills", lambda: drills.history(1), [])
    return HomeFacts(
        user_id=user_id, waiting=waiting[:PART_ITEMS],
        mine=[r for r in requests if r.requester == user_id][:PART_ITEMS],
        incidents=read("the incidents", incidents.live, []) if incidents else [],
        checks=list(report.checks) if report is not None else None,
        backups=read("the backups", lambda: backups.recent(5), []),
        exports=read("the exports", lambda: exports.recent(5), [])
        if exports is not None and exports.enabled else None,
        drill=drill[0] if drill else None,
        schedule=read("the schedule", lambda: schedule_lines(describe_schedule()), []),
        problems=problems)
