"""What each setting is and the rules its value is checked against, for bot/config.py:
the id and token shapes, the placeholders documentation writes where a real value goes,
the checks of the export settings, and the one sentence a problem is reported in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError

from bot.domain.durations import DURATION_FORMAT
from bot.domain.exports import check_recipients, split_export_url

# Matched whole (`fullmatch`): a trailing newline is not part of an id or a token.
USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
BOT_TOKEN = re.compile(r"xoxb-[A-Za-z0-9-]+")
APP_TOKEN = re.compile(r"xapp-[A-Za-z0-9-]+")
# What documentation writes where a real value goes. Matched case-insensitively against
# the whole value, or the value after a known prefix such as `xoxb-`.
PLACEHOLDER_WORDS = frozenset({"changeme", "change-me", "change_me", "replaceme", "replace-me",
                               "replace_me", "placeholder", "todo", "tbd", "fixme"})
TOKEN_PREFIXES = ("xoxb-", "xoxp-", "xapp-")
DATABASE_URL_PREFIXES = ("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg://")

# What each variable is, for messages about a missing or malformed one.
DESCRIPTIONS: dict[str, str] = {
    "SLACK_BOT_TOKEN": "the bot token, xoxb-…, from the Slack app's OAuth & Permissions page",
    "SLACK_SIGNING_SECRET": "the signing secret, from the Slack app's Basic Information page "
                            "(needed in HTTP mode)",
    "SLACK_APP_TOKEN": "an app-level token xapp-… with connections:write, for Socket Mode",
    "SLACK_API_URL": "the Slack Web API base URL, such as https://slack.com/api/",
    "NEON_API_KEY": "a Neon API key that can manage the project's branches",
    "NEON_PROJECT_ID": "the Neon project id, such as young-sun-123456, from the project settings",
    "NEON_API_URL": "the Neon API base URL, such as https://console.neon.tech/api/v2",
    "DATABASE_URL": "Lifeguard's own store: sqlite:///path.db, postgresql://… or postgres://…",
    "APPROVERS": "a comma list of Slack user ids (U… or W…) and user-group ids (S…)",
    "REQUIRED_APPROVALS": "how many approvers besides the requester, a whole number from 1",
    "APPROVAL_TTL": f"how long a request waits for approval: {DURATION_FORMAT}",
    "APPROVALS_CHANNEL": "the channel id (C…) where approval cards are posted",
    "ALERTS_CHANNEL": "the channel id (C…) where alerts and reports are posted",
    "RECONCILE_INTERVAL": f"how often unfinished work is moved forward: {DURATION_FORMAT}",
    "BACKUP_RETENTION": f"how long Neon keeps a backup branch: {DURATION_FORMAT}",
    "PORT": "the HTTP port, 1 to 65535",
    "LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR",
    "LOG_FORMAT": "text (for people) or json (one JSON object a line, for log shippers)",
    "WORKER_THREADS": "how many background jobs may run at once, a whole number from 1",
    "VERIFY_CHECKS": 'a JSON object of named SQL checks run on restored branches, such as '
                     '{"orders have customers": "SELECT NOT EXISTS (…)"}',
    "VERIFY_EXACT_ROW_LIMIT": "tables estimated above this many rows are not counted exactly",
    "SCHEDULE_TIMEZONE": "the IANA time zone the schedules are written in, such as Europe/Berlin",
    "BACKUP_SCHEDULE": "when scheduled backups run: a 5-field cron expression, such as 0 3 * * *",
    "PRUNE_SCHEDULE": "when old backups are pruned: a 5-field cron expression",
    "HEALTH_SCHEDULE": "when the health report is posted: a 5-field cron expression",
    "DRILL_REMINDER_SCHEDULE": "when the restore-drill reminder is posted: a 5-field cron "
                               "expression (day and weekday must both match)",
    "RETENTION_DAILY": "daily backups kept, a whole number from 0",
    "RETENTION_WEEKLY": "weekly backups kept, a whole number from 0",
    "RETENTION_MONTHLY": "monthly backups kept, a whole number from 0",
    "DRILL_TARGET_AGE": f"how far back a drill restores: {DURATION_FORMAT}",
    "APPROVAL_REMINDER_AFTER": f"when approvers are reminded once: {DURATION_FORMAT}",
    "EXPORT_URL": "where exports go: s3://bucket or s3://bucket/prefix (any S3-compatible "
                  "store); unset turns exports off",
    "EXPORT_S3_ENDPOINT": "the endpoint of a non-AWS S3 store (R2, MinIO, B2), an http(s) URL "
                          "such as https://<account>.r2.cloudflarestorage.com",
    "EXPORT_RECIPIENTS": "a comma list of age public keys (age1…, from age-keygen); every "
                         "export is readable by each",
    "EXPORT_IDENTITY": "the path of an age identity file (AGE-SECRET-KEY-1…), needed only to "
                       "restore from or fully check an export",
    "EXPORT_SCHEDULE": "when scheduled exports run: a 5-field cron expression, such as "
                       "0 2 * * 0",
    "EXPORT_RETENTION_WEEKLY": "weekly exports kept, a whole number from 0",
    "EXPORT_RETENTION_MONTHLY": "monthly exports kept, a whole number from 0",
    "INCIDENT_RESPONDERS": "a comma list of Slack user ids (U… or W…) and user-group ids (S…) "
                           "invited to every incident channel",
    "INCIDENT_RUNBOOK_URL": "an https:// link to the runbook, bookmarked in every incident "
                            "channel",
}


def is_placeholder(value: str) -> bool:
    """True for a value left as documentation writes it: `...` or `…` anywhere, `<…>`,
    `your-…`, `changeme` and the like (after a token prefix such as `xoxb-`, too), or
    x's where the characters go (`xoxb-xxxx-xxxx`, `Cxxxxxxxx`)."""
    text = value.strip().lower()
    if "..." in text or "…" in text or ("<" in text and ">" in text):
        return True
    rest = next((text.removeprefix(p) for p in TOKEN_PREFIXES if text.startswith(p)), text)
    if rest in PLACEHOLDER_WORDS or rest.startswith(("your-", "your_", "your ")):
        return True
    body = rest[1:] if len(rest) > 1 and rest[0] in "cgusw" else rest  # after an id's letter
    return bool(body) and set(body) <= {"x", "-"}


