"""The envelopes of Neon's answers, named after the response schemas of Neon's OpenAPI
document (tests/contracts/neon-public-v2.yaml). Only the fields Lifeguard reads; the
client parses each answer into one of these (or into a model) with pydantic."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass

from bot.neon.models import Branch, Database, Endpoint, Operation, Project, Role


@dataclass(frozen=True)
class Pagination:
    next: str | None = None  # branches page with `next`
    cursor: str | None = None  # operations page with `cursor`


@dataclass(frozen=True)
class ProjectResponse:
    project: Project


@dataclass(frozen=True)
class BranchResponse:
    branch: Branch


@dataclass(frozen=True)
class BranchesResponse:
    branches: list[Branch]
    pagination: Pagination | None = None

    @property
    def items(self) -> list[Branch]:
        return self.branches

    @property
    def next_cursor(self) -> str | None:
        return self.pagination.next if self.pagination else None


@dataclass(frozen=True)
class BranchesCountResponse:
    count: int


@dataclass(frozen=True)
class DatabasesResponse:
    databases: list[Database]


@dataclass(frozen=True)
class DatabaseOperations:
    database: Database
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class RolesResponse:
    roles: list[Role]


@dataclass(frozen=True)
class EndpointsResponse:
    endpoints: list[Endpoint]


@dataclass(frozen=True)
class EndpointOperations:
    endpoint: Endpoint
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class ConnectionURIResponse:
    uri: str = Field(repr=False)  # holds the password


@dataclass(frozen=True)
class OperationResponse:
    operation: Operation


@dataclass(frozen=True)
class OperationsResponse:
    operations: list[Operation]
    pagination: Pagination | None = None

    @property
    def items(self) -> list[Operation]:
        return self.operations

    @property
    def next_cursor(self) -> str | None:
        return self.pagination.cursor if self.pagination else None


@dataclass(frozen=True)
class GeneralError:
    """The body of every error answer."""

    code: str | None = None
    message: str | None = None
    request_id: str | None = None
