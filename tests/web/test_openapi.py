"""The OpenAPI document tells the truth: security, error responses, success codes and constraints, for every
operation the app registers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Generic, TypeVar

import httpx
import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, JSONBody

from core_api.auth.guards import roles
from core_api.web.errors import Conflict, SoldOut
from core_api.web.openapi import OperationDocs, StructSchemas

PROBLEM = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_there_is_a_bearer_scheme_and_every_protected_operation_requires_it(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    security = {(method, path): operation.get("security") for method, path, operation in operations(spec)}
    assert security[("GET", "/api/v1/auth/me")] == [{"bearerAuth": []}]
    assert security[("POST", "/api/v1/bookings")] == [{"bearerAuth": []}]
    # Public operations take a token optionally (and refuse a bad one with 401).
    assert security[("POST", "/api/v1/auth/login")] == [{}, {"bearerAuth": []}]
    # Operations endpoints take the ops token, which loopback clients may leave out.
    assert security[("GET", "/api/v1/health/services")] == [{}, {"opsToken": []}]
    assert spec["components"]["securitySchemes"]["opsToken"]["scheme"] == "bearer"
    assert all(value for value in security.values())


def test_every_error_response_is_a_problem(spec: dict[str, Any]) -> None:
    for method, path, operation in operations(spec):
        errors = {status: response for status, response in operation["responses"].items() if int(status) >= 400}
        assert errors, (method, path)
        assert "400" not in errors, (method, path)
        for status, response in errors.items():
            if (method, path, status) == ("GET", "/api/v1/health/services", "503"):
                continue  # the health report itself, with the failing service marked down
            content = response["content"]
            assert list(content) == [PROBLEM], (method, path, status)
            assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}


def test_error_responses_follow_from_the_route(spec: dict[str, Any]) -> None:
    statuses = {(method, path): set(operation["responses"]) for method, path, operation in operations(spec)}
    # A body: 413, 415, 422. Roles: 403. Not public: 401. Rate limited: 429.
    assert {"401", "403", "413", "415", "422", "429"} <= statuses[("POST", "/api/v1/users")]
    assert {"401", "422", "429"} <= statuses[("GET", "/api/v1/flights/airports")]
    assert "403" not in statuses[("GET", "/api/v1/flights/airports")]
    assert "415" not in statuses[("GET", "/api/v1/users/{id}")]
    assert "429" not in statuses[("GET", "/api/v1/health")]


def test_request_bodies_that_refuse_unknown_fields_say_so(spec: dict[str, Any]) -> None:
    bodies = 0
    for method, path, operation in operations(spec):
        if "requestBody" not in operation:
            continue
        assert list(operation["requestBody"]["content"]) == ["application/json"], (method, path)
        schema = resolve(spec, operation["requestBody"]["content"]["application/json"]["schema"])
        assert schema["additionalProperties"] is False, (method, path)
        bodies += 1
    assert bodies >= 10


def test_nested_constraints_are_documented_exactly(spec: dict[str, Any]) -> None:
    booking = spec["components"]["schemas"]["BookingCreate"]
    seats = next(option for option in booking["properties"]["seats"]["anyOf"] if option.get("type") == "array")
    assert seats["items"]["pattern"] == "^[1-9][0-9]?[A-K]$"
    assert seats["items"]["description"] == "a row number and seat letter, e.g. 14C"
    assert booking["properties"]["flight_id"]["maximum"] == 2**63 - 1
    assert isinstance(booking["properties"]["flight_id"]["minimum"], int)


def test_declared_domain_errors_are_documented(spec: dict[str, Any]) -> None:
    create = spec["paths"]["/api/v1/bookings"]["post"]["responses"]
    assert "`SOLD_OUT`" in create["409"]["description"]
    assert "`SEAT_TAKEN`" in create["409"]["description"]
    assert "`IDEMPOTENCY_KEY_REUSED`" in create["422"]["description"]
    assert "404" in spec["paths"]["/api/v1/bookings/{id}"]["get"]["responses"]
    assert "409" in spec["paths"]["/api/v1/users/{id}"]["delete"]["responses"]


def test_success_codes_are_the_ones_answered(spec: dict[str, Any]) -> None:
    def success(method: str, path: str) -> list[str]:
        return [status for status in spec["paths"][path][method]["responses"] if int(status) < 300]

    assert success("post", "/api/v1/auth/password-reset/request") == ["202"]
    assert success("post", "/api/v1/auth/register") == ["201"]
    assert success("post", "/api/v1/auth/logout") == ["204"]
    assert success("delete", "/api/v1/bookings/{id}") == ["200"]


async def test_password_reset_request_answers_what_is_documented(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/password-reset/request", json={"email": "nobody@example.com"})
    assert response.status_code == 202
    assert response.content == b""


def test_parameter_constraints_are_in_the_schema(spec: dict[str, Any]) -> None:
    def parameter(method: str, path: str, name: str) -> dict[str, Any]:
        return next(p for p in spec["paths"][path][method]["parameters"] if p["name"] == name)

    q = parameter("get", "/api/v1/flights/airports", "q")
    assert q["required"] is True
    assert (q["schema"]["minLength"], q["schema"]["maxLength"]) == (1, 64)
    user_id = parameter("get", "/api/v1/users/{id}", "id")["schema"]
    assert user_id["format"] == "uuid"
    assert user_id["pattern"].startswith("^[0-9a-fA-F]{8}-")
    assert parameter("get", "/api/v1/flights/{id}", "id")["schema"]["pattern"] == "^[1-9][0-9]{0,18}$"
    pnr = parameter("get", "/api/v1/bookings/pnr/{pnr}", "pnr")["schema"]
    assert pnr["pattern"] == "^[A-HJKMNP-Za-hjkmnp-z2-9]{6}$"
    assert parameter("get", "/api/v1/bookings/pnr/{pnr}", "last_name")["required"] is True
    assert parameter("get", "/api/v1/flights/search", "origin")["schema"]["pattern"] == "^[A-Za-z]{3}$"
    assert parameter("get", "/api/v1/users", "page_size")["schema"]["maximum"] == 100
    assert isinstance(parameter("get", "/api/v1/users", "page_size")["schema"]["maximum"], int)
    # A query, path or header value is never JSON null.
    for method, path, operation in operations(spec):
        for declared in operation.get("parameters", []):
            assert "null" not in str(declared["schema"]), (method, path, declared)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/users/3f2c8e1a-6b4d-4c2e-9f1a-0b5d7c9e2a41", "DELETE, GET, OPTIONS, PUT"),
        ("/api/v1/bookings", "GET, OPTIONS, POST"),
        ("/api/v1/flights/42", "GET, OPTIONS, PATCH"),
        ("/api/v1/health", "GET, OPTIONS"),
    ],
)
async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient, path: str, allowed: str) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allowed


T = TypeVar("T")


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern="^[a-z]+$", description="lower-case letters")]


class _Page(msgspec.Struct, Generic[T]):
    items: list[T]
    total: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _Tree(msgspec.Struct):
    children: list[_Tree]


def test_generic_and_recursive_structs_get_their_full_schemas() -> None:
    @get("/page", sync_to_thread=False)
    def page() -> _Page[_Item]:
        return _Page(items=[], total=0)

    @get("/tree", sync_to_thread=False)
    def tree() -> _Tree:
        return _Tree(children=[])

    components = Litestar([page, tree], plugins=[StructSchemas()]).openapi_schema.to_schema()["components"]["schemas"]
    [page_schema] = [schema for name, schema in components.items() if name.startswith("_Page")]
    assert page_schema["properties"]["items"]["items"] == {"$ref": "#/components/schemas/_Item"}
    assert page_schema["properties"]["total"]["maximum"] == 2**63 - 1
    assert components["_Item"]["additionalProperties"] is False
    assert components["_Item"]["properties"]["name"]["pattern"] == "^[a-z]+$"
    assert components["_Tree"]["properties"]["children"]["items"] == {"$ref": "#/components/schemas/_Tree"}


def test_a_route_documents_what_it_declares_and_nothing_litestar_adds() -> None:
    @post("/things/{id:str}", sync_to_thread=False, raises=[NotFoundException, Conflict, SoldOut], opt=roles("ADMIN"))
    def change(id: FromPath[str], data: JSONBody[_Item]) -> _Item:
        return data

    app = Litestar([change], plugins=[StructSchemas(), OperationDocs()], openapi_config=OpenAPIConfig("t", "1"))
    responses = app.openapi_schema.to_schema()["paths"]["/things/{id}"]["post"]["responses"]
    assert sorted(responses) == ["201", "401", "403", "404", "409", "413", "415", "422", "429"]
    assert "`NOT_FOUND`" in responses["404"]["description"]
    assert "`CONFLICT`" in responses["409"]["description"]
    assert "`SOLD_OUT`" in responses["409"]["description"]
    assert "Allowed: ADMIN" in responses["403"]["description"]
    assert all(list(responses[status]["content"]) == [PROBLEM] for status in responses if status != "201")
