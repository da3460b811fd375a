"""The incident end-to-end tests' setting: responders (a user group with Dave, on call,
and Mallory), a runbook to bookmark, and a fake Slack that grants only the scopes the
manifest asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CAROL, MALLORY
from tests.support.fake_slack import FakeSlack, manifest_bot_scopes

MANIFEST = Path(__file__).resolve().parents[3] / "manifest.yml"
RUNBOOK = "https://runbooks.example/neon-restore"
ONCALL = "S0ONCALL"
DAVE = "U0DAVE"  # on call, in the responders' user group


@pytest.fixture
def bot_env(bot_env: dict[str, str]) -> dict[str, str]:
    return {**bot_env, "INCIDENT_RESPONDERS": f"{ONCALL},{MALLORY}",
            "INCIDENT_RUNBOOK_URL": RUNBOOK}


@pytest.fixture
def slack(slack: FakeSlack) -> Any:
    slack.add_user(DAVE, name="dave", tz="Europe/Lisbon")
    slack.set_usergroup(ONCALL, [DAVE, CAROL])
    slack.scopes = manifest_bot_scopes(MANIFEST)  # only what the manifest asks for
    yield slack
    slack.scopes = None
