"""Plain words for Neon failures: what happened and what to do next. The one place that
words a Neon error for people; the client's errors carry only facts (status, code,
Neon's message, request id). The words are mrkdwn-ready: what Neon said is escaped where
it is written in (bot.domain.text)."""

from __future__ import annotations

from bot.domain.text import escape
from bot.neon.errors import (
    NeonAuthError,
    NeonConflict,
    NeonError,
    NeonLocked,
    NeonNotFound,
    NeonOperationFailed,
    NeonOperationTimeout,
    NeonPermissionError,
    NeonRateLimited,
    NeonServerError,
    NeonUnreachable,
)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def explain_neon_error(error: NeonError) -> str:
    """One or two sentences for Slack: the cause, then the next thing to try."""
    message = escape(error.message)
    said = _sentence(message)
    if isinstance(error, NeonAuthError):
        return ("Neon refused the API key. An admin should check `NEON_API_KEY` "
                "(`python -m bot doctor` says what is wrong).")
    if isinstance(error, NeonPermissionError):
        return ("The Neon API key may not do this in this project. An admin should use a key "
                "that can manage the project's branches.")
    if isinstance(error, NeonUnreachable) and error.outcome_unknown:
        return (f"Could not reach Neon ({message}), and Neon may have carried out the "
                "request before the answer was lost. Check the project in the Neon console "
                "before trying again.")
    if isinstance(error, NeonUnreachable):
        return f"Could not reach Neon ({message}). Try again in a few minutes."
    if isinstance(error, NeonLocked):
        return ("Neon is still busy with another operation on this project. "
                "Try again in a minute.")
    if isinstance(error, NeonRateLimited):
        return "Neon is rate-limiting requests right now. Try again in a minute."
    if isinstance(error, NeonServerError):
        return f"Neon had an internal error ({message}). Try again in a few minutes."
    if isinstance(error, NeonOperationFailed):
        operation = error.operation
        return (f"Neon's {escape(operation.action)} operation ended "
                f"{escape(operation.status)}: "
                f"{_sentence(escape(operation.error or 'Neon gave no reason'))}")
    if isinstance(error, NeonOperationTimeout):
        return (f"Neon did not finish in time ({message}); it may still finish. "
                "Check again in a few minutes.")
    if isinstance(error, NeonNotFound):
        return f"Neon does not know it: {said}"
    if isinstance(error, NeonConflict):
        return f"Neon refused, as it conflicts with the project's current state: {said}"
    return f"Neon refused the request: {said}"
