"""What every response of the API shell carries: problem+json errors, request ids, security headers, docs."""

import json
import logging
import re

import httpx
import pytest
from litestar import Litestar, post
from litestar.params import JSONBody

from core_api.app import SWAGGER_ASSETS
from core_api.log import JsonFormatter
from core_api.users.schemas import Role
from core_api.web.bodies import StrictJSON, require_json_body
from core_api.web.errors import exception_handlers
from core_api.web.middleware import RequestContextMiddleware
from core_api.web.parameters import check_parameters
from tests.support.asgi import serve_in_loop

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/nothing-here", "/nothing", "/api/nothing"):
        assert_problem(await client.get(path), 404, "NOT_FOUND")


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/health")
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_every_response_has_a_request_id_and_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/health", "/api/v1/nothing-here"):
        response = await client.get(path)
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_incoming_request_id_is_kept_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health", headers={"X-Request-ID": "edge-7f3a.1"})
    assert response.headers["x-request-id"] == "edge-7f3a.1"
    response = await client.get("/api/v1/health", headers={"X-Request-ID": "bad id\twith junk" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_cors_allows_only_listed_origins(client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = await client.options("/api/v1/health", headers={"Origin": "http://localhost:8501", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:8501"
    refused = await client.options("/api/v1/health", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    assert "x-request-id" in refused.headers


async def test_large_responses_are_compressed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/openapi.json", headers={"Accept-Encoding": "br"})
    assert response.headers["content-encoding"] == "br"
    response = await client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["info"]["title"] == "Flightdesk API"


async def test_docs_work_offline(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets
    assert not [url for url in assets if url.startswith(("http://", "https://", "//"))]
    for url in assets:
        assert url.startswith(SWAGGER_ASSETS)
        assert (await client.get(url)).status_code == 200
    assert "'unsafe-inline'" in page.headers["content-security-policy"]
    spec = (await client.get("/api/openapi.json")).json()
    assert "/api/v1/health/services" in spec["paths"]


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "flightdesk_request_duration_seconds_bucket" in response.text
    assert 'path="/api/v1/health"' in response.text


# The error mapping on a handler that takes input, with the app's own exception handlers and outer middleware.
@post("/echo", sync_to_thread=False)
def echo(data: JSONBody[dict[str, int]]) -> dict[str, int]:
    return data


@post("/register", sync_to_thread=False)
def register(data: JSONBody["RegisterBody"]) -> dict[str, str]:
    return {"email": data.email}


import msgspec  # noqa: E402


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    age: int
    role: Role = Role.CUSTOMER


@post("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("database password is hunter2")


@pytest.fixture
async def echo_client() -> httpx.AsyncClient:
    app = Litestar(
        [echo, register, boom],
        exception_handlers=exception_handlers(),
        dto=StrictJSON,
        return_dto=None,
        guards=[check_parameters, require_json_body],
        request_max_body_size=2048,
        logging_config=None,
    )
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    async with serve_in_loop(app) as test_client:
        yield test_client


async def test_wrong_type_names_the_field(echo_client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await echo_client.post("/register", json={"email": "a@b.co", "age": "old"}), 400 + 22, "VALIDATION_ERROR"
    )
    assert [error["field"] for error in body["errors"]] == ["age"]


async def test_unknown_field_is_rejected_by_name(echo_client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await echo_client.post("/register", json={"email": "a@b.co", "age": 3, "is_admin": True}),
        422,
        "VALIDATION_ERROR",
    )
    assert "is_admin" in body["detail"]


async def test_malformed_json_is_a_problem(echo_client: httpx.AsyncClient) -> None:
    response = await echo_client.post("/echo", content=b"{not json", headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "body"


async def test_oversized_body_is_413(echo_client: httpx.AsyncClient) -> None:
    response = await echo_client.post(
        "/echo", content=b'{"a": 1' + b" " * 5000 + b"}", headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_internal_error_hides_internals(echo_client: httpx.AsyncClient) -> None:
    response = await echo_client.post("/boom")
    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert body["detail"] == "An unexpected error occurred."


async def test_log_lines_are_json_and_carry_the_request_id(echo_client: httpx.AsyncClient) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        response = await echo_client.post("/boom", headers={"Authorization": "Bearer secret-token"})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    entries = [json.loads(line) for line in lines]
    request_id = response.headers["x-request-id"]
    error = next(entry for entry in entries if entry["level"] == "ERROR")
    access = next(entry for entry in entries if entry["logger"] == "flightdesk.access")
    assert error["request_id"] == request_id
    assert access["request_id"] == request_id
    assert access["status"] == 500
    assert "secret-token" not in "".join(lines)
