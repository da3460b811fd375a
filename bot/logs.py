"""The process's logging: one handler on stderr, as text for people (`LOG_FORMAT=text`, the
default) or as one JSON object a line for log shippers (`LOG_FORMAT=json`), and one
filter, on every handler, that takes secrets out of every record before it is written.

Each line carries the id of the request or job in hand when one is known: whoever runs a
piece of work wraps it in `log_context(job_id=…)` (bot/background.py does for every
background job) and everything logged inside, at any depth, carries it.

    {"time": "2026-01-13T14:25:00.123Z", "level": "INFO", "logger": "lifeguard.backups",
     "message": "…", "job_id": "3f9c1a2b", "job": "reconcile backup backup-…"}
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

#: fields of the request or job in hand (request_id, job_id, job), added to every line
LOG_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("lifeguard_log_context",
                                                       default=MappingProxyType({}))

REDACTED = "[redacted]"
# Secrets recognisable by their shape, whoever logs them; known values are added at start.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]+"), REDACTED),  # Slack bot/user/… tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),  # Slack app-level tokens
    (re.compile(r"\bnapi_[A-Za-z0-9]+"), REDACTED),  # Neon API keys
    # the password of a database URL: postgresql://user:PASSWORD@host/db
    (re.compile(r"(?i)\b((?:postgres|postgresql)(?:\+\w+)?://[^:/@\s]*:)[^@\s]+@"),
     rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
)
#: known secret values shorter than this are not searched for: they would blank out
#: ordinary words (no real token, key or signing secret is this short)
MIN_SECRET_LENGTH = 8


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Within the block (in this thread or task), every line logged carries `fields`."""
    token = LOG_CONTEXT.set({**LOG_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        LOG_CONTEXT.reset(token)


class SecretFilter(logging.Filter):
    """Rewrites each record's message, exception and stack text without secrets: tokens,
    keys and URL passwords by their shape, and the configured values wherever they are.
    Never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len,
                        reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in values)) if values else None
        self._exceptions = logging.Formatter()

    def redact(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        for pattern, replacement in SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, as text
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _utc_rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, RFC 3339), level, logger, message, the log
    context's ids, and the exception or stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc_rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **LOG_CONTEXT.get(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [request_id=… job_id=…]`, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = LOG_CONTEXT.get()
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return line


def configure_logging(level: str = "INFO", log_format: LogFormat = "text",
                      secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers by one on `stream` (stderr) in `log_format`, with
    the secret filter on every handler. Migrations (alembic) and HTTP clients log quietly."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    secret_filter = SecretFilter(secrets)
    for each in root.handlers:
        each.addFilter(secret_filter)
    numeric_level = logging.getLevelName(level)
    # slack_sdk logs request bodies at DEBUG; keep even redacted bodies out.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, numeric_level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings become records: filtered, and JSON in json mode
    if log_format == "json":
        _log_uncaught_exceptions()


def _log_uncaught_exceptions() -> None:
    """An exception nobody caught becomes a log record too, so even it is one JSON line
    without secrets, not a bare traceback on stderr."""
    log = logging.getLogger("lifeguard")

    def on_exception(kind: type[BaseException], value: BaseException,
                     traceback: TracebackType | None) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, traceback))

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        log.error("uncaught exception in thread %s", name,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception
