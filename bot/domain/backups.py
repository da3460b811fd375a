"""Backups: what they are called, what the /backup command accepts, what may be deleted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.domain.errors import InvalidInput, NotAllowed
from bot.domain.export_commands import (
    EXPORT_USAGE,
    BackupExport,
    BackupExports,
    parse_export_command,
)
from bot.domain.text import escape

BACKUP_PREFIX = "backup-"
BACKUP_NAME = re.compile(r"^backup-(\d{8})-(\d{6})$")
MAX_REASON_LENGTH = 500


class BackupStatus(StrEnum):
    REQUESTED = "requested"  # recorded, nothing sent to Neon yet
    CREATING = "creating"  # Neon accepted the create; its operations are running
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"  # deletion confirmed; Neon's delete not yet done
    DELETED = "deleted"


UNFINISHED_BACKUP_STATUSES = (BackupStatus.REQUESTED, BackupStatus.CREATING,
                              BackupStatus.DELETING)


@dataclass(frozen=True)
class Backup:
    """A backup branch Lifeguard created (or is creating), as stored."""

    id: str
    branch_name: str
    status: BackupStatus
    requested_by: str
    reason: str
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    version: int = 1  # bumped by every change: the compare-and-set token
    branch_id: str | None = None
    parent_branch_id: str | None = None
    operation_ids: tuple[str, ...] = ()
    error: str | None = None
    channel_id: str | None = None  # where it was asked for
    card_channel: str | None = None  # where its status card is
    card_ts: str | None = None
    response_url: str | None = None
    deleted_by: str | None = None
    logical_size: int | None = None
    step_started_at: datetime | None = None  # when the current status began
    step_timings: dict[str, float] = field(default_factory=dict)  # status -> seconds


def backup_branch_name(at: datetime) -> str:
    """`backup-YYYYMMDD-HHMMSS` in UTC."""
    if at.tzinfo is None:
        raise ValueError("backup times must be timezone-aware")
    return at.astimezone(UTC).strftime("backup-%Y%m%d-%H%M%S")


def is_backup_name(name: str) -> bool:
    return BACKUP_NAME.match(name) is not None


def backup_expiry(created_at: datetime, retention: timedelta) -> datetime:
    return created_at + retention


# --- the /backup command -------------------------------------------------------------

BACKUP_USAGE = (
    escape("`/backup now [reason]` take a backup branch of the default branch now\n"
           "`/backup list` backups with age, size, expiry and reason\n"
           "`/backup delete <branch>` delete a backup branch Lifeguard took (asks to confirm)\n"
           "`/backup verify <branch>` connect to a backup, count its tables' rows and compare "
           "them with production\n"
           "`/backup health` the health report: restore window, branches, backups, drills, "
           "storage\n"
           "`/backup prune` what the retention policy would delete (asks to confirm)\n"
           "`/backup schedule` when scheduled backups, pruning and reports run\n")
    + f"{EXPORT_USAGE}\n"
    + escape("`/backup help` this help")
)


@dataclass(frozen=True)
class BackupNow:
    reason: str


@dataclass(frozen=True)
class BackupList:
    pass


@dataclass(frozen=True)
class BackupDelete:
    branch_name: str


@dataclass(frozen=True)
class BackupVerify:
    branch_name: str


@dataclass(frozen=True)
class BackupHealth:
    pass


@dataclass(frozen=True)
class BackupPrune:
    pass


@dataclass(frozen=True)
class BackupSchedule:
    pass


@dataclass(frozen=True)
class BackupHelp:
    problem: str | None = field(default=None)  # set when help is shown because input was wrong


BackupCommand = (BackupNow | BackupList | BackupDelete | BackupHealth | BackupPrune
                 | BackupSchedule | BackupHelp | BackupVerify | BackupExport | BackupExports)

_SUBCOMMANDS = ("now", "list", "delete", "help", "health", "prune", "schedule", "verify",
                "export", "exports")
_NO_ARGUMENTS: dict[str, type[BackupList | BackupHealth | BackupPrune | BackupSchedule]] = {
    "list": BackupList, "health": BackupHealth, "prune": BackupPrune,
    "schedule": BackupSchedule,
}


def validate_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(
            f"The reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH} are "
            "accepted. Shorten it and try again."
        )
    return reason


def parse_backup_command(text: str) -> BackupCommand:
    """Read the text after `/backup`. Raises InvalidInput with what is accepted."""
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower() == "help":
        return BackupHelp()
    subcommand, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
    if subcommand == "now":
        return BackupNow(reason=validate_reason(rest))
    if subcommand in ("export", "exports"):
        return parse_export_command(subcommand, rest, validate_reason)
    if subcommand in _NO_ARGUMENTS:
        if rest.strip():
            raise InvalidInput(f"`/backup {subcommand}` takes nothing after it "
                               f"(got `{escape(rest.strip())}`).")
        return _NO_ARGUMENTS[subcommand]()
    if subcommand == "delete":
        names = rest.split()
        if len(names) != 1:
            raise InvalidInput(
                "`/backup delete` needs exactly one branch name, such as "
                "`/backup delete backup-20261121-142500`."
            )
        return BackupDelete(branch_name=names[0])
    if subcommand == "verify":
        names = rest.split()
        if len(names) != 1:
            raise InvalidInput("`/backup verify` needs exactly one branch name, such as "
                               "`/backup verify backup-20261121-142500`.")
        return BackupVerify(branch_name=names[0])
    shown = words[0] if len(words[0]) <= 40 else words[0][:40] + "…"
    raise InvalidInput(
        f"`{escape(shown)}` is not a /backup command. Accepted: {', '.join(_SUBCOMMANDS)}.\n"
        + BACKUP_USAGE
    )


def check_deletable(*, branch_name: str, recorded_as_backup: bool, is_default: bool,
                    is_protected: bool) -> None:
    """Raise NotAllowed unless Lifeguard may delete this branch as a backup."""
    if is_default:
        raise NotAllowed(f"`{escape(branch_name)}` is the default branch; Lifeguard never "
                         "deletes it.")
    if is_protected:
        raise NotAllowed(
            f"`{escape(branch_name)}` is a protected branch; Lifeguard does not delete protected "
            "branches. Remove the protection in the Neon console first if you really mean it."
        )
    if not (recorded_as_backup and is_backup_name(branch_name)):
        raise NotAllowed(
            f"`{escape(branch_name)}` is not a backup Lifeguard took, so `/backup delete` will not "
            "touch it. `/backup list` shows the backups it can delete."
        )
