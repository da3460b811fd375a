"""Plain words for Neon failures: what happened and what to do next."""

from __future__ import annotations

from bot.neon.errors import (
    NeonAuthError,
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


def explain_neon_error(error: NeonError) -> str:
    """One or two sentences for Slack: the cause, then the next thing to try."""
    if isinstance(error, NeonAuthError):
        return ("Neon refused the API key. An admin should check `NEON_API_KEY` "
                "(`python -m bot doctor` says what is wrong).")
    if isinstance(error, NeonPermissionError):
        return ("The Neon API key may not do this in this project. An admin should use a key "
                "that can manage the project's branches.")
    if isinstance(error, NeonUnreachable):
        return f"Could not reach Neon ({error.message}). Try again in a few minutes."
    if isinstance(error, NeonLocked):
        return ("Neon is still busy with another operation on this project. "
                "Try again in a minute.")
    if isinstance(error, NeonRateLimited):
        return "Neon is rate-limiting requests right now. Try again in a minute."
    if isinstance(error, NeonServerError):
        return f"Neon had an internal error ({error.message}). Try again in a few minutes."
    if isinstance(error, NeonOperationFailed):
        return f"Neon's operation failed: {error.message}"
    if isinstance(error, NeonOperationTimeout):
        return f"Neon's operation did not finish in time: {error.message}"
    if isinstance(error, NeonNotFound):
        return f"Neon does not know it: {error.message}"
    return f"Neon refused the request: {error.message}"
