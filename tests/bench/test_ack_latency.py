"""Acknowledgement latency of `/backup help` and `/backup now` under 20 concurrent
clients, Lifeguard side by side with a bare Bolt app on the same server stack.

Run: `python -m pytest tests/bench -s`. Prints p50 and p99 of each and their ratios; the
goal is Lifeguard ≤ 1.5× the bare app. Figures, not assertions on absolute times.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.bot_process import SIGNING_SECRET, BotProcess
from tests.support.slack_driver import SlackDriver

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "20"))
REQUESTS_PER_CLIENT = 15
WARMUP = 10


class BareBolt(BotProcess):
    def start(self, timeout: float = 30) -> BotProcess:
        import subprocess

        script = Path(__file__).with_name("bare_bolt_app.py")
        self.process = subprocess.Popen([sys.executable, str(script)], env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(self.log())


def measure(driver: SlackDriver, text: str) -> tuple[list[float], dict[str, int]]:
    for _ in range(WARMUP):
        driver.command("/backup", text)
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        own = SlackDriver(driver.bot_url, SIGNING_SECRET, driver.fake)
        start.wait()
        for _ in range(REQUESTS_PER_CLIENT):
            began = time.perf_counter()
            response = own.command("/backup", text, user_id=f"U0BENCH{number}")
            took = time.perf_counter() - began
            body = response.text  # Bolt answers a bare text ack as plain text, else JSON
            kind = ("accepted" if "Taking backup" in body else
                    "same second" if "same second" in body else
                    "usage" if "/backup now" in body else f"http {response.status_code}")
            with lock:
                latencies.append(took)
                outcomes[kind] = outcomes.get(kind, 0) + 1
        own.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, outcomes


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


@pytest.mark.bench
def test_ack_latency_side_by_side(bot_env, neon, slack):
    neon.operation_seconds = 0.2
    lifeguard = BotProcess(bot_env).start()
    bare = BareBolt(bot_env).start()
    try:
        rows = []
        for text in ("help", "now benchmark"):
            ours, outcomes = measure(SlackDriver(lifeguard.url, SIGNING_SECRET, slack), text)
            theirs, _ = measure(SlackDriver(bare.url, SIGNING_SECRET, slack), text)
            rows.append((text, ours, theirs, outcomes))
    finally:
        lifeguard.stop()
        bare.stop()
    print(f"\nack latency, {CLIENTS} concurrent clients × {REQUESTS_PER_CLIENT} requests")
    print(f"{'command':<16}{'lifeguard p50':>15}{'p99':>9}{'bare p50':>10}{'p99':>9}"
          f"{'ratio p50':>11}{'p99':>7}")
    for text, ours, theirs, outcomes in rows:
        o50, o99 = percentile(ours, 50) * 1000, percentile(ours, 99) * 1000
        t50, t99 = percentile(theirs, 50) * 1000, percentile(theirs, 99) * 1000
        print(f"/backup {text.split()[0]:<8}{o50:>12.1f} ms{o99:>6.1f} ms{t50:>7.1f} ms"
              f"{t99:>6.1f} ms{o50 / t50:>10.2f}×{o99 / t99:>6.2f}×  {outcomes}")
        assert len(ours) == len(theirs) == CLIENTS * REQUESTS_PER_CLIENT
