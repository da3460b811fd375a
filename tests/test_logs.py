"""Logging (bot/logs.py): the JSON and text formats, the secret filter, the job context,
and how `configure_logging` installs them."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.background import Background
from bot.logs import (
    REDACTED,
    JsonFormatter,
    SecretFilter,
    TextFormatter,
    configure_logging,
    log_context,
)

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NEON_KEY = "neonkey0123456789abcdefghijklmnop"


def record(message: str, *args: object, exc: BaseException | None = None,
           name: str = "lifeguard.test", level: int = logging.INFO) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, message, args, exc_info)


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


# --- the JSON format -----------------------------------------------------------------


def test_a_json_line_has_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(record("backup %s is %s", "backup-1", "ready"))
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry) == ["time", "level", "logger", "message"]
    assert entry["level"] == "INFO" and entry["logger"] == "lifeguard.test"
    assert entry["message"] == "backup backup-1 is ready"
    assert entry["time"].endswith("Z")
    when = datetime.fromisoformat(entry["time"])
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_a_json_line_carries_the_context_and_the_exception_on_one_line() -> None:
    with log_context(request_id="req-1"), log_context(job_id="j1"):
        line = JsonFormatter().format(record("failed", exc=raised(RuntimeError("boom\nline 2"))))
    entry = json.loads(line)
    assert (entry["request_id"], entry["job_id"]) == ("req-1", "j1")
    assert "RuntimeError: boom\nline 2" in entry["exception"]
    assert "Traceback" in entry["exception"] and "\n" not in line
    after = json.loads(JsonFormatter().format(record("later")))
    assert "request_id" not in after and "job_id" not in after  # the context ended


def test_text_lines_show_the_context_when_there_is_one() -> None:
    formatter = TextFormatter()
    assert formatter.format(record("plain")).endswith("INFO lifeguard.test: plain")
    with log_context(job_id="j2", job="reconcile backup backup-1"):
        line = formatter.format(record("step"))
    assert line.endswith("lifeguard.test: step [job_id=j2 job=reconcile backup backup-1]")


# --- the secret filter ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "secret"), [
    ("token xoxb-1234-5678-AbCdEf in a message", "xoxb-1234-5678-AbCdEf"),
    ("user token xoxp-99-88-77", "xoxp-99-88-77"),
    ("app token xapp-1-A0B-123-abc", "xapp-1-A0B-123-abc"),
    ("neon napi_0123456789abcdef", "napi_0123456789abcdef"),
    ("store postgresql://lifeguard:hunter2secret@db.example/store", "hunter2secret"),
    ("store postgres://u:p%40ss@db/x", "p%40ss"),
    ("store postgresql+psycopg://u:pw1234@db/x", "pw1234"),
    ("header Authorization: Bearer abc.def-123", "abc.def-123"),
    (f"signature check with {SIGNING_SECRET}!", SIGNING_SECRET),
    (f"key={NEON_KEY}", NEON_KEY),
])
def test_secrets_are_taken_out_of_messages(text: str, secret: str) -> None:
    secrets = SecretFilter([SIGNING_SECRET, NEON_KEY])
    by_format = record(text)
    by_argument = record("value: %s", text)
    for each in (by_format, by_argument):
        assert secrets.filter(each) is True  # rewritten, never dropped
        assert secret not in each.getMessage()
        assert REDACTED in each.getMessage()


def test_what_is_not_secret_is_left_as_it_was() -> None:
    text = ("backup backup-20261121-142500 ready (xoxb- docs, postgresql://host/db, "
            "user U0BOB, 50 % done)")
    each = record(text)
    SecretFilter([SIGNING_SECRET, "short"]).filter(each)
    assert each.getMessage() == text


def test_secrets_are_taken_out_of_exceptions_and_stacks() -> None:
    error = raised(ValueError(f"could not connect to postgresql://u:hunter2secret@db/x "
                              f"with {NEON_KEY}"))
    each = record("store failed", exc=error)
    each.stack_info = f"Stack (most recent call last):\n  token xoxb-1-2-3 {SIGNING_SECRET}"
    SecretFilter([SIGNING_SECRET, NEON_KEY]).filter(each)
    for text in (each.exc_text or "", each.stack_info):
        assert "hunter2secret" not in text and NEON_KEY not in text
        assert "xoxb-1-2-3" not in text and SIGNING_SECRET not in text
    line = JsonFormatter().format(each)
    assert "hunter2secret" not in line and NEON_KEY not in line
    assert "ValueError" in json.loads(line)["exception"]


def test_a_message_whose_arguments_do_not_fit_is_still_filtered() -> None:
    each = record("%s and %s", "xoxb-1-2-3")  # one argument for two placeholders
    SecretFilter().filter(each)
    assert "xoxb-1-2-3" not in each.getMessage()


# --- configure_logging ---------------------------------------------------------------


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    """Where the tests' configure_logging writes; the logging setup is put back after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("alembic").level,
             sys.excepthook, threading.excepthook)
    yield io.StringIO()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("alembic").setLevel(saved[2])
    sys.excepthook, threading.excepthook = saved[3], saved[4]
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_mode_writes_every_record_as_json_without_secrets(stderr: io.StringIO) -> None:
    configure_logging("INFO", "json", [SIGNING_SECRET], stderr)
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert all(any(isinstance(f, SecretFilter) for f in h.filters) for h in root.handlers)
    logging.getLogger("lifeguard.deep.child").info("secret %s", SIGNING_SECRET)
    logging.getLogger("waitress").warning("token xoxb-9-9-9")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0002 -> 0003")
    warnings.warn(f"deprecated, see postgresql://u:{SIGNING_SECRET}@h/d", UserWarning,
                  stacklevel=1)
    entries = lines(stderr)
    assert [e["logger"] for e in entries] == ["lifeguard.deep.child", "waitress", "py.warnings"]
    assert SIGNING_SECRET not in stderr.getvalue() and "xoxb-9-9-9" not in stderr.getvalue()


