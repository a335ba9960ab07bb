"""The OpenAPI document tells the truth: security, error responses, success codes and constraints, for every
operation the app registers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

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
