"""End-to-end fixtures: a fake Neon API and a fake Slack Web API for the whole session
(reset before each test), and the real bot, `python -m bot`, started for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_environment
from tests.support.exports import AgeKey, make_key
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.postgres import PostgresServer
from tests.support.s3 import S3Server, shared_s3
from tests.support.slack_driver import SlackDriver

ALICE = "U0ALICE"  # asks for things
BOB = "U0BOB"  # approves and confirms
CAROL = "U0CAROL"  # approves too
MALLORY = "U0MALLORY"  # not an approver
APPROVERS = f"{BOB},{CAROL}"
OPS_CHANNEL = "C0OPS"


@pytest.fixture(scope="session")
def fake_neon_server(postgres: PostgresServer) -> Iterator[FakeNeon]:
    neon = FakeNeon(postgres).start()
    try:
        yield neon
    finally:
        neon.stop()


@pytest.fixture
def neon(fake_neon_server: FakeNeon) -> FakeNeon:
    """The fake Neon, reset: one default branch `main` with an empty `neondb`."""
    fake_neon_server.reset()
    return fake_neon_server


@pytest.fixture(scope="session")
def fake_slack_server() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    try:
        yield slack
    finally:
        slack.stop()


@pytest.fixture
def slack(fake_slack_server: FakeSlack) -> FakeSlack:
    fake_slack_server.reset()
    fake_slack_server.add_user(ALICE, name="alice", tz="Europe/Berlin", tz_offset=3600)
    fake_slack_server.add_user(BOB, name="bob", tz="America/New_York", tz_offset=-18000)
    fake_slack_server.add_user(CAROL, name="carol", tz="Asia/Kolkata")
    fake_slack_server.add_user(MALLORY, name="mallory", tz="UTC")
    return fake_slack_server


@pytest.fixture
def bot_env(neon: FakeNeon, slack: FakeSlack, tmp_path: Path) -> dict[str, str]:
    return bot_environment(
        slack_api_url=slack.api_url, neon_api_url=neon.url, neon_api_key=neon.api_key,
        neon_project_id=neon.project_id, database_url=f"sqlite:///{tmp_path / 'lifeguard.db'}",
        APPROVERS=APPROVERS)


@pytest.fixture
def bot(bot_env: dict[str, str]) -> Iterator[BotProcess]:
    process = BotProcess(bot_env).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def driver(bot: BotProcess, slack: FakeSlack) -> SlackDriver:
    return SlackDriver(bot.url, SIGNING_SECRET, slack)


@pytest.fixture(scope="session")
def s3() -> S3Server:
    """The S3-compatible server (moto) the export tests share; each test makes its bucket."""
    return shared_s3()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> AgeKey:
    """An age key pair, as age-keygen makes one."""
    return make_key(tmp_path_factory.mktemp("age"))
