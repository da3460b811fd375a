"""Settings: every problem named at once, secrets never echoed, values parsed as written."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings
from bot.services.doctor import check_settings, render
from bot.settings_checks import is_placeholder

GOOD = {"SLACK_BOT_TOKEN": "xoxb-1-2", "SLACK_SIGNING_SECRET": "s3cret",
        "NEON_API_KEY": "neon-key", "NEON_PROJECT_ID": "young-sun-123456",
        "APPROVALS_CHANNEL": "C0APPROVALS", "ALERTS_CHANNEL": "C0ALERTS"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer's .env
    for name in [*GOOD, "SLACK_APP_TOKEN", "APPROVERS", "VERIFY_CHECKS", "APPROVAL_TTL",
                 "DATABASE_URL", "LOG_FORMAT"]:
        monkeypatch.delenv(name, raising=False)

    def set_(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_


def test_every_missing_variable_is_named_in_one_message(env):
    with pytest.raises(SettingsError) as error:
        load_settings()
    for name in GOOD:
        assert f"{name} is missing" in str(error.value)


def test_values_are_parsed_as_written(env):
    env(**GOOD, APPROVERS="U0BOB, S0DBAS", APPROVAL_TTL="45m",
        VERIFY_CHECKS='{"no orphans": "SELECT true"}', DATABASE_URL="postgres://u@h/db")
    settings = load_settings()
    assert settings.approvers == ("U0BOB", "S0DBAS")
    assert settings.approval_ttl == timedelta(minutes=45)
    assert settings.verify_checks == {"no orphans": "SELECT true"}
    assert settings.database_url == "postgres://u@h/db"
    assert not settings.socket_mode


def test_malformed_values_are_named_and_secrets_are_not_echoed(env):
    env(**{**GOOD, "SLACK_BOT_TOKEN": "xoxp-user-secret", "ALERTS_CHANNEL": "#alerts"},
        APPROVERS="bob", VERIFY_CHECKS="[1, 2]", APPROVAL_TTL="soon")
    with pytest.raises(SettingsError) as error:
        load_settings()
    text = str(error.value)
    for name in ("SLACK_BOT_TOKEN", "APPROVERS", "VERIFY_CHECKS", "APPROVAL_TTL",
                 "ALERTS_CHANNEL"):
        assert f"{name} is malformed" in text
    assert "xoxp-user-secret" not in text


def test_socket_mode_needs_no_signing_secret(env):
    env(**{k: v for k, v in GOOD.items() if k != "SLACK_SIGNING_SECRET"},
        SLACK_APP_TOKEN="xapp-1-2")
    assert load_settings().socket_mode


# --- placeholders and formats --------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_the_env_example_as_copied_names_every_value_still_to_fill_in(env, tmp_path):
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env")  # the fixture's cwd
    with pytest.raises(SettingsError) as error:
        load_settings()
    text = str(error.value)
    for name in GOOD:
        assert f"{name} is still a placeholder" in text, text
    assert "xoxb-..." not in text and "your-neon-project-id" not in text


@pytest.mark.parametrize("value", ["xoxb-...", "xoxb-…", "xoxb-your-bot-token", "<bot token>",
                                   "xoxb-changeme", "xoxb-xxxx-xxxx-xxxx", "xoxb-TODO"])
def test_a_placeholder_token_is_named_as_one(env, value):
    env(**{**GOOD, "SLACK_BOT_TOKEN": value})
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert error.value.problems == [
        "SLACK_BOT_TOKEN is still a placeholder, not a real value; expected the bot token, "
        "xoxb-…, from the Slack app's OAuth & Permissions page"]


@pytest.mark.parametrize(("name", "value"), [
    ("SLACK_SIGNING_SECRET", "..."), ("SLACK_SIGNING_SECRET", "changeme"),
    ("NEON_API_KEY", "..."), ("NEON_API_KEY", "your-neon-api-key"), ("NEON_API_KEY", "<key>"),
    ("NEON_PROJECT_ID", "your-project-id"), ("APPROVALS_CHANNEL", "C..."),
    ("ALERTS_CHANNEL", "Cxxxxxxxxx"), ("APPROVERS", "U0BOB, U..."),
    ("SLACK_APP_TOKEN", "xapp-..."),
])
def test_each_placeholder_is_named_by_its_variable(env, name, value):
    env(**{**GOOD, name: value})
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith(f"{name} is still a placeholder")


def test_real_looking_values_are_not_placeholders():
    for value in ("xoxb-1234-5678-AbCdEf", "xoxb-test-token", "8f742231b10e8888abcd99yy",
                  "young-sun-123456", "C0APPROVALS", "U0BOB", "S0DBAS", "W0ENTERPRISE",
                  "napi_abc123", "k"):
        assert not is_placeholder(value), value
    for value in ("...", "…", "xoxb-...", "<your token>", "changeme", "CHANGE-ME", "your-key",
                  "your_key", "xoxb-xxxx", "XXXXXXXX", "Cxxxxxxx", "placeholder", "TBD"):
        assert is_placeholder(value), value


@pytest.mark.parametrize(("name", "value"), [
    ("SLACK_BOT_TOKEN", "xoxb-1-2 extra"), ("SLACK_BOT_TOKEN", "xoxb-"),
    ("SLACK_BOT_TOKEN", "xapp-1-2"), ("SLACK_APP_TOKEN", "xoxb-1-2"),
    ("SLACK_APP_TOKEN", "xapp-1/2"), ("APPROVALS_CHANNEL", "c0lower"),
    ("APPROVALS_CHANNEL", "D0DIRECT"), ("APPROVERS", "U0BOB,B0BOT"), ("APPROVERS", "u0bob"),
])
def test_token_and_id_formats_are_checked(env, name, value):
    env(**{**GOOD, name: value})
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith(f"{name} is malformed")
    if "TOKEN" in name and value not in ("xoxb-", "xapp-"):  # secrets never echoed
        assert value not in str(error.value)


def test_well_formed_ids_of_every_kind_are_accepted(env):
    env(**{**GOOD, "APPROVALS_CHANNEL": "G0PRIVATE", "APPROVERS": "U0BOB,W0ENTERPRISE,S0DBAS",
           "SLACK_APP_TOKEN": "xapp-1-A0-123"})
    settings = load_settings()
    assert settings.approvers == ("U0BOB", "W0ENTERPRISE", "S0DBAS")
    assert settings.approvals_channel == "G0PRIVATE" and settings.socket_mode


def test_log_format_is_text_unless_json(env):
    env(**GOOD)
    assert load_settings().log_format == "text"
    env(LOG_FORMAT=" JSON ")
    assert load_settings().log_format == "json"
    env(LOG_FORMAT="xml")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert error.value.problems[0].startswith("LOG_FORMAT is malformed")
    assert "json" in error.value.problems[0]


def test_doctor_names_each_bad_setting_on_its_own_line(env):
    env(**{**GOOD, "SLACK_BOT_TOKEN": "xoxb-...", "ALERTS_CHANNEL": "#alerts"})
    with pytest.raises(SettingsError) as error:
        load_settings()
    lines = render(check_settings(error.value.problems)).splitlines()
    assert lines[0].startswith("[FAIL] Settings: SLACK_BOT_TOKEN is still a placeholder")
    assert lines[1].startswith("[FAIL] Settings: ALERTS_CHANNEL is malformed")
    assert lines[2].strip().startswith("fix: Set them in the environment or in .env")
    assert len(lines) == 3


def test_a_value_with_a_trailing_newline_is_malformed(env):
    env(**{**GOOD, "SLACK_BOT_TOKEN": "xoxb-1-2\n", "APPROVALS_CHANNEL": "C0APPROVALS\n"})
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert [p.split(" ")[0] for p in error.value.problems] == ["SLACK_BOT_TOKEN",
                                                                "APPROVALS_CHANNEL"]


# --- exports ---------------------------------------------------------------------------

AGE_KEY = "age1" + "q" * 58
OTHER_AGE_KEY = "age1" + "p" * 58


@pytest.fixture
def export_env(env, monkeypatch: pytest.MonkeyPatch):
    for name in ("EXPORT_URL", "EXPORT_S3_ENDPOINT", "EXPORT_RECIPIENTS", "EXPORT_IDENTITY",
                 "EXPORT_SCHEDULE", "EXPORT_RETENTION_WEEKLY", "EXPORT_RETENTION_MONTHLY"):
        monkeypatch.delenv(name, raising=False)
    env(**GOOD)
    return env


def test_exports_are_off_by_default_with_the_documented_defaults(export_env):
    settings = load_settings()
    assert not settings.exports_enabled
    assert settings.export_url is None and settings.export_recipients == ()
    assert settings.export_schedule == "0 2 * * 0"
    assert (settings.export_retention_weekly, settings.export_retention_monthly) == (8, 12)


def test_export_settings_are_parsed_as_written(export_env, tmp_path):
    identity = tmp_path / "key.txt"
    identity.write_text("AGE-SECRET-KEY-1...\n")
    export_env(EXPORT_URL="s3://team-backups/neon/lifeguard",
               EXPORT_S3_ENDPOINT="https://acct.r2.cloudflarestorage.com",
               EXPORT_RECIPIENTS=f" {AGE_KEY}, {OTHER_AGE_KEY} ,",
               EXPORT_IDENTITY=str(identity), EXPORT_SCHEDULE="30 1 * * 6",
               EXPORT_RETENTION_WEEKLY="4", EXPORT_RETENTION_MONTHLY="0")
    settings = load_settings()
    assert settings.exports_enabled
    assert settings.export_url == "s3://team-backups/neon/lifeguard"
    assert settings.export_s3_endpoint == "https://acct.r2.cloudflarestorage.com"
    assert settings.export_recipients == (AGE_KEY, OTHER_AGE_KEY)
    assert settings.export_identity == str(identity)
    assert settings.export_schedule == "30 1 * * 6"
    assert (settings.export_retention_weekly, settings.export_retention_monthly) == (4, 0)


def test_empty_export_values_mean_unset(export_env):
    export_env(EXPORT_URL="", EXPORT_S3_ENDPOINT=" ", EXPORT_IDENTITY="", EXPORT_RECIPIENTS="")
    settings = load_settings()
    assert not settings.exports_enabled and settings.export_identity is None


def test_an_export_url_needs_recipients(export_env):
    export_env(EXPORT_URL="s3://team-backups")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith("EXPORT_RECIPIENTS is missing: a comma list of "
                                              "age public keys")


@pytest.mark.parametrize(("name", "value", "said"), [
    ("EXPORT_URL", "https://bucket.s3.amazonaws.com/x", "s3://bucket"),
    ("EXPORT_URL", "s3://", "s3://bucket"),
    ("EXPORT_URL", "s3://Bad_Bucket/x", "is not a bucket name"),
    ("EXPORT_URL", "s3://bucket/a//b", "empty, '.' or '..'"),
    ("EXPORT_URL", "s3://bucket/../up", "empty, '.' or '..'"),
    ("EXPORT_URL", "s3://bucket/x?versionId=1", "s3://bucket"),
    ("EXPORT_S3_ENDPOINT", "minio:9000", "is not an http(s) URL"),
    ("EXPORT_S3_ENDPOINT", "ftp://minio", "is not an http(s) URL"),
    ("EXPORT_RECIPIENTS", "age1short", "is not an age public key"),
    ("EXPORT_RECIPIENTS", f"{AGE_KEY},ssh-ed25519 AAAA", "is not an age public key"),
    ("EXPORT_SCHEDULE", "every sunday", "is not a 5-field cron expression"),
    ("EXPORT_RETENTION_WEEKLY", "-1", "greater than or equal to 0"),
    ("EXPORT_RETENTION_MONTHLY", "twelve", "integer"),
])
def test_malformed_export_settings_are_named(export_env, name, value, said):
    export_env(EXPORT_URL="s3://team-backups", EXPORT_RECIPIENTS=AGE_KEY)
    export_env(**{name: value})
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert len(error.value.problems) == 1, error.value.problems
    assert error.value.problems[0].startswith(f"{name} is malformed"), error.value.problems
    assert said in error.value.problems[0]


def test_a_secret_key_given_as_a_recipient_is_refused_and_never_echoed(export_env):
    secret = "AGE-SECRET-KEY-1" + "QPZRY9X8" * 7 + "QP"
    export_env(EXPORT_URL="s3://team-backups", EXPORT_RECIPIENTS=f"{AGE_KEY},{secret}")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert error.value.problems[0].startswith("EXPORT_RECIPIENTS is malformed: it holds an "
                                              "age secret key")
    assert "QPZRY9X8" not in str(error.value)


def test_an_identity_file_must_exist_and_be_readable(export_env, tmp_path):
    export_env(EXPORT_IDENTITY=str(tmp_path / "missing.txt"))
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert error.value.problems[0].startswith("EXPORT_IDENTITY is malformed")
    assert "is not a file" in error.value.problems[0]
    export_env(EXPORT_IDENTITY=str(tmp_path))  # a folder
    with pytest.raises(SettingsError):
        load_settings()


def test_placeholder_export_values_are_named_as_such(export_env):
    export_env(EXPORT_URL="s3://your-bucket/...", EXPORT_RECIPIENTS="age1...")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert [p.split(" ")[0] for p in error.value.problems] == ["EXPORT_URL",
                                                                "EXPORT_RECIPIENTS"]
    assert all("placeholder" in p for p in error.value.problems)


def test_the_export_commands_need_only_the_project_and_the_export_settings(export_env,
                                                                          monkeypatch):
    from bot.config import load_export_settings
    from bot.settings_checks import DESCRIPTIONS

    for name in GOOD:
        if name != "NEON_PROJECT_ID":
            monkeypatch.delenv(name)
    export_env(EXPORT_URL="s3://team-backups/lifeguard", EXPORT_RECIPIENTS=AGE_KEY)
    settings = load_export_settings()
    assert settings.export_url == "s3://team-backups/lifeguard"
    assert settings.export_recipients == (AGE_KEY,)
    # Listing, checking and restoring read exports: no public key is needed for that, and
    # a restore demands what it does need by name.
    monkeypatch.delenv("EXPORT_RECIPIENTS")
    assert load_export_settings().export_recipients == ()
    with pytest.raises(SettingsError) as error:
        load_export_settings(required=("export_url", "export_identity"))
    assert error.value.problems == [
        "EXPORT_IDENTITY is missing: " + DESCRIPTIONS["EXPORT_IDENTITY"]]
    export_env(EXPORT_RECIPIENTS="age1notakey")
    with pytest.raises(SettingsError) as error:
        load_export_settings()
    assert error.value.problems[0].startswith("EXPORT_RECIPIENTS is malformed")
