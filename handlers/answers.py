"""How Lifeguard answers the person who asked: privately, and in one wording whatever failed.

- A Lifeguard error (bot.domain.errors) is its own sentence (what was wrong, what to do),
  followed by what was left as it was ("Nothing was changed.").
- A malformed payload: "That didn't work: …; nothing was changed."
- Anything else: "Something went wrong (error id X); nothing was changed.", with the
  traceback logged under the same id and never shown.

Listeners say what stays true when their work fails (`Asker.unchanged`, such as "nothing
was deleted"), and hand work that runs after the acknowledgement to `Asker.later`, so a
failure there reaches the person too.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.domain.errors import LifeguardError
from handlers import blocks
from handlers.blocks import Message
from handlers.payloads import USER_ID, MalformedPayload

log = logging.getLogger("lifeguard.handlers")

RunLater = Callable[[Callable[[], object], str], object]
NOTHING_CHANGED = "nothing was changed"
RESPONSE_URL_TIMEOUT_SECONDS = 10


def new_error_id() -> str:
    return secrets.token_hex(4)


def _sentence(clause: str) -> str:
    return clause[:1].upper() + clause[1:] + "."


def failure_text(error: Exception, unchanged: str = NOTHING_CHANGED,
                 error_id: str | None = None) -> str:
    """What the person is told about `error`. `error_id` names an unexpected error's log
    entry; it is made up here when not given."""
    if isinstance(error, MalformedPayload):
        return f"That didn't work: {error}; {unchanged}."
    if isinstance(error, LifeguardError):
        said = str(error).strip()
        return said if unchanged.lower() in said.lower() else f"{said} {_sentence(unchanged)}"
    return (f"Something went wrong (error id `{error_id or new_error_id()}`); {unchanged}. "
            "Whoever runs Lifeguard finds that error id in its log.")


@dataclass
class Asker:
    """The person a request came from, and how to reach them privately: the request's
    response_url (commands, clicks), else a direct message, or the Home tab they opened."""

    client: WebClient
    run_later: RunLater
    kind: str  # "command", "block_actions", "view_submission", an event type …
    user_id: str | None
    response_url: str | None
    # What stays true when the work fails; a listener says more when it knows more.
    unchanged: str = NOTHING_CHANGED
    # An answer to a click replaces the message clicked (a private question) instead of
    # adding one; never set for cards in a channel, which everyone sees.
    replace_original: bool = False

    @classmethod
    def of(cls, body: object, client: WebClient, run_later: RunLater) -> Asker:
        """Whatever `body` holds, even malformed: what cannot be read is left out."""
        if not isinstance(body, Mapping):
            return cls(client, run_later, "unknown", None, None)
        user = body.get("user")
        user_id = body.get("user_id") if "command" in body else (
            user.get("id") if isinstance(user, Mapping) else None)
        kind = "command" if "command" in body else str(body.get("type") or "unknown")
        event = body.get("event")
        if kind == "event_callback" and isinstance(event, Mapping):
            kind, user_id = str(event.get("type")), event.get("user")
        response_url = body.get("response_url")
        return cls(client, run_later, kind,
                   user_id if isinstance(user_id, str) and USER_ID.match(user_id) else None,
                   response_url if isinstance(response_url, str)
                   and response_url.startswith(("https://", "http://")) else None)

    # --- failures --------------------------------------------------------------------------

    def explain(self, error: Exception, unchanged: str | None = None) -> Message:
        """Log `error` (with its traceback under an error id when it is unexpected) and
        return the private message that tells the person."""
        unchanged = unchanged or self.unchanged
        who = f"{self.kind} from {self.user_id or 'an unknown user'}"
        if isinstance(error, MalformedPayload):
            log.warning("malformed %s: %s", who, error)
            return blocks.error_message(failure_text(error, unchanged))
        if isinstance(error, LifeguardError):
            log.info("refused %s: %s", who, error)
            return blocks.error_message(failure_text(error, unchanged))
        error_id = new_error_id()
        log.error("error id %s: %s failed: %s: %s", error_id, who, type(error).__name__,
                  error, exc_info=error)
        return blocks.error_message(failure_text(error, unchanged, error_id))

    def fail(self, error: Exception, unchanged: str | None = None) -> None:
        self.tell(self.explain(error, unchanged))

    def later(self, work: Callable[[], object], what: str, *,
              unchanged: str | None = None) -> None:
        """Run `work` after Slack has been acknowledged, on the worker pool; if it fails,
        the person is told (in the one wording) instead of being left waiting."""
        def guarded() -> None:
            try:
                work()
            except Exception as error:
                self.fail(error, unchanged)

        self.run_later(guarded, what)

    # --- telling ---------------------------------------------------------------------------

    def tell(self, message: Message) -> None:
        """Send `message` to the person only. Never raises: when nobody can be reached,
        the log says what they would have been told."""
        text = str(message.get("text", ""))
        try:
            if self.response_url:
                reply = {**message, "response_type": "ephemeral",
                         "replace_original": self.replace_original}
                sent = WebhookClient(self.response_url,
                                     timeout=RESPONSE_URL_TIMEOUT_SECONDS).send_dict(reply)
                if sent.status_code != 200:
                    log.warning("response_url refused the answer (%s) for %s: %s",
                                sent.status_code, self.user_id, text)
            elif self.user_id and self.kind == "app_home_opened":
                self.client.views_publish(user_id=self.user_id, view=blocks.home_notice(text))
            elif self.user_id:
                dm = self.client.conversations_open(users=self.user_id)["channel"]["id"]
                self.client.chat_postMessage(channel=dm, text=text, blocks=message.get("blocks"))
            else:
                log.warning("nobody to answer for a %s; it would have said: %s", self.kind,
                            text)
        except (OSError, SlackApiError) as error:  # Slack could not be reached: no bug
            log.warning("could not answer %s privately (%s: %s); it would have said: %s",
                        self.user_id, type(error).__name__, error, text)
        except Exception:
            log.exception("could not answer %s privately; it would have said: %s",
                          self.user_id, text)


def acknowledgement(asker: Asker, message: Message) -> dict[str, Any] | None:
    """The body of Slack's acknowledgement that tells the person `message`, when the
    acknowledgement itself can: a command's private answer, a form replaced by a notice.
    None for the rest (clicks, events), which are answered through `Asker.tell`."""
    if asker.kind == "command":
        return {**message, "response_type": "ephemeral"}
    if asker.kind == "view_submission":
        return {"response_action": "update", "view": blocks.notice_view(message["text"])}
    return None
