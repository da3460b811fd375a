"""Settings: the only reader of the environment (and of an optional `.env` file).

Every problem is collected and reported at once, naming the variable, so a deploy with
three mistakes needs one fix-up, not three restarts. Secrets are SecretStr: they never
appear in a repr, a log line or an error message.

Values copied from `.env.example` or from documentation without being filled in
(`xoxb-...`, `...`, `changeme`, `your-…`, `<…>`) are refused as placeholders, by name,
rather than starting a bot that fails at every call to Slack or Neon. What each variable
is, and the rules its value is checked against, are in bot/settings_checks.py.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.domain.durations import parse_duration
from bot.settings_checks import (
    APP_TOKEN,
    BOT_TOKEN,
    CHANNEL_ID,
    USER_ID,
    USERGROUP_ID,
    check_database_url,
    check_export_endpoint,
    check_export_identity,
    check_export_recipients,
    check_export_url,
    check_given_recipients,
    comma_list,
    describe_problem,
    empty_is_unset,
    refuse_placeholder,
)

Duration = Annotated[timedelta, NoDecode]
IdList = Annotated[tuple[str, ...], NoDecode]


class ExportStoreSettings(BaseSettings):
    """Where exports are and who can read them: the part of the settings that both the bot
    (Settings) and `python -m bot export …` (ExportSettings) read. Each says how the
    recipients are checked, which is after the URL: it must come first here."""

    export_url: str | None = None
    export_s3_endpoint: str | None = None
    export_recipients: IdList = Field(default=(), validate_default=True)
    export_identity: str | None = None

    _export_empty = field_validator("export_url", "export_s3_endpoint", "export_identity",
                                    mode="before")(empty_is_unset)
    _export_url = field_validator("export_url")(check_export_url)
    _export_endpoint = field_validator("export_s3_endpoint")(check_export_endpoint)
    _recipient_list = field_validator("export_recipients", mode="before")(comma_list)
    _identity = field_validator("export_identity")(check_export_identity)


class Settings(ExportStoreSettings):
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
    # Exports off Neon (bot/exports), off while EXPORT_URL is unset: where they go and
    # who can read them are ExportStoreSettings'; when they run and how many are kept:
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

    _database_url = field_validator("database_url")(check_database_url)

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

    _recipients = field_validator("export_recipients")(check_export_recipients)

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
        mode="before")(refuse_placeholder)


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


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, or raise SettingsError naming every problem."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError([describe_problem(e) for e in error.errors()]) from None


class StoreSettings(BaseSettings):
    """Only what the store commands (`migrate`, `audit …`) need, so an operator can check
    the audit trail with nothing but DATABASE_URL, even when Slack or Neon are down."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///lifeguard.db"

    _database_url = field_validator("database_url")(check_database_url)


def load_store_settings() -> StoreSettings:
    try:
        return StoreSettings()
    except ValidationError as error:
        raise SettingsError([describe_problem(e) for e in error.errors()]) from None


class ExportSettings(ExportStoreSettings):
    """Only what `python -m bot export …` needs: the export bucket, the project (the
    folders' prefix) and, to restore, the age identity, so exports can be listed, checked
    and restored with Slack, Neon and the store all gone."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False,
                                      hide_input_in_errors=True)

    neon_project_id: str

    # Listing, checking and restoring read exports: no public key is needed for that.
    _recipients = field_validator("export_recipients")(check_given_recipients)


def load_export_settings(*, required: tuple[str, ...] = ()) -> ExportSettings:
    """The export settings; SettingsError naming every problem, and each of `required`
    (field names, such as "export_identity") that is unset."""
    problems: list[str] = []
    settings: ExportSettings | None = None
    try:
        settings = ExportSettings()
    except ValidationError as error:
        problems = [describe_problem(e) for e in error.errors()]
    named = {problem.split(" ", 1)[0] for problem in problems}
    problems += [describe_problem({"loc": (field,), "type": "missing"}) for field in required
                 if field.upper() not in named
                 and (settings is None or getattr(settings, field) is None)]
    if problems or settings is None:
        raise SettingsError(problems)
    return settings