def refuse_placeholder(value: Any) -> Any:
    """A `mode="before"` check (run before the format checks), so a placeholder is named
    as one rather than as a value of the wrong shape."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    texts = value.split(",") if isinstance(value, str) else (
        [str(v) for v in value] if isinstance(value, (list, tuple)) else [])
    if any(is_placeholder(t) for t in texts if t.strip()):
        raise PydanticCustomError("placeholder", "it is still a placeholder")
    return value


def check_database_url(value: str) -> str:
    if not value.startswith(DATABASE_URL_PREFIXES):
        raise ValueError("it must start with " + ", ".join(DATABASE_URL_PREFIXES))
    return value


def empty_is_unset(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def check_export_url(value: str | None) -> str | None:
    if value is not None:
        split_export_url(value)  # ValueError says what is wrong
    return value


def check_export_endpoint(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def comma_list(value: Any) -> Any:
    if isinstance(value, str):
        value = tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def check_export_recipients(value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    """Required with EXPORT_URL (which is declared, so checked, before): an export nobody
    can decrypt is worthless."""
    if not value and info.data.get("export_url") is not None:
        raise PydanticCustomError("missing", "Field required")
    return check_given_recipients(value)


def check_given_recipients(value: tuple[str, ...]) -> tuple[str, ...]:
    """The keys' form, when there are any: reading exports back needs none."""
    if not value:
        return value
    if any(key.upper().startswith("AGE-SECRET-KEY-") for key in value):  # never echoed
        raise ValueError("it holds an age secret key (AGE-SECRET-KEY-1…); give the public "
                         "key age1… (age-keygen -y prints it) and keep the secret one out "
                         "of the bot's settings")
    return check_recipients(value)  # ValueError naming the first malformed key


def check_export_identity(value: str | None) -> str | None:
    if value is None:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{value!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{value!r} cannot be read by this process")
    return str(path)



def describe_problem(error: Any) -> str:
    location = error.get("loc") or ()
    if not location:
        return str(error.get("msg", "")).removeprefix("Value error, ")
    name = str(location[0]).upper()
    what = DESCRIPTIONS.get(name, "")
    if error.get("type") == "missing":
        return f"{name} is missing: {what}" if what else f"{name} is missing"
    if error.get("type") == "placeholder":  # the value itself is never shown: maybe a secret
        return f"{name} is still a placeholder, not a real value" + (
            f"; expected {what}" if what else "")
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{name} is malformed: {message}" + (f"; expected {what}" if what and
                                                   DURATION_FORMAT not in message else "")
