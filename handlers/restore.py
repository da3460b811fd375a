"""`/restore`, its form and the approval buttons: parse, call the restore service, render.

Listeners are handed the restore service (`restores`), the person who asked (`asker`) and
the settings they need through Bolt's context (handlers.wiring); whatever they raise is
told privately to that person by the one error handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain.errors import InvalidInput, LifeguardError
from bot.domain.instants import instant_from_timestamp
from bot.domain.requests import ChangeRequest, RequestState
from bot.domain.restores import (
    REQUEST_ID,
    RestoreAt,
    RestoreCancel,
    RestoreCommand,
    RestoreExport,
    RestoreForm,
    RestoreFrom,
    RestoreHelp,
    RestoreLog,
    RestorePromote,
    RestoreStatus,
    parse_restore_command,
)
from bot.domain.table_restores import RestoreTable
from bot.domain.text import escape
from bot.services.ports import MessageRef
from bot.services.restores import RestoreService
from handlers import blocks, home, ids
from handlers import restore_blocks as cards
from handlers.answers import Asker
from handlers.cards import show_card
from handlers.directory import SlackDirectory
from handlers.payloads import (
    Click,
    MalformedPayload,
    RestoreFormInput,
    click,
    on_home_tab,
    restore_form_input,
    slash_command,
)

log = logging.getLogger("lifeguard.handlers.restore")

Decision = Callable[..., ChangeRequest]  # (request id, user id, *, shown_on)
FIELD_ERROR_LIMIT = 150
RUN_RECORDED = ("the approval is recorded, and Lifeguard goes on with the request by itself "
                "once it can; the request's card shows where it stands")


def register(app: App) -> None:
    app.command(ids.RESTORE_COMMAND)(handle_restore_command)
    app.action(ids.APPROVE)(handle_approve)
    app.action(ids.REJECT)(handle_reject)
    app.action(ids.CANCEL)(handle_cancel)
    app.view(ids.RESTORE_FORM)(handle_restore_form)


def handle_restore_command(ack: Ack, command: dict[str, Any], respond: Respond,
                           client: WebClient, restores: RestoreService, asker: Asker,
                           approvals_channel: str) -> None:
    asked = slash_command(command)
    try:
        parsed = parse_restore_command(asked.text)
    except InvalidInput as problem:
        ack(**cards.restore_help(str(problem)))
        return
    if isinstance(parsed, RestoreHelp):
        ack(**cards.restore_help())
    elif isinstance(parsed, RestoreForm):
        if asked.trigger_id is None:
            raise InvalidInput(escape("Slack did not send what is needed to open the form; "
                                      "type `/restore <when>` instead (`/restore help` shows "
                                      "how)."))
        ack()
        client.views_open(trigger_id=asked.trigger_id, view=cards.restore_form(datetime.now(UTC)))
    elif isinstance(parsed, RestoreAt | RestoreFrom | RestorePromote | RestoreTable
                    | RestoreExport):
        restores.record_command(asked.user_id, asked.text)  # durably, before the ack
        ack(**cards.checking(asked.text))
        asker.later(lambda: respond(**_ask(restores, asked.user_id, parsed, approvals_channel,
                                           asked.channel_id, asked.response_url)),
                    f"restore request by {asked.user_id}")
    elif isinstance(parsed, RestoreStatus):
        ack()
        asker.later(lambda: respond(**_status(restores, parsed.request_id)), "restore status")
    elif isinstance(parsed, RestoreLog):
        ack()
        asker.later(lambda: respond(**_log(restores, parsed.request_id)), "restore log")
    elif isinstance(parsed, RestoreCancel):
        _decide(ack, restores.cancel, parsed.request_id, asked.user_id, None, restores,
                asker)


def handle_approve(ack: Ack, body: dict[str, Any], restores: RestoreService,
                   asker: Asker, client: WebClient | None = None,
                   context: Any = None) -> None:
    clicked = card_click(body)
    _decide(ack, restores.approve, clicked.value, clicked.user_id, clicked.message,
            restores, asker)
    _refresh_home(client, clicked.user_id, context, asker)


def handle_reject(ack: Ack, body: dict[str, Any], restores: RestoreService,
                  asker: Asker, client: WebClient | None = None,
                  context: Any = None) -> None:
    clicked = card_click(body)
    _decide(ack, restores.reject, clicked.value, clicked.user_id, clicked.message,
            restores, asker)
    _refresh_home(client, clicked.user_id, context, asker)


def _refresh_home(client: WebClient | None, user_id: str, context: Any,
                  asker: Asker) -> None:
    """After a decision the decider's Home no longer shows it as waiting (Bolt always
    hands in the client and the context)."""
    if client is None or context is None:
        return

    def publish() -> None:
        try:
            home.publish_home(client, user_id, context)
        except Exception as error:  # the decision stands; the Home catches up when opened
            log.warning("could not refresh the App Home of %s: %s", user_id, error)

    asker.run_later(publish, f"refresh the App Home of {user_id}")


def handle_cancel(ack: Ack, body: dict[str, Any], restores: RestoreService,
                  asker: Asker) -> None:
    clicked = card_click(body)
    _decide(ack, restores.cancel, clicked.value, clicked.user_id, clicked.message,
            restores, asker)


def card_click(body: dict[str, Any]) -> Click:
    """A click on an approval card's button: it must come from a message (the card), so
    the decision can be bound to the request that card shows."""
    clicked = click(body, REQUEST_ID, "a request id")
    if clicked.message is None and not on_home_tab(body, clicked.value):
        raise MalformedPayload("the click did not come from a request's card or from your "
                               "Home tab")
    return clicked


def _decide(ack: Ack, decision: Decision, request_id: str, user_id: str,
            shown_on: MessageRef | None, restores: RestoreService, asker: Asker) -> None:
    """Record the decision (compare-and-set, audited) before acknowledging; a refusal
    goes, through the error handler, only to the person who clicked or typed. `shown_on`
    is the card a click came from (None for a typed command)."""
    request = decision(request_id, user_id, shown_on=shown_on)
    ack()
    if request.state == RequestState.APPROVED:
        asker.later(lambda: restores.advance(request.id), f"run request {request.id}",
                    unchanged=RUN_RECORDED)


def handle_restore_form(ack: Ack, body: dict[str, Any], restores: RestoreService,
                        asker: Asker, approvals_channel: str) -> None:
    form = restore_form_input(body)
    if (form.picked is not None) == bool(form.source):
        ack(response_action="errors", errors={
            ids.FORM_WHEN: "Choose an instant, or name a backup branch below, not both."})
        return
    try:
        text = _form_command(form)
    except LifeguardError as problem:
        ack(response_action="errors", errors={ids.FORM_WHEN: _field_error(problem)})
        return
    try:
        parsed = parse_restore_command(text)
    except LifeguardError as problem:
        ack(response_action="errors", errors={ids.FORM_REASON: _field_error(problem)})
        return
    assert isinstance(parsed, RestoreAt | RestoreFrom)
    restores.record_command(form.user_id, text)  # durably, before the ack
    ack()
    # A form has no response_url: the answer goes to the person in a direct message.
    asker.later(lambda: asker.tell(_ask(restores, form.user_id, parsed, approvals_channel)),
                f"restore form by {form.user_id}")


def _field_error(problem: Exception) -> str:
    """A problem shown under a form's field: Slack keeps these short."""
    text = str(problem)
    return text if len(text) <= FIELD_ERROR_LIMIT else text[:FIELD_ERROR_LIMIT - 1] + "…"


