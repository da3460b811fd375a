"""How the client talks HTTP to Neon: sending with retries, typing error answers, and
parsing answers with pydantic.

Retries (tenacity, exponential backoff with jitter, at most `max_attempts` sends):

* 423, 429 and 503 are retried for every request: Neon did not act on it. A
  `Retry-After` header (seconds or an HTTP date) is honoured, capped at
  `MAX_RETRY_AFTER` seconds.
* A failure before the request could have left (`httpx.ConnectError`,
  `ConnectTimeout`, `PoolTimeout`) is retried for every request.
* Other 5xx, timeouts and dropped connections mean the answer was lost and Neon may
  have acted. A request that is safe to resend (GET, DELETE) is resent. One that is not
  is resent only if its `find_made` finds that it made nothing; without `find_made`,
  `NeonUnreachable` with `outcome_unknown` tells the caller to reconcile.

Secrets (the API key, connection URIs) never go into an error or a log line.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from bot.neon.answers import GeneralError
from bot.neon.errors import (
    NeonAuthError,
    NeonConflict,
    NeonError,
    NeonLocked,
    NeonNotFound,
    NeonPermissionError,
    NeonRateLimited,
    NeonRequestRejected,
    NeonServerError,
    NeonUnreachable,
)
from bot.neon.models import BranchChange

MAX_RETRY_AFTER = 60.0
"""Longest wait, in seconds, that a `Retry-After` header can impose between two sends."""
RETRY_ALWAYS_STATUSES = frozenset({423, 429, 503})
ERRORS_BY_STATUS: dict[int, type[NeonError]] = {
    401: NeonAuthError, 403: NeonPermissionError, 404: NeonNotFound, 409: NeonConflict,
    423: NeonLocked, 429: NeonRateLimited,
}

logger = logging.getLogger("lifeguard.neon")

_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_URI_WITH_PASSWORD = re.compile(r"(?i)\b(postgres(?:ql)?://)[^@\s/]*@")

T = TypeVar("T")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _transport_reason(exc: httpx.TransportError, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection timed out after {timeout:g}s"
    if isinstance(exc, httpx.PoolTimeout):
        return "no free connection in the pool"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, httpx.RemoteProtocolError):
        detail = str(exc)
        return f"the connection closed before an answer ({detail})" if detail else \
            "the connection closed before an answer"
    return str(exc).strip() or type(exc).__name__


@functools.cache
def _adapter(answer: type[T]) -> TypeAdapter[T]:
    return TypeAdapter(answer)


@dataclass
class Request:
    """One call to the API, and what its attempts so far have learnt."""

    method: str
    path: str  # relative to the base URL, already encoded
    resend_safe: bool
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    # Looks for what a create whose answer was lost made, so it is not made twice.
    find_made: Callable[[], BranchChange | None] | None = None
    attempts: int = 0
    answer_lost: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class _Retry(Exception):
    """An attempt that failed in a way another attempt may fix; `error` if none does."""

    def __init__(self, error: NeonError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


# Told of every attempt: (HTTP method, outcome: the status code or "unreachable", attempt
# number, 1 for the first send). For metrics; it must not raise.
Observer = Callable[[str, str, int], None]


class Sender:
    """Sends requests to one Neon API base URL. `slept` adds up every sleep, retries'
    and the client's polls alike, so a wait can count the time it spent sleeping."""

    def __init__(self, api_key: str, *, base_url: str, timeout: float, max_attempts: int,
                 transport: httpx.BaseTransport | None, sleep: Callable[[float], None],
                 backoff_initial: float, backoff_max: float, user_agent: str,
                 observe: Observer | None = None) -> None:
        self.timeout = timeout
        self._observe = observe
        self.max_attempts = max_attempts
        self.slept = 0.0
        self._api_key = api_key
        self._sleep_fn = sleep
        self._host = httpx.URL(base_url).netloc.decode("ascii", "replace")
        self._backoff = (wait_exponential(multiplier=backoff_initial, max=backoff_max)
                         + wait_random(0, backoff_initial))
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": user_agent,
            },
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self._sleep_fn(seconds)

    def answer(self, request: Request) -> httpx.Response:
        """Neon's successful answer to a request that has no `find_made`."""
        answer = self.send(request)
        assert isinstance(answer, httpx.Response), "only a create finds what it made"
        return answer

    def send(self, request: Request) -> httpx.Response | BranchChange:
        """Send with retries: Neon's successful answer, or the branch a create whose answer
        was lost made after all."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: logger.debug(
                "Neon %s: retrying in %.2fs", request,
                state.next_action.sleep if state.next_action else 0.0),
        )
        try:
            return retrying(self._attempt, request)
        except _Retry as failure:
            failure.error.attempts = request.attempts
            raise failure.error from failure.__cause__

    def read(self, request: Request, response: httpx.Response, answer: type[T]) -> T:
        """The answer as `answer`; NeonServerError when it is not of the documented shape."""
        try:
            return _adapter(answer).validate_json(response.content)
        except ValidationError as invalid:
            problem = invalid.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise NeonServerError(
                self._redact(f"the answer is not what the API documents: "
                             f"{where + ': ' if where else ''}{problem['msg']}"),
                status=response.status_code, request=str(request),
                request_id=self.request_id(response)) from None

    def request_id(self, response: httpx.Response) -> str | None:
        for header in ("x-neon-ret-request-id", "x-request-id"):
            value = response.headers.get(header)
            if value:
                return value
        return None

    def _attempt(self, request: Request) -> httpx.Response | BranchChange:
        request.attempts += 1
        local_id = str(uuid.uuid4())
        try:
            response = self._http.request(request.method, request.path, params=request.params,
                                          json=request.body, headers={"X-Request-ID": local_id})
        except httpx.TransportError as exc:
            reason = self._redact(f"{self._host}: {_transport_reason(exc, self.timeout)}")
            self._log(request, reason, local_id)
            unreachable = NeonUnreachable(reason, request=str(request), request_id=local_id)
            if isinstance(exc, _NOT_SENT_ERRORS) or request.resend_safe:
                raise _Retry(unreachable) from exc
            return self._answer_lost(request, unreachable)

        status = response.status_code
        if status < 400:
            self._log(request, str(status), self.request_id(response) or local_id)
            return response
        error = self._error(request, response, local_id)
        self._log(request, str(status), error.request_id)
        if status in RETRY_ALWAYS_STATUSES:
            raise _Retry(error, parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            if request.resend_safe:
                raise _Retry(error)
            return self._answer_lost(request, error)
        if status == 409 and request.answer_lost and request.find_made is not None:
            # An earlier send whose answer was lost may have taken the name after all.
            made = request.find_made()
            if made is not None:
                return made
        raise error

    def _answer_lost(self, request: Request, error: NeonError) -> BranchChange:
        """A request unsafe to resend may have been carried out, but its answer is lost."""
        request.answer_lost = True
        lost = NeonUnreachable(error.message, outcome_unknown=True, status=error.status,
                               code=error.code, request_id=error.request_id,
                               request=str(request), attempts=request.attempts)
        if request.find_made is None:
            raise lost
        made = request.find_made()
        if made is not None:
            return made
        raise _Retry(lost)  # nothing was made: sending it again is safe

    def _error(self, request: Request, response: httpx.Response, local_id: str) -> NeonError:
        """The typed error for an error answer, with Neon's code, message and request id."""
        try:
            said = _adapter(GeneralError).validate_json(response.content)
        except ValidationError:
            said = GeneralError()
        status = response.status_code
        error_class = NeonServerError if status >= 500 else \
            ERRORS_BY_STATUS.get(status, NeonRequestRejected)
        return error_class(
            self._redact(said.message or response.reason_phrase or f"HTTP {status}"),
            status=status, code=self._redact(said.code) if said.code else None,
            request_id=said.request_id or self.request_id(response) or local_id,
            request=str(request))

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return _URI_WITH_PASSWORD.sub(r"\1***@", text)

    def _log(self, request: Request, outcome: str, request_id: str | None) -> None:
        logger.debug("Neon %s -> %s (request id %s, attempt %d/%d)", request, outcome,
                     request_id, request.attempts, self.max_attempts)
        if self._observe is not None:
            try:
                self._observe(request.method, outcome if outcome.isdigit() else "unreachable",
                              request.attempts)
            except Exception:  # counting must never break a call
                logger.exception("the Neon call observer failed")

    def _wait(self, retry_state: RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _Retry) and failure.retry_after is not None:
            return min(failure.retry_after, MAX_RETRY_AFTER)
        return float(self._backoff(retry_state))
