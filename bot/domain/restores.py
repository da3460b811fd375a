"""Restores: what the /restore command accepts, request ids, the names of the branches a
restore or a promotion creates, and which branches may be restored from or promoted."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.domain.backups import is_backup_name, validate_reason
from bot.domain.echo import echo
from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.table_restores import TABLE_USAGE, RestoreTable, parse_table_restore
from bot.domain.text import escape
from bot.domain.when import WHEN_FORMATS, split_when

RESTORE_PREFIX = "restore-"
PRESERVE_PREFIX = "pre-restore-"
MAX_BRANCH_NAME_LENGTH = 256
# Request ids are 8 lowercase hex characters (secrets.token_hex(4)); \A…\Z so that
# .match(), .search() and .fullmatch() all check the whole text.
REQUEST_ID = re.compile(r"\A[0-9a-f]{8}\Z")
# `pre-restore-YYYYMMDD-HHMMSS`, possibly with a suffix such as `-1a2b` added when that name
# was taken already.
PRESERVE_NAME = re.compile(r"\Apre-restore-[0-9]{8}-[0-9]{6}(?:-[A-Za-z0-9]+)*\Z")
# Restore branches start `restore-YYYYMMDD-HHMM`; what follows is Lifeguard's to choose
# (such as the request id), so any tail of letters, digits, `-`, `_` or `.` is accepted.
RESTORE_NAME = re.compile(r"\Arestore-[A-Za-z0-9][A-Za-z0-9._-]*\Z")

RESTORE_USAGE = (
    escape("`/restore <when> [reason]` a point-in-time restore branch of the default branch "
           "at that moment, such as `/restore 14:25 bad deploy` or `/restore 30 minutes ago`\n"
           "`/restore from <branch> [reason]` a restore branch from a backup branch "
           "(`/backup list` shows them)\n")
    + f"{TABLE_USAGE}\n"
    + escape("`/restore promote <branch> [reason]` make a verified restore branch the live "
             "one, keeping the old state as a pre-restore-… branch\n"
             "`/restore export <id> [reason]` a restore branch holding exactly what that "
             "export off Neon holds (`/backup exports` lists their ids; needs "
             "EXPORT_IDENTITY)\n"
             "`/restore status [id]` where a request is (without an id: the open ones)\n"
             "`/restore cancel <id>` withdraw a request you made that is still waiting for "
             "approval\n"
             "`/restore log [id]` the audit trail of a request (without an id: the latest "
             "requests)\n"
             "`/restore help` this help\n"
             "`/restore` alone opens a form.\n"
             "`<when>` is ")
    + f"{WHEN_FORMATS}."
)


@dataclass(frozen=True)
class RestoreAt:
    when_text: str  # a syntactically valid <when>, resolved later with the requester's zone
    reason: str


@dataclass(frozen=True)
class RestoreFrom:
    branch_name: str
    reason: str


@dataclass(frozen=True)
class RestorePromote:
    branch_name: str
    reason: str


@dataclass(frozen=True)
class RestoreExport:
    export_id: str
    reason: str


@dataclass(frozen=True)
class RestoreStatus:
    request_id: str | None


@dataclass(frozen=True)
class RestoreCancel:
    request_id: str


@dataclass(frozen=True)
class RestoreLog:
    request_id: str | None


@dataclass(frozen=True)
class RestoreHelp:
    pass


@dataclass(frozen=True)
class RestoreForm:
    """`/restore` with nothing after it: open the modal."""


RestoreCommand = (RestoreAt | RestoreFrom | RestorePromote | RestoreStatus | RestoreCancel
                  | RestoreLog | RestoreHelp | RestoreForm | RestoreTable | RestoreExport)

_SUBCOMMANDS = ("from", "table", "promote", "export", "status", "cancel", "log", "help")
# An export's id as bot.domain.exports names its folders.
EXPORT_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")


def new_request_id() -> str:
    return secrets.token_hex(4)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("branch times must be timezone-aware")
    return at.astimezone(UTC)


def restore_branch_name(at: datetime) -> str:
    """`restore-YYYYMMDD-HHMM` in UTC, for a restore to the instant `at`."""
    return _utc(at).strftime("restore-%Y%m%d-%H%M")


def preserve_branch_name(at: datetime) -> str:
    """`pre-restore-YYYYMMDD-HHMMSS` in UTC: where a promotion keeps the state it replaces."""
    return _utc(at).strftime("pre-restore-%Y%m%d-%H%M%S")


def check_branch_name(branch_name: str) -> None:
    """InvalidInput for names no branch can sensibly have: empty, over 256 characters, or
    with control (or other invisible formatting) characters."""
    if not branch_name:
        raise InvalidInput("The branch name is empty.")
    if len(branch_name) > MAX_BRANCH_NAME_LENGTH:
        raise InvalidInput(f"The branch name is {len(branch_name)} characters long; branch "
                           f"names are at most {MAX_BRANCH_NAME_LENGTH}.")
    if any(unicodedata.category(c).startswith("C") for c in branch_name):
        raise InvalidInput(f"`{echo(branch_name)}` contains control or invisible characters; "
                           "no branch Lifeguard works with has them.")


def check_restorable_source(branch_name: str) -> None:
    """`/restore from` takes only backup branches Lifeguard took (backup-YYYYMMDD-HHMMSS)."""
    if not is_backup_name(branch_name):
        raise NotAllowed(
            f"`{echo(branch_name)}` "
            + escape("is not a backup Lifeguard took, so `/restore from` will not use it: it "
                     "restores from backup branches named backup-YYYYMMDD-HHMMSS "
                     "(`/backup list` shows them). For a point in time, use "
                     "`/restore <when>`."))


def check_promotable(branch_name: str) -> None:
    """`/restore promote` takes a restore-… branch, a backup-… branch Lifeguard took, or a
    pre-restore-… branch (promoting one undoes the promotion that kept it)."""
    if not (RESTORE_NAME.match(branch_name) or is_backup_name(branch_name)
            or PRESERVE_NAME.match(branch_name)):
        raise NotAllowed(
            f"`{echo(branch_name)}` cannot be promoted: `/restore promote` takes only branches "
            "Lifeguard made — a restore branch (restore-…), a backup branch "
            "(backup-YYYYMMDD-HHMMSS) or the state a promotion kept "
            "(pre-restore-YYYYMMDD-HHMMSS), which undoes that promotion.")


def _request_id(word: str, command: str) -> str:
    request_id = word.lower()
    if not REQUEST_ID.match(request_id):
        raise InvalidInput(f"`{echo(word)}` is not a request id: ids are 8 characters 0-9 "
                           f"and a-f, such as `/restore {command} 1a2b3c4d`.\n{RESTORE_USAGE}")
    return request_id


def _optional_id(rest: str, command: str) -> str | None:
    words = rest.split()
    if len(words) > 1:
        raise InvalidInput(f"`/restore {command}` takes at most one request id (got "
                           f"`{echo(rest.strip())}`).\n{RESTORE_USAGE}")
    return _request_id(words[0], command) if words else None


def _branch_and_reason(rest: str, command: str) -> tuple[str, str]:
    parts = rest.split(maxsplit=1)
    if not parts:
        example = ("backup-20261121-142500" if command == "from"
                   else "restore-20261121-1425")
        raise InvalidInput(f"`/restore {command}` needs a branch name, such as "
                           f"`/restore {command} {example}`.\n{RESTORE_USAGE}")
    branch_name = parts[0]
    check_branch_name(branch_name)
    return branch_name, parts[1] if len(parts) > 1 else ""


def parse_restore_command(text: str) -> RestoreCommand:
    """Read the text after `/restore`. Raises InvalidInput (the text is wrong; the message
    says what is accepted) or NotAllowed (the branch named may not be used)."""
    words = text.split(maxsplit=1)
    if not words:
        return RestoreForm()
    subcommand, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
    if subcommand == "help":
        return RestoreHelp()
    if subcommand == "from":
        branch_name, reason = _branch_and_reason(rest, "from")
        check_restorable_source(branch_name)
        return RestoreFrom(branch_name=branch_name, reason=validate_reason(reason))
    if subcommand == "table":
        return parse_table_restore(rest)
    if subcommand == "promote":
        branch_name, reason = _branch_and_reason(rest, "promote")
        check_promotable(branch_name)
        return RestorePromote(branch_name=branch_name, reason=validate_reason(reason))
    if subcommand == "export":
        parts = rest.split(maxsplit=1)
        if not parts or not EXPORT_ID.match(parts[0]):
            shown = f" (got `{echo(parts[0])}`)" if parts else ""
            raise InvalidInput("`/restore export` needs an export id: letters, digits, '-' "
                               f"and '_'{shown}, such as `/restore export 3f2a9c1d`; "
                               f"`/backup exports` lists them.\n{RESTORE_USAGE}")
        return RestoreExport(export_id=parts[0],
                             reason=validate_reason(parts[1] if len(parts) > 1 else ""))
    if subcommand == "status":
        return RestoreStatus(request_id=_optional_id(rest, "status"))
    if subcommand == "log":
        return RestoreLog(request_id=_optional_id(rest, "log"))
    if subcommand == "cancel":
        ids = rest.split()
        if len(ids) != 1:
            raise InvalidInput("`/restore cancel` needs exactly one request id, such as "
                               f"`/restore cancel 1a2b3c4d`.\n{RESTORE_USAGE}")
        return RestoreCancel(request_id=_request_id(ids[0], "cancel"))
    try:
        when_text, reason = split_when(text)
    except InvalidInput as error:
        if words[0][:1].isascii() and words[0][:1].isalpha() and subcommand not in ("a", "an"):
            raise InvalidInput(
                f"`{echo(words[0])}` is neither a /restore command ({', '.join(_SUBCOMMANDS)}) "
                f"nor a time.\n{RESTORE_USAGE}") from error
        raise InvalidInput(f"{error}\n{RESTORE_USAGE}") from error
    return RestoreAt(when_text=when_text, reason=validate_reason(reason))
