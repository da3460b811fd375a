"""The Neon client's errors. `str(error)` is a sentence a person understands; the HTTP
status, Neon's error code and its request id are attributes, for logs and the audit trail.

    NeonError
    ├── NeonUnreachable        no answer (connection refused, DNS, timeouts) after retries
    ├── NeonAuthError          401: the API key was refused
    ├── NeonPermissionError    403: the key may not do this
    ├── NeonNotFound           404: unknown project, branch or operation
    ├── NeonConflict           409: e.g. a branch name already taken
    ├── NeonRequestRejected    400/422 and other 4xx: Neon refused the request as asked
    ├── NeonLocked             423 still, after retries: another operation keeps running
    ├── NeonRateLimited        429 still, after retries
    ├── NeonServerError        5xx still, after retries
    ├── NeonOperationFailed    an operation ended failed, error or cancelled
    └── NeonOperationTimeout   operations still running when the wait ran out
"""

from __future__ import annotations


class NeonError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id


class NeonUnreachable(NeonError):
    pass


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
    pass


class NeonOperationTimeout(NeonError):
    pass
