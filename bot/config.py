"""Settings: the only reader of the environment (and of an optional `.env` file).

Every problem is collected and reported at once, naming the variable, so a deploy with
three mistakes needs one fix-up, not three restarts. Secrets are SecretStr: they never
appear in a repr, a log line or an error message.

Values copied from `.env.example` or from documentation without being filled in
(`xoxb-...`, `...`, `changeme`, `your-…`, `<…>`) are refused as placeholders, by name,
rather than starting a bot that fails at every call to Slack or Neon.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.domain.durations import DURATION_FORMAT, parse_duration
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


def _refuse_placeholder(value: Any) -> Any:
    """A `mode="before"` check (run before the format checks), so a placeholder is named
    as one rather than as a value of the wrong shape."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    texts = value.split(",") if isinstance(value, str) else (
        [str(v) for v in value] if isinstance(value, (list, tuple)) else [])
    if any(is_placeholder(t) for t in texts if t.strip()):
        raise PydanticCustomError("placeholder", "it is still a placeholder")
    return value


def _check_database_url(value: str) -> str:
    if not value.startswith(DATABASE_URL_PREFIXES):
        raise ValueError("it must start with " + ", ".join(DATABASE_URL_PREFIXES))
    return value


def _empty_is_unset(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _check_export_url(value: str | None) -> str | None:
    if value is not None:
        split_export_url(value)  # ValueError says what is wrong
    return value


def _check_export_endpoint(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        value = tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _check_export_recipients(value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    """Required with EXPORT_URL (which is declared, so checked, before): an export nobody
    can decrypt is worthless."""
    if not value and info.data.get("export_url") is not None:
        raise PydanticCustomError("missing", "Field required")
    return _check_given_recipients(value)


def _check_given_recipients(value: tuple[str, ...]) -> tuple[str, ...]:
    """The keys' form, when there are any: reading exports back needs none."""
    if not value:
        return value
    if any(key.upper().startswith("AGE-SECRET-KEY-") for key in value):  # never echoed
        raise ValueError("it holds an age secret key (AGE-SECRET-KEY-1…); give the public "
                         "key age1… (age-keygen -y prints it) and keep the secret one out "
                         "of the bot's settings")
    return check_recipients(value)  # ValueError naming the first malformed key


def _check_export_identity(value: str | None) -> str | None:
    if value is None:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{value!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{value!r} cannot be read by this process")
    return str(path)


Duration = Annotated[timedelta, NoDecode]
IdList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        hide_input_in_errors=True,
    )

    slack_bot_token: SecretStr
    slack_app_token: SecretStr | None = None
    # Required unless SLACK_APP_TOKEN is set; checked by a field validator (not a model
    # validator) so that one message names it together with every other problem.
    slack_signing_secret: SecretStr | None = Field(default=None, validate_default=True)
    slack_api_url: str = "https://slack.com/api/"
    neon_api_key: SecretStr
    neon_project_id: str
    neon_api_url: str = "https://console.neon.tech/api/v2"
    database_url: str = "sqlite:///lifeguard.db"
    approvers: IdList = ()
    required_approvals: int = Field(default=1, ge=1)
    approval_ttl: Duration = timedelta(minutes=30)
    approvals_channel: str
    alerts_channel: str
    reconcile_interval: Duration = timedelta(seconds=10)
    backup_retention: Duration = timedelta(days=7)
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    worker_threads: int = Field(default=8, ge=1)
    verify_checks: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    verify_exact_row_limit: int = Field(default=1_000_000, ge=0)
    schedule_timezone: str = "UTC"
    backup_schedule: str = "0 3 * * *"
    prune_schedule: str = "30 3 * * *"
    health_schedule: str = "0 8 * * *"
    # APScheduler matches day-of-month AND weekday: the first Monday of each quarter
    drill_reminder_schedule: str = "0 9 1-7 1,4,7,10 mon"
    retention_daily: int = Field(default=7, ge=0)
    retention_weekly: int = Field(default=4, ge=0)
    retention_monthly: int = Field(default=12, ge=0)
    drill_target_age: Duration = timedelta(hours=24)
    approval_reminder_after: Duration = timedelta(minutes=10)
    # Exports off Neon (bot/exports). Off while EXPORT_URL is unset; the recipients are
    # checked after the URL, which must come first here.
    export_url: str | None = None
    export_s3_endpoint: str | None = None
    export_recipients: IdList = Field(default=(), validate_default=True)
    export_identity: str | None = None
    export_schedule: str = "0 2 * * 0"
    export_retention_weekly: int = Field(default=8, ge=0)
    export_retention_monthly: int = Field(default=12, ge=0)
    incident_responders: IdList = ()
    incident_runbook_url: str | None = None

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def exports_enabled(self) -> bool:
        return self.export_url is not None

    def secret_values(self) -> list[str]:
        """Every secret setting's value (and the store's password), for the log filter."""
        secrets = [s.get_secret_value() for s in (self.slack_bot_token, self.slack_app_token,
                                                   self.slack_signing_secret, self.neon_api_key)
                   if s is not None]
        password = urlsplit(self.database_url).password  # as written, and decoded
        return secrets + ([password, unquote(password)] if password else [])

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name") from None
        return value

    @field_validator("backup_schedule", "prune_schedule", "health_schedule",
                     "drill_reminder_schedule", "export_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as error:
            raise ValueError(f"{value!r} is not a 5-field cron expression ({error})") from None
        return value

    @field_validator("approval_ttl", "reconcile_interval", "backup_retention",
                     "drill_target_age", "approval_reminder_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("verify_checks", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as error:
                raise ValueError(f"it is not JSON ({error.msg} at character {error.pos})") \
                    from None
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip()
                for k, v in value.items()):
            raise ValueError("it must be a JSON object mapping each check's name to its SQL")
        return value

    @field_validator("approvers", "incident_responders", mode="before")
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        bad = [v for v in value if not (USER_ID.fullmatch(v) or USERGROUP_ID.fullmatch(v))]
        if bad:
            raise ValueError(f"{', '.join(bad)} is not a Slack user id (U… or W…) or "
                             "user-group id (S…)")
        return value

    @field_validator("approvals_channel", "alerts_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not CHANNEL_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C… or G…, not a #name)")
        return value

    @field_validator("slack_bot_token", "neon_api_key", "slack_signing_secret",
                     "slack_app_token")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        if not BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("a bot token is xoxb- followed by letters, digits and dashes")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not APP_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("an app-level token is xapp- followed by letters, digits and "
                             "dashes")
        return value

    @field_validator("incident_runbook_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^/\s]+\S*$", value.strip()):
            raise ValueError(f"{value!r} is not an https:// URL")
        return value.strip() if value is not None else None

    @field_validator("slack_api_url", "neon_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("neon_project_id")
    @classmethod
    def _project_id(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9-]{2,}$", value):
            raise ValueError(f"{value!r} is not a Neon project id (lowercase words and digits "
                             "joined by dashes, such as young-sun-123456)")
        return value

    _database_url = field_validator("database_url")(_check_database_url)

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"{value!r} is not one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    _export_empty = field_validator("export_url", "export_s3_endpoint", "export_identity",
                                    mode="before")(_empty_is_unset)
    _export_url = field_validator("export_url")(_check_export_url)
    _export_endpoint = field_validator("export_s3_endpoint")(_check_export_endpoint)
    _recipient_list = field_validator("export_recipients", mode="before")(_comma_list)
    _recipients = field_validator("export_recipients")(_check_export_recipients)
    _identity = field_validator("export_identity")(_check_export_identity)

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret_for_http(cls, value: SecretStr | None,
                                 info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("slack_app_token") is None:
            raise PydanticCustomError("missing", "Field required")
        return value

    # Defined last: "before" checks run last-defined first, so this one precedes the
    # format checks of the same variables.
    _placeholders = field_validator(
        "slack_bot_token", "slack_app_token", "slack_signing_secret", "neon_api_key",
        "neon_project_id", "approvals_channel", "alerts_channel", "approvers",
        "export_url", "export_recipients", "incident_responders", "incident_runbook_url",
        mode="before")(_refuse_placeholder)


class SettingsError(Exception):
    """Settings are missing or malformed. The message names every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            "Lifeguard cannot start: these settings are missing, malformed or placeholders.\n"
            f"{lines}\n"
            "Set them in the environment or in a .env file in the working directory; "
            "see README.md."
        )


def _problem(error: Any) -> str:
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


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, or raise SettingsError naming every problem."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError([_problem(e) for e in error.errors()]) from None


class StoreSettings(BaseSettings):
    """Only what the store commands (`migrate`, `audit …`) need, so an operator can check
    the audit trail with nothing but DATABASE_URL, even when Slack or Neon are down."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///lifeguard.db"

    _database_url = field_validator("database_url")(_check_database_url)


def load_store_settings() -> StoreSettings:
    try:
        return StoreSettings()
    except ValidationError as error:
        raise SettingsError([_problem(e) for e in error.errors()]) from None


class ExportSettings(BaseSettings):
    """Only what `python -m bot export …` needs: the export bucket, the project (the
    folders' prefix) and, to restore, the age identity, so exports can be listed, checked
    and restored with Slack, Neon and the store all gone."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False,
                                      hide_input_in_errors=True)

    neon_project_id: str
    export_url: str | None = None
    export_s3_endpoint: str | None = None
    export_recipients: IdList = Field(default=(), validate_default=True)
    export_identity: str | None = None

    _export_empty = field_validator("export_url", "export_s3_endpoint", "export_identity",
                                    mode="before")(_empty_is_unset)
    _export_url = field_validator("export_url")(_check_export_url)
    _export_endpoint = field_validator("export_s3_endpoint")(_check_export_endpoint)
    _recipient_list = field_validator("export_recipients", mode="before")(_comma_list)
    # Listing, checking and restoring read exports: no public key is needed for that.
    _recipients = field_validator("export_recipients")(_check_given_recipients)
    _identity = field_validator("export_identity")(_check_export_identity)


def load_export_settings(*, required: tuple[str, ...] = ()) -> ExportSettings:
    """The export settings; SettingsError naming every problem, and each of `required`
    (field names, such as "export_identity") that is unset."""
    problems: list[str] = []
    settings: ExportSettings | None = None
    try:
        settings = ExportSettings()
    except ValidationError as error:
        problems = [_problem(e) for e in error.errors()]
    named = {problem.split(" ", 1)[0] for problem in problems}
    problems += [_problem({"loc": (field,), "type": "missing"}) for field in required
                 if field.upper() not in named
                 and (settings is None or getattr(settings, field) is None)]
    if problems or settings is None:
        raise SettingsError(problems)
    return settings
