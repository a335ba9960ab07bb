"""Query, path and header parameters: control characters refused by name, errors named by the wire name."""

from __future__ import annotations

import httpx
import pytest

from tests.support.accounts import Account

PROBLEM = "application/problem+json"


def errors(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()["errors"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/flights/airports?q=lon%00don", "q"),
        ("/api/v1/flights/airports?q=%01", "q"),
        ("/api/v1/bookings/pnr/ABCDEF?last_name=Smi%00th", "last_name"),
        ("/api/v1/bookings/pnr/AB%00DEF?last_name=Smith", "pnr"),
        ("/api/v1/flights/12%00", "id"),
        ("/api/v1/flights/search?origin=JFK&destination=LHR&date=2030-01-01%0A", "date"),
        ("/api/v1/flights/airlines?page=1&ignored=%7F", "ignored"),
    ],
)
async def test_a_control_character_in_a_public_parameter_is_refused_by_name(
    client: httpx.AsyncClient, url: str, field: str
) -> None:
    assert [error["field"] for error in errors(await client.get(url))] == [field]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/users?q=ada%00", "q"),
        ("/api/v1/users/%00", "id"),
        ("/api/v1/bookings/%00", "id"),
        ("/api/v1/bookings?status=%00", "status"),
    ],
)
async def test_a_control_character_in_a_protected_parameter_is_refused_by_name(
    client: httpx.AsyncClient, admin: Account, url: str, field: str
) -> None:
    assert [error["field"] for error in errors(await client.get(url, headers=admin.headers))] == [field]


@pytest.mark.parametrize("key", ["retry\x01", "tab\there", "new\nline"])
async def test_an_idempotency_key_with_a_control_character_is_a_problem_naming_the_header(
    client: httpx.AsyncClient, customer: Account, key: str
) -> None:
    # A server in front may refuse some of these itself; what reaches the app is answered here.
    booking = {"flight_id": 1, "cabin": "ECONOMY", "passengers": []}
    response = await client.post("/api/v1/bookings", json=booking, headers={**customer.headers, "Idempotency-Key": key})
    assert [error["field"] for error in errors(response)] == ["Idempotency-Key"]


async def test_a_parameter_is_blamed_by_its_wire_name(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get("/api/v1/bookings?date=2026-13-01", headers=admin.headers)
    assert errors(response) == [{"field": "date", "message": "must be a date as YYYY-MM-DD"}]
    assert "departure_date" not in response.text


@pytest.mark.parametrize(
    ("url", "field", "message"),
    [
        ("/api/v1/users?role=PILOT", "role", "must be one of CUSTOMER, TRAVEL_AGENT, AIRLINE_AGENT"),
        ("/api/v1/users?page_size=0", "page_size", "must be at least 1"),
        ("/api/v1/users?page=two", "page", "must be an integer"),
        ("/api/v1/users?is_active=maybe", "is_active", "must be true or false"),
    ],
)
async def test_a_refused_parameter_says_what_is_allowed(
    client: httpx.AsyncClient, admin: Account, url: str, field: str, message: str
) -> None:
    [error] = errors(await client.get(url, headers=admin.headers))
    assert error["field"] == field
    assert error["message"].startswith(message)


async def test_a_missing_required_parameter_is_named(client: httpx.AsyncClient) -> None:
    assert errors(await client.get("/api/v1/flights/airports")) == [{"field": "q", "message": "required"}]