def test_an_uncaught_exception_in_a_thread_is_one_json_line(stderr: io.StringIO) -> None:
    configure_logging("INFO", "json", [NEON_KEY], stderr)

    def fail() -> None:
        raise RuntimeError(f"lost {NEON_KEY}")

    thread = threading.Thread(target=fail, name="worker-1")
    thread.start()
    thread.join()
    (entry,) = lines(stderr)
    assert entry["level"] == "ERROR" and "worker-1" in str(entry["message"])
    assert "RuntimeError" in str(entry["exception"]) and NEON_KEY not in stderr.getvalue()


def test_text_mode_is_the_default(stderr: io.StringIO) -> None:
    configure_logging("INFO", stream=stderr)
    logging.getLogger("lifeguard").info("hello %s", "xoxb-1-2-3")
    (line,) = stderr.getvalue().splitlines()
    assert line.endswith(f"INFO lifeguard: hello {REDACTED}")


def test_background_jobs_log_with_their_job_id_and_the_submitters_context(
        stderr: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=stderr)
    background = Background(2)
    try:
        with log_context(request_id="req-7"):
            first = background.run(lambda: logging.getLogger("lifeguard.job").info("one"),
                                   "backup backup-1")
        second = background.run(lambda: logging.getLogger("lifeguard.job").info("two"),
                                "reconcile drill d-1")
        first.result(5)
        second.result(5)
        failing = background.run(lambda: 1 / 0, "restore r-1")
        with pytest.raises(ZeroDivisionError):
            failing.result(5)
    finally:
        background.shutdown()
    entries = {str(e["message"]).split(":")[0]: e for e in lines(stderr)}
    one, two = entries["one"], entries["two"]
    assert one["request_id"] == "req-7" and one["job"] == "backup backup-1"
    assert "request_id" not in two and two["job"] == "reconcile drill d-1"
    assert one["job_id"] != two["job_id"] and len(str(one["job_id"])) == 12
    failed = entries["background job failed"]
    assert failed["job"] == "restore r-1" and "ZeroDivisionError" in str(failed["exception"])
