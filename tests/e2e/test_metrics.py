"""`GET /metrics` after a backup, a restore and a drill: the figures an operator alerts on
are there, in Prometheus' text format, and match what happened."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.support.bot_process import ALERTS_CHANNEL
from tests.support.restore_steps import ask, card, click, write
from tests.support.waits import first_with_text, wait_for_card


@pytest.fixture
def bot_env(bot_env: dict[str, str]) -> dict[str, str]:
    return {**bot_env, "DRILL_TARGET_AGE": "2s"}  # the drill restores a moment ago


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(figures: dict, name: str, **labels: str) -> float | None:
    return figures.get((name, tuple(sorted(labels.items()))))


def test_metrics_after_a_backup_a_restore_and_a_drill(driver, neon, slack, bot):
    started = time.time()
    write(neon, "main", "one", "two")
    neon.checkpoint()
    time.sleep(2.5)  # the drill restores to a moment after the checkpoint
    ack = driver.command("/drill", "start", user_id=ALICE, channel_id=OPS_CHANNEL)
    drill_id = re.search(r"Drill `([0-9a-f]{8})` started", ack.json()["text"]).group(1)
    first_with_text(slack, lambda: [m for m in slack.messages(ALERTS_CHANNEL)
                                    if drill_id in m["text"]], "succeeded", timeout=60)
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    wait_for_card(slack, OPS_CHANNEL, "is ready")
    [backup] = [b["name"] for b in neon.branches() if b["name"].startswith("backup-")]
    request_id = ask(driver, slack, f"from {backup} metrics", ALICE)
    click(driver, slack, "request.approve", request_id, BOB)
    card(slack, request_id, "done (approved by", timeout=60)

    figures = scrape(bot.url)
    assert value(figures, "lifeguard_store_up") == 1
    assert value(figures, "lifeguard_backups", status="ready") == 1
    assert value(figures, "lifeguard_requests", kind="restore_from_branch",
                 state="succeeded") == 1
    assert value(figures, "lifeguard_drills", state="succeeded") == 1
    for work in ("backup", "drill"):
        at = value(figures, "lifeguard_last_success_timestamp_seconds", work=work)
        assert at is not None and started - 5 <= at <= time.time() + 5, work
    created = value(figures, "lifeguard_neon_api_calls_total", method="POST", outcome="201")
    assert created is not None and created >= 3  # the backup, the restore, the drill
    acks = value(figures, "lifeguard_slack_request_seconds_count")
    assert acks is not None and acks >= 4  # three commands and a click
    print("\n/metrics after a backup, a restore and a drill:\n" + "\n".join(
        f"  {name}{dict(labels) if labels else ''} {number:g}"
        for (name, labels), number in sorted(figures.items())
        if name.startswith(("lifeguard_backups", "lifeguard_requests", "lifeguard_drills",
                            "lifeguard_last_success", "lifeguard_neon_api_calls_total"))))
