"""The Neon client's errors. They carry facts, not advice: the HTTP status, Neon's error
code, its message and request id, and which request failed. `str(error)` is one line for
logs. Words for people are `bot.services.neon_errors.explain_neon_error`, the one place
that turns these into sentences.

    NeonError
    ├── NeonUnreachable        no answer (connection refused, DNS, timeouts) after retries,
    │                          or an answer lost when resending was unsafe
    ├── NeonAuthError          401: the API key was refused
    ├── NeonPermissionError    403: the key may not do this
    ├── NeonNotFound           404: unknown project, branch or operation
    ├── NeonConflict           409: e.g. a branch name already taken
    ├── NeonRequestRejected    400/422 and other 4xx: Neon refused the request as asked
    ├── NeonLocked             423 still, after retries: another operation keeps running
    ├── NeonRateLimited        429 still, after retries
    ├── NeonServerError        5xx still, after retries, or an answer off the API's shape
    ├── NeonOperationFailed    an operation ended failed, error or cancelled
    └── NeonOperationTimeout   operations still running when the wait ran out
"""

from __future__ import annotations

from bot.neon.models import Operation


class NeonError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None, request: str | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message  # what Neon said, or what went wrong on the way
        self.status = status
        self.code = code
        self.request_id = request_id
        self.request = request  # "GET projects/p/branches/br-x"
        self.attempts = attempts

    def __str__(self) -> str:
        answer = " ".join(str(part) for part in (self.status, self.code) if part)
        line = f"{answer}: {self.message}" if answer else self.message
        if self.request:
            line = f"{self.request} -> {line}"
        if self.request_id:
            line += f" (request id {self.request_id})"
        if self.attempts > 1:
            line += f" after {self.attempts} attempts"
        return line


class NeonUnreachable(NeonError):
    def __init__(self, message: str, *, outcome_unknown: bool = False,
                 status: int | None = None, code: str | None = None,
                 request_id: str | None = None, request: str | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id,
                         request=request, attempts=attempts)
        # True when a request that was not safe to resend may have been carried out.
        self.outcome_unknown = outcome_unknown


class NeonAuthError(NeonError):
    pass


class NeonPermissionError(NeonError):
    pass


class NeonNotFound(NeonError):
    pass


class NeonConflict(NeonError):
    pass


class NeonRequestRejected(NeonError):
    pass


class NeonLocked(NeonError):
    pass


class NeonRateLimited(NeonError):
    pass


class NeonServerError(NeonError):
    pass


class NeonOperationFailed(NeonError):
    def __init__(self, operation: Operation) -> None:
        super().__init__(f"operation {operation.id} ({operation.action}) ended "
                         f"{operation.status}: {operation.error or 'no error message'}")
        self.operation = operation  # the first one that failed


class NeonOperationTimeout(NeonError):
    pass
