"""Settings: every problem named at once, secrets never echoed, values parsed as written."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.config import SettingsError, load_settings

GOOD = {"SLACK_BOT_TOKEN": "xoxb-1-2", "SLACK_SIGNING_SECRET": "s3cret",
        "NEON_API_KEY": "neon-key", "NEON_PROJECT_ID": "young-sun-123456",
        "APPROVALS_CHANNEL": "C0APPROVALS", "ALERTS_CHANNEL": "C0ALERTS"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer's .env
    for name in [*GOOD, "SLACK_APP_TOKEN", "APPROVERS", "VERIFY_CHECKS", "APPROVAL_TTL",
                 "DATABASE_URL"]:
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
