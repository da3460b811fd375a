"""The Slack edge's wiring: what every listener is handed, the check every payload passes
first, and the one error handler.

`install(app, services)` adds, in this order:

1. `PayloadGuard`, the first middleware after Bolt's own (signature, authorization): it
   checks the envelope of a request before Bolt's payload helpers read it, so a broken
   payload is answered ("That didn't work: …") instead of failing inside Bolt.
2. `hand_in_services`: each service, and the request's `Asker`, go into Bolt's context;
   Bolt passes context entries to listeners by argument name (`restores`, `asker` …).
3. `handle_error`, Bolt's error handler: whatever a listener raises before or after its
   acknowledgement is told privately to the person, in the one wording of
   handlers.answers, and is never an HTTP 5xx.
4. each handlers module's `register(app)`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.middleware import Middleware

from bot.domain.echo import echo
from bot.services.backups import BackupService
from bot.services.drills import DrillService
from bot.services.exports import ExportService
from bot.services.health import HealthService
from bot.services.incidents import IncidentService
from bot.services.restores import RestoreService
from bot.services.scheduled_backups import ScheduledBackups
from handlers import backup, drill, home, ids, incident, restore
from handlers.answers import Asker, RunLater, acknowledgement
from handlers.blocks import Message
from handlers.payloads import MalformedPayload, check_envelope

log = logging.getLogger("lifeguard.handlers")

LISTENER_MODULES = (backup, restore, drill, home, incident)
NOT_IN_TIME = ("Lifeguard did not answer within Slack's 3 seconds, so what you asked may "
               "still be done: look (`/restore status`, `/backup list`) before asking again")


@dataclass(frozen=True)
class Services:
    """What listeners are handed through Bolt's context, each under its field's name."""

    backups: BackupService
    restores: RestoreService
    drills: DrillService
    health: HealthService
    scheduled: ScheduledBackups
    describe_schedule: Callable[[], object]
    run_later: RunLater  # work after the acknowledgement, on the worker pool
    approvals_channel: str
    alerts_channel: str
    incidents: IncidentService
    exports: ExportService | None = None  # /backup export and exports


def install(app: App, services: Services) -> None:
    app.use(PayloadGuard(services.run_later))
    app.use(hand_in(services))
    app.error(handle_error)
    for module in LISTENER_MODULES:
        module.register(app)


def hand_in(services: Services) -> Callable[..., None]:
    names = [f.name for f in fields(services)]

    def hand_in_services(context: BoltContext, body: Any, next: Callable[[], None]) -> None:
        for name in names:
            context[name] = getattr(services, name)
        context["asker"] = Asker.of(body, context.client, services.run_later)
        next()

    return hand_in_services


def answered(asker: Asker, message: Message) -> BoltResponse:
    """HTTP 200 that tells the person `message`: in the acknowledgement where Slack shows
    it (commands, forms), else through the response_url or a direct message, sent from
    the worker pool so that the acknowledgement does not wait on Slack."""
    body = acknowledgement(asker, message)
    if body is None:
        asker.run_later(lambda: asker.tell(message), f"answer a {asker.kind}")
        return BoltResponse(status=200, body="")
    return BoltResponse(status=200, body=json.dumps(body),
                        headers={"content-type": "application/json;charset=utf-8"})


class PayloadGuard(Middleware):
    """Refuses a request whose envelope is broken, before Bolt routes it."""

    def __init__(self, run_later: RunLater) -> None:
        self.run_later = run_later

    def process(self, *, req: BoltRequest, resp: BoltResponse,
                next: Callable[[], BoltResponse]) -> BoltResponse | None:
        try:
            check_envelope(req.body)
        except MalformedPayload as problem:
            asker = Asker.of(req.body, req.context.client, self.run_later)
            return answered(asker, asker.explain(problem))
        return next()


def _run_now(job: Callable[[], object], what: str) -> object:
    return job()


def handle_error(error: Exception, body: Any, context: BoltContext,
                 response: BoltResponse | None) -> BoltResponse | None:
    """Bolt's one error handler. `response` is None when the listener had acknowledged
    already: the answer then goes through the response_url or a direct message."""
    asker = context.get("asker")
    if not isinstance(asker, Asker):  # the error came before the services were handed in
        asker = Asker.of(body, context.client, _run_now)
    unchanged = None
    if isinstance(error, BoltUnhandledRequestError):
        unhandled = _unhandled(asker.kind, body)
        if unhandled is None:  # an event Lifeguard does not use: nothing to say
            return BoltResponse(status=200, body="")
        what, name, known = unhandled
        if known:  # its listener did not acknowledge within Slack's 3 seconds
            error = TimeoutError(f"the {what} listener for {name} did not acknowledge in time")
            unchanged = NOT_IN_TIME
        else:
            error = MalformedPayload(f"Lifeguard has no {what} `{echo(name)}`")
    message = asker.explain(error, unchanged)
    if response is None:
        asker.tell(message)
        return None
    return answered(asker, message)


def _unhandled(kind: str, body: Any) -> tuple[str, str, bool] | None:
    """What Bolt found no listener for: (what it is, its name, whether Lifeguard has a
    listener for that name); None for events, which need no answer."""
    if not isinstance(body, Mapping):
        return None
    if kind == "command":
        name = str(body.get("command"))
        return "command", name, name in ids.COMMANDS
    if kind == "block_actions":
        name = str(body["actions"][0]["action_id"])  # the guard checked the shape
        return "button", name, name in ids.BUTTONS
    if kind in ("view_submission", "view_closed"):
        name = str(body["view"]["callback_id"])
        return "form", name, name in ids.FORMS
    if kind in ("shortcut", "message_action", "block_suggestion", "interactive_message"):
        return "shortcut", str(body.get("callback_id") or body.get("action_id")), False
    return None
