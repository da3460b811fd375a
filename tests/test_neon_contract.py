"""The Neon client's requests, checked against Neon's published OpenAPI document.

Every public NeonClient method runs against an in-process MockTransport that answers with
small bodies valid for the document. Each request the client sends is then validated with
openapi-core (path template, method, parameters, JSON body, bearer auth), and checked more
strictly than the document does: no query parameter and no body property that the document
does not declare. The canned answers are validated too, so the client is known to parse
answers of the documented shape. A new public method without a scenario here fails
`test_every_public_method_has_a_contract_scenario`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from bot.neon import NeonClient, Operation

SPEC_PATH = Path(__file__).parent / "contracts" / "neon-public-v2.yaml"
BASE_URL = "https://console.neon.tech/api/v2"
API_KEY = "contract-test-key"
PROJECT = "shiny-wind-028834"
OP_1 = "a07f8772-1877-4da9-a939-3a3ae62d1d8d"
OP_2 = "b6afbc21-2990-4a76-980b-b57d8c2948f2"
STAMP = "2026-01-13T14:25:00Z"

NO_REQUEST_METHODS = frozenset({"close"})


# ----------------------------------------------------------------------------- the document


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 would turn unquoted timestamps into datetimes; JSON Schema wants strings."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _string_keys(node: Any) -> Any:
    # Response codes (`200:`) load as ints; OpenAPI wants them as strings.
    if isinstance(node, dict):
        return {str(key): _string_keys(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_string_keys(value) for value in node]
    return node


@dataclass
class Contract:
    document: dict[str, Any]
    openapi: OpenAPI
    templates: list[tuple[re.Pattern[str], str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for template in self.document["paths"]:
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self.templates.append((re.compile(f"^{pattern}$"), template, template.count("{")))

    def template_for(self, path: str) -> str:
        """The path template a request path matches (literal segments win over variables)."""
        relative = path.removeprefix("/api/v2")
        matches = [(params, template) for regex, template, params in self.templates
                   if regex.match(relative)]
        assert matches, f"{path} matches no path of the Neon API document"
        return min(matches)[1]

    def operation(self, method: str, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        item = self.document["paths"][self.template_for(path)]
        assert method.lower() in item, f"{method} {path}: the document has no such operation"
        return item, item[method.lower()]

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def declared_query(self, method: str, path: str) -> set[str]:
        item, operation = self.operation(method, path)
        parameters = [self.resolve(p) for p in item.get("parameters", []) +
                      operation.get("parameters", [])]
        return {p["name"] for p in parameters if p["in"] == "query"}

    def _properties(self, schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(declared properties, whether any are declared at all) of an object schema."""
        schema = self.resolve(schema)
        properties = dict(schema.get("properties", {}))
        open_ended = bool(schema.get("additionalProperties"))
        for key in ("allOf", "oneOf", "anyOf"):
            for part in schema.get(key, []):
                more, more_open = self._properties(part)
                properties.update(more)
                open_ended = open_ended or more_open
        return properties, open_ended

    def undeclared_properties(self, schema: dict[str, Any], value: Any,
                              where: str = "body") -> list[str]:
        schema = self.resolve(schema)
        found: list[str] = []
        if isinstance(value, dict):
            properties, open_ended = self._properties(schema)
            for key, item in value.items():
                if key in properties:
                    found += self.undeclared_properties(properties[key], item, f"{where}.{key}")
                elif not open_ended:
                    found.append(f"{where}.{key}")
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                found += self.undeclared_properties(schema["items"], item, f"{where}[{index}]")
        return found

    def body_schema(self, method: str, path: str) -> dict[str, Any] | None:
        _, operation = self.operation(method, path)
        body = operation.get("requestBody")
        if body is None:
            return None
        return self.resolve(body)["content"]["application/json"]["schema"]


@pytest.fixture(scope="module")
def contract() -> Contract:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        document = _string_keys(yaml.load(handle, Loader=_SpecLoader))
    return Contract(document, OpenAPI.from_dict(document))


