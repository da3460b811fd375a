"""`/restore`, its form and the approval buttons: parse, call the restore service, render."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain.errors import InvalidInput, LifeguardError
from bot.domain.requests import ChangeRequest, RequestState
from bot.domain.restores import (
    RestoreAt,
    RestoreCancel,
    RestoreForm,
    RestoreFrom,
    RestoreHelp,
    RestoreLog,
    RestorePromote,
    RestoreStatus,
    parse_restore_command,
)
from bot.services.ports import MessageRef
from bot.services.restores import RestoreService
from handlers import blocks
from handlers import restore_blocks as cards
from handlers.cards import show_card
from handlers.directory import SlackDirectory

log = logging.getLogger("lifeguard.handlers.restore")

RunLater = Callable[[Callable[[], object], str], object]
STORE_DOWN = ("Lifeguard could not record the request: its own store did not answer. "
              "Nothing was started; try again in a minute.")


def register_restore_handlers(app: App, restores: RestoreService, run_later: RunLater,
                              approvals_channel: str) -> None:
    def answer(respond: Respond, work: Callable[[], dict[str, Any]], what: str) -> None:
        """Run `work` after the acknowledgement and tell only the asker what came of it."""
        def job() -> None:
            try:
                respond(**work())
            except LifeguardError as problem:
                respond(**blocks.error_message(f"{problem} Nothing was changed."))
        run_later(job, what)

    def ask(user_id: str, channel_id: str | None, response_url: str | None,
            parsed: RestoreAt | RestoreFrom | RestorePromote) -> dict[str, Any]:
        where = {"channel_id": channel_id, "response_url": response_url}
        if isinstance(parsed, RestoreAt):
            request = restores.request_point_in_time(user_id, parsed.when_text,
                                                     parsed.reason, **where)
        elif isinstance(parsed, RestoreFrom):
            request = restores.request_from_branch(user_id, parsed.branch_name,
                                                   parsed.reason, **where)
        else:
            request = restores.request_promotion(user_id, parsed.branch_name,
                                                 parsed.reason, **where)
        return cards.request_accepted(request, approvals_channel)

    @app.command("/restore")
    def restore_command(ack: Ack, command: dict[str, Any], respond: Respond,
                        client: WebClient) -> None:
        user_id, text = command["user_id"], (command.get("text") or "").strip()
        try:
            parsed = parse_restore_command(text)
        except LifeguardError as problem:
            ack(**cards.restore_help(str(problem)) if isinstance(problem, InvalidInput)
                else blocks.error_message(str(problem)))
            return
        if isinstance(parsed, RestoreHelp):
            ack(**cards.restore_help())
        elif isinstance(parsed, RestoreForm):
            ack()
            client.views_open(trigger_id=command["trigger_id"],
                              view=cards.restore_form(datetime.now(UTC)))
        elif isinstance(parsed, RestoreAt | RestoreFrom | RestorePromote):
            try:
                restores.record_command(user_id, text)
            except Exception:
                log.exception("could not record a restore command")
                ack(**blocks.error_message(STORE_DOWN))
                return
            ack(**cards.checking(text))
            answer(respond, lambda: ask(user_id, command.get("channel_id"),
                                        command.get("response_url"), parsed),
                   f"restore request by {user_id}")
        elif isinstance(parsed, RestoreStatus):
            ack()
            answer(respond, lambda: (cards.request_status(restores.get(parsed.request_id))
                                     if parsed.request_id
                                     else cards.status_list(restores.open_requests())),
                   "restore status")
        elif isinstance(parsed, RestoreLog):
            ack()
            answer(respond, lambda: _log(restores, parsed.request_id), "restore log")
        elif isinstance(parsed, RestoreCancel):
            decide(ack, respond, lambda: restores.cancel(parsed.request_id, user_id))

    def decide(ack: Ack, respond: Respond, decision: Callable[[], ChangeRequest]) -> None:
        """Record the decision (compare-and-set, audited) before acknowledging; a refusal is
        told only to the person who clicked."""
        try:
            request = decision()
        except LifeguardError as problem:
            ack()
            respond(**{**blocks.error_message(str(problem)), "replace_original": False})
            return
        ack()
        if request.state == RequestState.APPROVED:
            run_later(lambda: restores.advance(request.id), f"run request {request.id}")

    def button(verb: Callable[[str, str], ChangeRequest]) -> Callable[..., None]:
        def clicked(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            request_id, user_id = body["actions"][0]["value"], body["user"]["id"]
            decide(ack, respond, lambda: verb(request_id, user_id))
        return clicked

    app.action(cards.APPROVE)(button(restores.approve))
    app.action(cards.REJECT)(button(restores.reject))
    app.action(cards.CANCEL)(button(restores.cancel))

    @app.view(cards.FORM_CALLBACK)
    def form_submitted(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        user_id = body["user"]["id"]
        values = body["view"]["state"]["values"]
        picked = (values.get(cards.FORM_WHEN, {}).get(cards.FORM_WHEN) or {}).get(
            "selected_date_time")
        source = ((values.get(cards.FORM_SOURCE, {}).get(cards.FORM_SOURCE) or {}).get("value")
                  or "").strip()
        reason = ((values.get(cards.FORM_REASON, {}).get(cards.FORM_REASON) or {}).get("value")
                  or "").strip()
        if bool(picked) == bool(source):
            ack(response_action="errors", errors={
                cards.FORM_WHEN: "Choose an instant, or name a backup branch below, not both."})
            return
        if source:
            text = f"from {source} {reason}".strip()
        else:
            instant = datetime.fromtimestamp(int(picked), UTC)
            text = f"{instant:%Y-%m-%dT%H:%M:%SZ} {reason}".strip()
        try:
            parsed = parse_restore_command(text)
            restores.record_command(user_id, text)
        except LifeguardError as problem:
            ack(response_action="errors", errors={cards.FORM_REASON: str(problem)[:150]})
            return
        ack()
        assert isinstance(parsed, RestoreAt | RestoreFrom)

        def job() -> None:
            try:
                message = ask(user_id, None, None, parsed)
            except LifeguardError as problem:
                message = blocks.error_message(f"{problem} Nothing was changed.")
            dm = client.conversations_open(users=user_id)["channel"]["id"]
            client.chat_postMessage(channel=dm, text=message["text"],
                                    blocks=message.get("blocks"))
        run_later(job, f"restore form by {user_id}")


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
