"""The HTTP surface: `POST /slack/events` (Bolt), `GET /healthz` and `GET /metrics`
(Prometheus), served by waitress,
a production WSGI server with a thread pool and no dependencies beyond the standard library."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.metrics import Metrics

log = logging.getLogger("lifeguard.web")

SLACK_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
    return [data]


def make_wsgi_app(bolt: App | None, store_problem: Callable[[], str | None],
                  metrics: Metrics | None = None) -> WsgiApp:
    """`bolt` is None in Socket Mode: Slack then reaches us over the socket, and HTTP serves
    only the health check and the metrics. `store_problem` returns None when the store
    answers."""
    slack = SlackRequestHandler(bolt, path=SLACK_PATH) if bolt is not None else None

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            problem = store_problem()
            if problem is None:
                return _json(start_response, "200 OK", {"status": "ok", "store": "ok"})
            return _json(start_response, "503 Service Unavailable",
                         {"status": "unavailable", "store": problem})
        if path == METRICS_PATH and method in ("GET", "HEAD") and metrics is not None:
            body, content_type = metrics.exposition()
            start_response("200 OK", [("Content-Type", content_type),
                                      ("Content-Length", str(len(body))),
                                      ("Cache-Control", "no-store")])
            return [body]
        if path == SLACK_PATH and slack is not None:
            if method != "POST":
                return _json(start_response, "405 Method Not Allowed",
                             {"error": "Slack sends POST requests here"})
            try:
                if metrics is None:
                    return slack(environ, start_response)
                with metrics.slack_requests.time():  # Bolt answers once it is acknowledged
                    return slack(environ, start_response)
            except Exception as error:
                # Bolt could not even read the request (a body that is not a Slack payload:
                # broken JSON, a list, fields of the wrong type). Bolt calls start_response
                # only once it has an answer, so it has not been called yet.
                error_id = secrets.token_hex(4)
                log.warning("error id %s: a request to %s that is not a Slack payload "
                            "(%s: %s)", error_id, SLACK_PATH, type(error).__name__, error)
                return _json(start_response, "400 Bad Request",
                             {"error": f"not a Slack payload (error id {error_id})"})
        return _json(start_response, "404 Not Found", {"error": "not found"})

    return app


def serve(app: WsgiApp, port: int, threads: int = 16) -> None:
    import waitress

    log.info("listening on port %d", port)
    waitress.serve(app, host="0.0.0.0", port=port, threads=threads, ident="lifeguard",
                   clear_untrusted_proxy_headers=True)