# --------------------------------------------------------------- openapi-core adapters


class OpenAPIRequest:
    """httpx.Request as openapi-core's Request protocol."""

    def __init__(self, request: httpx.Request) -> None:
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.method = request.method.lower()
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("Content-Type", "application/json").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class OpenAPIResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = Headers(list(response.headers.items()))
        self.content_type = response.headers.get("Content-Type", "application/json").lower()
        self.data: bytes | None = response.content


# --------------------------------------------------------------- minimal valid answers


def branch(branch_id: str = "br-aged-salad-637688", name: str = "main", **extra: Any
           ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": branch_id, "project_id": PROJECT, "name": name, "current_state": "ready",
        "state_changed_at": STAMP, "creation_source": "console", "created_at": STAMP,
        "updated_at": STAMP, "default": name == "main", "protected": False, "cpu_used_sec": 0,
        "active_time_seconds": 0, "compute_time_seconds": 0, "written_data_bytes": 0,
        "data_transfer_bytes": 0,
    }
    body.update(extra)
    return body


def operation(op_id: str = OP_1, status: str = "finished", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": op_id, "project_id": PROJECT, "branch_id": "br-aged-salad-637688",
        "action": "create_branch", "status": status, "failures_count": 0, "created_at": STAMP,
        "updated_at": STAMP, "total_duration_ms": 100,
    }
    body.update(extra)
    return body


def endpoint(branch_id: str = "br-aged-salad-637688") -> dict[str, Any]:
    return {
        "host": "ep-shrill-thunder-454069.us-east-2.aws.neon.tech",
        "id": "ep-shrill-thunder-454069", "project_id": PROJECT, "branch_id": branch_id,
        "autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 1,
        "region_id": "aws-us-east-2", "type": "read_write", "current_state": "init",
        "settings": {"pg_settings": {}}, "pooler_enabled": False, "pooler_mode": "transaction",
        "disabled": False, "passwordless_access": True, "created_at": STAMP,
        "updated_at": STAMP, "proxy_host": "us-east-2.aws.neon.tech",
        "creation_source": "console", "suspend_timeout_seconds": 0, "provisioner": "k8s-neonvm",
    }


def project() -> dict[str, Any]:
    return {
        "consumption_period_start": STAMP, "consumption_period_end": STAMP,
        "active_time_seconds": 0, "compute_time_seconds": 0, "written_data_bytes": 0,
        "data_transfer_bytes": 0, "data_storage_bytes_hour": 0, "id": PROJECT,
        "platform_id": "aws", "region_id": "aws-us-east-2", "name": "shop", "pg_version": 17,
        "proxy_host": "us-east-2.aws.neon.tech", "branch_logical_size_limit": 512,
        "branch_logical_size_limit_bytes": 536870912, "store_passwords": True,
        "cpu_used_sec": 0, "provisioner": "k8s-neonvm", "creation_source": "console",
        "history_retention_seconds": 86400, "created_at": STAMP, "updated_at": STAMP,
        "owner_id": "owner-1", "settings": {"quota": {"logical_size_bytes": 0}},
    }


def role() -> dict[str, Any]:
    return {"branch_id": "br-aged-salad-637688", "name": "casey", "protected": False,
            "created_at": STAMP, "updated_at": STAMP}


def database() -> dict[str, Any]:
    return {"id": 834686, "branch_id": "br-aged-salad-637688", "name": "neondb",
            "owner_name": "casey", "created_at": STAMP, "updated_at": STAMP}


