"""What a person does in Slack around a restore: ask, look at the card, click."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from tests.support.bot_process import APPROVALS_CHANNEL
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.slack_driver import SlackDriver
from tests.support.waits import first_with_text, wait_for_response

REQUEST_ID = re.compile(r"Request `([0-9a-f]{8})`")


def ask(driver: SlackDriver, slack: FakeSlack, text: str, user_id: str,
        channel_id: str = "C0OPS", timeout: float = 20, command: str = "/restore") -> str:
    """Type `/restore TEXT` (or another command that makes a change request); return the
    request id the bot answers with."""
    url = slack.new_response_url()
    ack = driver.command(command, text, user_id=user_id, channel_id=channel_id,
                         response_url=url)
    assert ack.status_code == 200, ack.text
    answer = wait_for_response(slack, url, "waiting for approval", timeout=timeout)
    assert answer["response_type"] == "ephemeral"
    match = REQUEST_ID.search(answer["text"])
    assert match, answer["text"]
    return match.group(1)


def refused(driver: SlackDriver, slack: FakeSlack, text: str, user_id: str,
            words: str) -> dict[str, Any]:
    """Type `/restore TEXT` and return the answer (ack or later) that contains `words`."""
    url = slack.new_response_url()
    ack = driver.command("/restore", text, user_id=user_id, response_url=url)
    assert ack.status_code == 200
    if ack.content and words in ack.text:
        body = ack.json()
        assert body.get("response_type", "ephemeral") == "ephemeral"
        return body
    answer = wait_for_response(slack, url, words)
    assert answer["response_type"] == "ephemeral"
    return answer


def card(slack: FakeSlack, request_id: str, words: str = "",
         timeout: float = 30) -> dict[str, Any]:
    """The approval card of the request, once its text or blocks contain `words`."""
    def cards() -> list[dict[str, Any]]:
        return [{**m, "text": m.get("text", "") + str(m.get("blocks", ""))}
                for m in slack.messages(APPROVALS_CHANNEL) if request_id in m.get("text", "")]
    return first_with_text(slack, cards, words, timeout)


def click(driver: SlackDriver, slack: FakeSlack, action: str, request_id: str,
          user_id: str) -> str:
    """Click a button on the request's card; returns the click's response_url."""
    url = slack.new_response_url()
    response = driver.click(action, request_id, user_id=user_id, channel_id=APPROVALS_CHANNEL,
                            response_url=url)
    assert response.status_code == 200, response.text
    return url


def rows(neon: FakeNeon, branch: str, table: str = "orders") -> list[str]:
    with psycopg.connect(neon.connect_url(branch)) as conn:
        return [r[0] for r in conn.execute(f"SELECT note FROM {table} ORDER BY id")]


def write(neon: FakeNeon, branch: str, *notes: str, table: str = "orders") -> None:
    with psycopg.connect(neon.connect_url(branch)) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id serial PRIMARY KEY, note text, "
                     "created_at timestamptz DEFAULT now())")
        for note in notes:
            conn.execute(f"INSERT INTO {table} (note) VALUES (%s)", (note,))
