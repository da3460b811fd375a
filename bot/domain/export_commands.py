"""`/backup export [branch] [reason]` and `/backup exports`: what they accept.

The first word after `export` is a branch when it is written like one of the branches
Lifeguard names (`backup-…`, `restore-…`, `pre-restore-…`, `export-…`) or a Neon branch
id (`br-…`); everything else is the reason. Only a backup branch Lifeguard keeps is
exported (the service checks that); the others are refused with what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.domain.errors import InvalidInput
from bot.domain.text import escape

_BRANCH_LIKE = re.compile(r"^(backup-|restore-|pre-restore-|export-|br-)\S*$")

EXPORT_USAGE = (
    "`/backup export [backup-branch] [reason]` pg_dump every database of the default branch "
    "(or of a backup branch) to the export bucket, encrypted\n"
    "`/backup exports` exports with age, size, source and whether their last check passed"
)


@dataclass(frozen=True)
class BackupExport:
    branch: str | None  # a backup branch; None: the default branch
    reason: str


@dataclass(frozen=True)
class BackupExports:
    pass


def parse_export_command(subcommand: str, rest: str, validate_reason: Callable[[str], str]
                         ) -> BackupExport | BackupExports:
    """`subcommand` is "export" or "exports"; `rest` the text after it; `validate_reason`
    is /backup's own (bot.domain.backups, which calls this)."""
    if subcommand == "exports":
        if rest.strip():
            raise InvalidInput(f"`/backup exports` takes nothing after it "
                               f"(got `{escape(rest.strip()[:40])}`).")
        return BackupExports()
    words = rest.strip().split(maxsplit=1)
    branch, reason = None, rest
    if words and _BRANCH_LIKE.match(words[0]):
        branch, reason = words[0], (words[1] if len(words) > 1 else "")
        if len(branch) > 100:
            raise InvalidInput("That branch name is longer than any Neon branch name.")
    return BackupExport(branch=branch, reason=validate_reason(reason))