class FakeApi:
    """Answers by operationId; `lose_next_create` drops the answer to one create."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []
        self.lose_next_create = False
        self.created: dict[str, Any] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        _, spec_operation = self.contract.operation(request.method, request.url.path)
        operation_id = spec_operation["operationId"]
        if operation_id == "createProjectBranch" and self.lose_next_create:
            self.lose_next_create = False
            payload = json.loads(request.content)
            self.created = branch("br-icy-dream-250089", payload["branch"]["name"],
                                  default=False)
            self.exchanges.append((request, httpx.Response(201)))  # the answer that was lost
            raise httpx.ReadTimeout("timed out", request=request)
        status, body = self.answer(operation_id, request)
        response = httpx.Response(status, json=body, request=request)
        self.exchanges.append((request, response))
        return response

    def answer(self, operation_id: str, request: httpx.Request) -> tuple[int, dict[str, Any]]:
        params = request.url.params
        if operation_id == "getProject":
            return 200, {"project": project()}
        if operation_id == "listProjectBranches":
            if self.created is not None:
                return 200, {"branches": [self.created], "annotations": {}}
            if params.get("cursor") is None:
                return 200, {"branches": [branch("br-sweet-breeze-497520", "dev")],
                             "annotations": {},
                             "pagination": {"next": "eyJjcmVhdGV", "sort_by": "created_at",
                                            "sort_order": "desc"}}
            return 200, {"branches": [branch()], "annotations": {}}
        if operation_id == "countProjectBranches":
            return 200, {"count": 2}
        if operation_id == "getProjectBranch":
            return 200, {"branch": branch(), "annotation": {
                "object": {"type": "console/branch", "id": "br-aged-salad-637688"},
                "value": {}}}
        if operation_id == "createProjectBranch":
            payload = json.loads(request.content) if request.content else {}
            name = payload.get("branch", {}).get("name", "br-new")
            body: dict[str, Any] = {
                "branch": branch("br-icy-dream-250089", name, current_state="init"),
                "endpoints": [endpoint("br-icy-dream-250089")] if payload.get("endpoints")
                else [],
                "operations": [operation(OP_1, "running")],
                "roles": [role()], "databases": [database()],
            }
            return 201, body
        if operation_id in ("deleteProjectBranch", "restoreProjectBranch"):
            return 200, {"branch": branch(), "operations": [operation(OP_2, "running")]}
        if operation_id == "listProjectBranchDatabases":
            return 200, {"databases": [database()]}
        if operation_id in ("createProjectBranchDatabase", "deleteProjectBranchDatabase"):
            status = 201 if operation_id == "createProjectBranchDatabase" else 200
            return status, {"database": database(),
                            "operations": [operation(OP_2, "running", action="apply_config")]}
        if operation_id == "listProjectBranchRoles":
            return 200, {"roles": [role()]}
        if operation_id == "listProjectEndpoints":
            return 200, {"endpoints": [endpoint()]}
        if operation_id == "createProjectEndpoint":
            return 201, {"endpoint": endpoint(), "operations": [operation(OP_2, "running")]}
        if operation_id == "getConnectionURI":
            return 200, {"uri": "postgresql://casey:mypass@ep-x.aws.neon.tech/neondb"}
        if operation_id == "getProjectOperation":
            return 200, {"operation": operation(request.url.path.rsplit("/", 1)[-1])}
        if operation_id == "listProjectOperations":
            if params.get("cursor") is None:
                return 200, {"operations": [operation(OP_1)], "pagination": {"cursor": "k1"}}
            return 200, {"operations": [operation(OP_2)], "pagination": {"cursor": "k2"}}
        raise AssertionError(f"the client called {operation_id}, which this fake does not know")


# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    method: str  # the NeonClient method exercised
    run: Callable[[NeonClient, FakeApi], object]
    operation_ids: frozenset[str]  # the Neon operations it must call, and only those


def _lost_create(client: NeonClient, api: FakeApi) -> object:
    api.lose_next_create = True
    change = client.create_branch("backup-20260113-142500")
    assert change.branch.name == "backup-20260113-142500" and change.operations == ()
    return change


AT = datetime(2026, 1, 13, 14, 25, tzinfo=UTC)
FINISHED = Operation(OP_2, "create_branch", "running", AT, AT)

SCENARIOS: dict[str, Scenario] = {
    "get_project": Scenario("get_project", lambda c, a: c.get_project(),
                            frozenset({"getProject"})),
    "list_branches": Scenario("list_branches", lambda c, a: c.list_branches(),
                              frozenset({"listProjectBranches"})),
    "list_branches[search]": Scenario("list_branches", lambda c, a: c.list_branches("backup-"),
                                      frozenset({"listProjectBranches"})),
    "count_branches": Scenario("count_branches", lambda c, a: c.count_branches(),
                               frozenset({"countProjectBranches"})),
    "get_branch": Scenario("get_branch", lambda c, a: c.get_branch("br-aged-salad-637688"),
                           frozenset({"getProjectBranch"})),
    "find_branch_by_name": Scenario("find_branch_by_name",
                                    lambda c, a: c.find_branch_by_name("main"),
                                    frozenset({"listProjectBranches"})),
    "default_branch": Scenario("default_branch", lambda c, a: c.default_branch(),
                               frozenset({"listProjectBranches"})),
    "create_branch": Scenario("create_branch", lambda c, a: c.create_branch("backup-1"),
                              frozenset({"createProjectBranch"})),
    "create_branch[all options]": Scenario(
        "create_branch",
        lambda c, a: c.create_branch("restore-r1", parent_id="br-aged-salad-637688",
                                     parent_timestamp=AT, expires_at=AT, protected=True,
                                     with_endpoint=True),
        frozenset({"createProjectBranch"})),
    "create_branch[answer lost]": Scenario("create_branch", _lost_create,
                                           frozenset({"createProjectBranch",
                                                      "listProjectBranches"})),
    "delete_branch": Scenario("delete_branch",
                              lambda c, a: c.delete_branch("br-sweet-breeze-497520"),
                              frozenset({"deleteProjectBranch"})),
    "restore_branch[from another branch]": Scenario(
        "restore_branch",
        lambda c, a: c.restore_branch("br-aged-salad-637688",
                                      source_branch_id="br-sweet-breeze-497520"),
        frozenset({"restoreProjectBranch"})),
    "restore_branch[own history, preserved]": Scenario(
        "restore_branch",
        lambda c, a: c.restore_branch("br-aged-salad-637688",
                                      source_branch_id="br-aged-salad-637688",
                                      source_timestamp=AT,
                                      preserve_under_name="pre-restore-20260113-142500"),
        frozenset({"restoreProjectBranch"})),
    "wait_for_branch_ready": Scenario(
        "wait_for_branch_ready", lambda c, a: c.wait_for_branch_ready("br-aged-salad-637688"),
        frozenset({"getProjectBranch"})),
    "list_databases": Scenario("list_databases",
                               lambda c, a: c.list_databases("br-aged-salad-637688"),
                               frozenset({"listProjectBranchDatabases"})),
    "create_database": Scenario(
        "create_database", lambda c, a: c.create_database("br-aged-salad-637688", "neondb",
                                                          "casey"),
        frozenset({"createProjectBranchDatabase"})),
    "delete_database": Scenario(
        "delete_database", lambda c, a: c.delete_database("br-aged-salad-637688", "it's db"),
        frozenset({"deleteProjectBranchDatabase"})),
    "list_roles": Scenario("list_roles", lambda c, a: c.list_roles("br-aged-salad-637688"),
                           frozenset({"listProjectBranchRoles"})),
    "list_endpoints": Scenario("list_endpoints", lambda c, a: c.list_endpoints(),
                               frozenset({"listProjectEndpoints"})),
    "create_endpoint": Scenario("create_endpoint",
                                lambda c, a: c.create_endpoint("br-aged-salad-637688"),
                                frozenset({"createProjectEndpoint"})),
    "create_endpoint[read_only]": Scenario(
        "create_endpoint", lambda c, a: c.create_endpoint("br-aged-salad-637688", "read_only"),
        frozenset({"createProjectEndpoint"})),
    "connection_uri": Scenario(
        "connection_uri",
        lambda c, a: c.connection_uri("br-aged-salad-637688", "neondb", "casey"),
        frozenset({"getConnectionURI"})),
    "connection_uri[endpoint]": Scenario(
        "connection_uri",
        lambda c, a: c.connection_uri("br-aged-salad-637688", "neondb", "casey",
                                      endpoint_id="ep-cool-darkness-123456"),
        frozenset({"getConnectionURI"})),
    "connection_uri[pooled]": Scenario(
        "connection_uri",
        lambda c, a: c.connection_uri("br-aged-salad-637688", "neondb", "casey", pooled=True),
        frozenset({"getConnectionURI"})),
    "get_operation": Scenario("get_operation", lambda c, a: c.get_operation(OP_1),
                              frozenset({"getProjectOperation"})),
    "list_operations": Scenario("list_operations", lambda c, a: c.list_operations(),
                                frozenset({"listProjectOperations"})),
    "list_operations[limit]": Scenario("list_operations", lambda c, a: c.list_operations(1),
                                       frozenset({"listProjectOperations"})),
    "wait_for_operations": Scenario("wait_for_operations",
                                    lambda c, a: c.wait_for_operations([OP_1, FINISHED]),
                                    frozenset({"getProjectOperation"})),
}


def public_methods() -> set[str]:
    return {name for name, member in inspect.getmembers(NeonClient, inspect.isfunction)
            if not name.startswith("_")}


def test_every_public_method_has_a_contract_scenario() -> None:
    exercised = {scenario.method for scenario in SCENARIOS.values()}
    assert exercised | NO_REQUEST_METHODS == public_methods()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_requests_follow_the_openapi_document(contract: Contract, name: str) -> None:
    scenario = SCENARIOS[name]
    api = FakeApi(contract)
    client = NeonClient(API_KEY, PROJECT, base_url=BASE_URL, transport=httpx.MockTransport(api),
                        sleep=lambda seconds: None, poll_interval=0.0)
    with client:
        scenario.run(client, api)
    assert api.exchanges, f"{name} sent no request"

    called: set[str] = set()
    for request, response in api.exchanges:
        described = f"{request.method} {request.url}"
        _, spec_operation = contract.operation(request.method, request.url.path)
        called.add(spec_operation["operationId"])

        openapi_request = OpenAPIRequest(request)
        contract.openapi.validate_request(openapi_request)

        undeclared = set(request.url.params.keys()) - contract.declared_query(
            request.method, request.url.path)
        assert not undeclared, f"{described}: query parameters not in the document: {undeclared}"

        schema = contract.body_schema(request.method, request.url.path)
        if request.content:
            assert schema is not None, f"{described}: sends a body the document does not take"
            assert request.headers["Content-Type"] == "application/json"
            extra = contract.undeclared_properties(schema, json.loads(request.content))
            assert not extra, f"{described}: body properties not in the document: {extra}"

        if response.content:  # the answers the client parsed are valid for the document too
            contract.openapi.validate_response(openapi_request, OpenAPIResponse(response))

    assert called == scenario.operation_ids


def test_the_contract_check_catches_a_wrong_request(contract: Contract) -> None:
    """The checks above are not vacuous: a request off the document is refused."""
    wrong_body = httpx.Request("POST", f"{BASE_URL}/projects/{PROJECT}/branches/br-a-1/restore",
                               json={"preserve_under_name": "x"},
                               headers={"Authorization": "Bearer k"})
    with pytest.raises(Exception, match=r"(?i)source_branch_id|required|body"):
        contract.openapi.validate_request(OpenAPIRequest(wrong_body))
    bad_id = httpx.Request("GET", f"{BASE_URL}/projects/{PROJECT}/operations/not-a-uuid",
                           headers={"Authorization": "Bearer k"})
    with pytest.raises(Exception):  # noqa: B017 (openapi-core's error type varies by version)
        contract.openapi.validate_request(OpenAPIRequest(bad_id))
    assert contract.undeclared_properties(
        contract.body_schema("PATCH", f"/api/v2/projects/{PROJECT}/branches/br-a-1") or {},
        {"branch": {"name": "x", "colour": "red"}}) == ["body.branch.colour"]
    assert "sort" not in contract.declared_query("GET", f"/api/v2/projects/{PROJECT}/branches")
