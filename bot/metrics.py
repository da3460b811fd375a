"""Prometheus metrics, served at `GET /metrics` in the text format.

Two kinds of figures:

- Read from the store at each scrape, so every replica reports the same truth and a
  restart loses nothing: records by kind and state, and the time of the last successful
  backup, drill and export (so "no successful backup for 26 h" is one alert rule:
  `time() - lifeguard_last_success_timestamp_seconds{work="backup"} > 26*3600`).
- Counted in this process since it started: Slack requests and how long their answer
  (the acknowledgement) took, Neon API attempts by outcome and retries, Slack Web API
  errors, scheduled job runs and failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("lifeguard.metrics")

ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class WorkFigures:
    """What the store says, at one scrape."""

    requests: dict[tuple[str, str], int]  # (action, state) -> how many
    backups: dict[str, int]  # status -> how many
    drills: dict[str, int]  # state -> how many
    last_success: dict[str, datetime | None] = field(default_factory=dict)  # work -> when


class Metrics:
    def __init__(self, figures: Callable[[], WorkFigures]) -> None:
        self.registry = CollectorRegistry()
        self.slack_requests = Histogram(
            "lifeguard_slack_request_seconds",
            "Time from a Slack request's arrival to Lifeguard's answer (the acknowledgement)",
            buckets=ACK_BUCKETS, registry=self.registry)
        self.neon_calls = Counter(
            "lifeguard_neon_api_calls", "Neon API attempts by method and outcome (the HTTP "
            "status, or unreachable)", ["method", "outcome"], registry=self.registry)
        self.neon_retries = Counter(
            "lifeguard_neon_api_retries", "Neon API attempts that repeated an earlier one",
            ["method"], registry=self.registry)
        self.slack_errors = Counter(
            "lifeguard_slack_api_errors", "Slack Web API calls that failed, by method and "
            "Slack's error (or the connection problem)", ["method", "error"],
            registry=self.registry)
        self.job_runs = Counter("lifeguard_job_runs", "Scheduled job runs", ["job"],
                                registry=self.registry)
        self.job_failures = Counter("lifeguard_job_failures", "Scheduled job runs that failed",
                                    ["job"], registry=self.registry)
        self.registry.register(_StoreFigures(figures))

    def neon_attempt(self, method: str, outcome: str, attempt: int) -> None:
        """bot.neon's observer: one attempt of a call."""
        self.neon_calls.labels(method, outcome).inc()
        if attempt > 1:
            self.neon_retries.labels(method).inc()

    def job_ran(self, job: str, ok: bool) -> None:
        self.job_runs.labels(job).inc()
        if not ok:
            self.job_failures.labels(job).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StoreFigures(Collector):
    def __init__(self, figures: Callable[[], WorkFigures]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lifeguard_store_up", "1 when the store answered this scrape")
        try:
            figures = self.figures()
        except Exception:
            log.exception("the store could not be read for metrics")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        requests = GaugeMetricFamily("lifeguard_requests", "Change requests by kind and state",
                                     labels=["kind", "state"])
        for (kind, state), count in sorted(figures.requests.items()):
            requests.add_metric([kind, state], count)
        yield requests
        for name, counts, label in (("backups", figures.backups, "status"),
                                    ("drills", figures.drills, "state")):
            family = GaugeMetricFamily(f"lifeguard_{name}", f"Recorded {name} by {label}",
                                       labels=[label])
            for value, count in sorted(counts.items()):
                family.add_metric([value], count)
            yield family
        last = GaugeMetricFamily(
            "lifeguard_last_success_timestamp_seconds",
            "When the newest successful piece of each kind of work finished (Unix time); "
            "absent while there is none", labels=["work"])
        for work, at in sorted(figures.last_success.items()):
            if at is not None:
                last.add_metric([work], at.timestamp())
        yield last
