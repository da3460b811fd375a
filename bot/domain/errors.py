"""Errors that carry a message meant for the person who asked.

Every error Lifeguard shows in Slack derives from LifeguardError; its `str()` is a complete
sentence a person understands, with what was wrong and what to do.
"""

from __future__ import annotations


class LifeguardError(Exception):
    """Base of every error whose message is shown to the person who asked."""


class InvalidInput(LifeguardError):
    """The command text was wrong; the message says what is accepted. Nothing ran."""


class NotAllowed(LifeguardError):
    """The action is refused by a rule (protected branch, not a backup, not an approver)."""


class NotFound(LifeguardError):
    """The thing named does not exist (a branch, a request)."""


class Conflict(LifeguardError):
    """The thing is already being done or was done (a duplicate, a finished request)."""


class ExternalServiceError(LifeguardError):
    """Neon, Slack or the store failed after retries; the message says which and what to try."""


# Raised by the store when a record's unique key is taken; services turn them into
# Conflicts that say what happened.


class DuplicateBackup(Exception):
    """A backup with that branch name is already recorded."""


class DuplicateRequest(Exception):
    """A change request with that id is already recorded."""


class DuplicateDrill(Exception):
    """The drill could not be recorded: its id or branch name is taken, or another drill
    is still open (requested or running); at most one drill is open at a time."""


class DuplicateExport(Exception):
    """An export with that id, folder or branch name is already recorded."""