def _form_command(form: RestoreFormInput) -> str:
    """The `/restore` text the form stands for."""
    if form.source:
        return f"from {form.source} {form.reason}".strip()
    assert form.picked is not None
    instant = instant_from_timestamp(form.picked)
    return (f"{instant.year:04d}-{instant:%m-%dT%H:%M:%S}Z {form.reason}").strip()


def _ask(restores: RestoreService, user_id: str, parsed: RestoreCommand,
         approvals_channel: str, channel_id: str | None = None,
         response_url: str | None = None) -> dict[str, Any]:
    """Make the request (Neon and Slack lookups, after the acknowledgement) and say what
    came of it."""
    where = {"channel_id": channel_id, "response_url": response_url}
    if isinstance(parsed, RestoreAt):
        request = restores.request_point_in_time(user_id, parsed.when_text, parsed.reason,
                                                 **where)
    elif isinstance(parsed, RestoreFrom):
        request = restores.request_from_branch(user_id, parsed.branch_name, parsed.reason,
                                               **where)
    elif isinstance(parsed, RestoreTable):
        request = restores.tables.request(user_id, parsed, **where)
    elif isinstance(parsed, RestoreExport):
        request = restores.request_export(user_id, parsed.export_id, parsed.reason, **where)
    else:
        assert isinstance(parsed, RestorePromote)
        request = restores.request_promotion(user_id, parsed.branch_name, parsed.reason,
                                             **where)
    return cards.request_accepted(request, approvals_channel)


def _status(restores: RestoreService, request_id: str | None) -> dict[str, Any]:
    if request_id:
        return cards.request_status(restores.get(request_id))
    return cards.status_list(restores.open_requests())


def _log(restores: RestoreService, request_id: str | None) -> dict[str, Any]:
    if request_id is None:
        recent = restores.recent()
        if not recent:
            return blocks.ephemeral("No restore requests yet.")
        request_id = recent[0].id
    request, entries = restores.history(request_id)
    return cards.request_log(request, entries)


class SlackRequestNotifier:
    """The approval card in APPROVALS_CHANNEL, updated in place at every change, and a DM
    to each approver pointing at it."""

    def __init__(self, client: WebClient, directory: SlackDirectory,
                 approvals_channel: str) -> None:
        self.client = client
        self.directory = directory
        self.approvals_channel = approvals_channel

    def request_changed(self, request: ChangeRequest) -> MessageRef | None:
        return show_card(self.client, request.card_channel or self.approvals_channel,
                         request.card_ts, request.id, request.created_at,
                         cards.request_card(request))

    def ask_approvers(self, request: ChangeRequest) -> None:
        permalink = None
        if request.card_ts:
            permalink = self.client.chat_getPermalink(
                channel=request.card_channel or self.approvals_channel,
                message_ts=request.card_ts).get("permalink")
        message = cards.approver_dm(request, permalink)
        for user_id in self.directory.approver_ids():
            if user_id == request.requester:
                continue
            try:
                dm = self.client.conversations_open(users=user_id)["channel"]["id"]
                self.client.chat_postMessage(channel=dm, **message)
            except Exception:
                log.exception("could not tell approver %s about request %s", user_id,
                              request.id)
