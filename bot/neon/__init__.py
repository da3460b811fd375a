"""Neon API v2 client: typed results (parsed by pydantic), operation waiting, retries.
Imports only httpx, tenacity, pydantic and the standard library."""

from bot.neon.client import DEFAULT_BASE_URL, NeonClient
from bot.neon.errors import (
    NeonAuthError,
    NeonConflict,
    NeonError,
    NeonLocked,
    NeonNotFound,
    NeonOperationFailed,
    NeonOperationTimeout,
    NeonPermissionError,
    NeonRateLimited,
    NeonRequestRejected,
    NeonServerError,
    NeonUnreachable,
)
from bot.neon.models import (
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    Branch,
    BranchChange,
    Database,
    Endpoint,
    Operation,
    Project,
    Role,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "FAILURE_STATUSES",
    "SUCCESS_STATUSES",
    "Branch",
    "BranchChange",
    "Database",
    "Endpoint",
    "NeonAuthError",
    "NeonClient",
    "NeonConflict",
    "NeonError",
    "NeonLocked",
    "NeonNotFound",
    "NeonOperationFailed",
    "NeonOperationTimeout",
    "NeonPermissionError",
    "NeonRateLimited",
    "NeonRequestRejected",
    "NeonServerError",
    "NeonUnreachable",
    "Operation",
    "Project",
    "Role",
]
