"""Request bodies: application/json only, decoded once and strictly, every bad byte a 422 naming the field."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from core_api.users.schemas import Role
from tests.support.accounts import Account
from tests.web.conftest import AccountOf

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
BOOKINGS = "/api/v1/bookings"
PASSENGER = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10", "type": "ADULT"}


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


def fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in problem(response, 422)["errors"]]


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_a_cross_origin_form_is_refused_before_it_is_parsed(client: httpx.AsyncClient, media_type: str) -> None:
    account = {"email": "mallory@example.com", "password": "correct horse battery", "full_name": "Mallory"}
    sent = await client.post(
        REGISTER,
        content=httpx.Request("POST", "/", json=account).content,
        headers={"content-type": media_type, "origin": "https://evil.example"},
    )
    assert problem(sent, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    # Nothing was registered: the same account can still be created, as JSON.
    assert (await client.post(REGISTER, json=account)).status_code == 201


async def test_every_route_that_takes_a_body_refuses_other_media_types(
    app: Litestar, client: httpx.AsyncClient, account_of: AccountOf
) -> None:
    accounts: dict[Role, Account] = {}
    checked = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if handler.parsed_data_field is None:
                continue
            # A caller the route lets in, so that the media type is what it answers about.
            allowed = handler.opt.get("roles") or {Role.ADMIN}
            role = Role.ADMIN if Role.ADMIN in allowed else Role(sorted(allowed)[0])
            if role not in accounts:
                accounts[role] = await account_of(role)
            path = re.sub(r"\{[^}]+\}", "1", route.path_format)
            response = await client.request(
                method, path, content=b'{"a": 1}', headers={**accounts[role].headers, "content-type": "text/plain"}
            )
            assert problem(response, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE", (method, path)
            checked += 1
    assert checked >= 10


async def test_a_body_without_a_media_type_is_refused(client: httpx.AsyncClient) -> None:
    problem(await client.post(LOGIN, content=b'{"email": "a@b.co", "password": "x"}'), 415)


async def test_json_with_a_utf8_charset_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN,
        content=b'{"email": "nobody@example.com", "password": "wrong"}',
        headers={"content-type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 401
    problem(await client.post(LOGIN, content=b"{}", headers={"content-type": "application/json; charset=latin-1"}), 415)


async def test_an_empty_body_says_a_body_is_required(client: httpx.AsyncClient) -> None:
    body = problem(await client.post(LOGIN, headers=JSON), 422)
    assert body["errors"] == [{"field": "body", "message": "required: a JSON body (application/json)"}]
    assert fields(await client.post(LOGIN)) == ["body"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"email": "a@b.co", "password": ', "malformed JSON"),
        (b'{"email": "\xff\xfe@b.co", "password": "x"}', "not valid UTF-8"),
        (b'{"email": "\\ud800@b.co", "password": "x"}', "malformed JSON"),
        (b"[" * 1000 + b"]" * 1000, "JSON object"),
        (b'{"email": ' + b"[" * 1000 + b"]" * 1000 + b', "password": "x"}', "string"),
        (b'{"unknown": ' + b"[" * 1000 + b"]" * 1000 + b"}", "unknown field"),
    ],
    ids=["truncated", "invalid-utf8", "lone-surrogate", "deep-array", "deep-field", "deep-unknown-field"],
)
async def test_bad_bytes_are_a_422_not_a_500(client: httpx.AsyncClient, content: bytes, says: str) -> None:
    body = problem(await client.post(LOGIN, content=content, headers=JSON), 422)
    assert says in body["detail"]


async def test_nesting_deeper_than_the_decoder_allows_is_a_422() -> None:
    from core_api.users.schemas import UserUpdate
    from core_api.web.bodies import decode_body
    from core_api.web.errors import ValidationFailed

    # No request type nests a value this deep, but a body type with a free-form field would recurse.
    with pytest.raises(ValidationFailed) as refused:
        decode_body(b"[" * 100_000 + b"]" * 100_000, list)
    assert refused.value.errors is not None
    assert refused.value.errors[0].field == "body"
    assert "nested too deeply" in refused.value.errors[0].message
    assert decode_body(b'{"full_name": "Ada"}', UserUpdate).full_name == "Ada"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (LOGIN, {"email": "a\x00@example.com", "password": "x"}, "email"),
        (REGISTER, {"email": "a@example.com", "password": "pass\x00word", "full_name": "Ada"}, "password"),
        ("/api/v1/auth/password-reset/request", {"email": "ada\x00@example.com"}, "email"),
    ],
)
async def test_a_nul_character_is_refused_by_field_name(
    client: httpx.AsyncClient, path: str, body: dict, field: str
) -> None:
    response = await client.post(path, json=body)
    assert fields(response) == [field]
    assert "NUL" in response.json()["errors"][0]["message"]


async def test_a_nul_character_deep_in_a_booking_names_its_path(client: httpx.AsyncClient, customer: Account) -> None:
    booking = {"flight_id": 1, "cabin": "ECONOMY", "passengers": [PASSENGER, {**PASSENGER, "last_name": "Lo\x00ve"}]}
    response = await client.post(BOOKINGS, json=booking, headers=customer.headers)
    assert fields(response) == ["passengers[1].last_name"]


FLIGHT = {
    "airline_code": "BA",
    "flight_number": "BA117",
    "origin": "JFK",
    "destination": "LHR",
    "departure_at": "2030-05-01T18:00:00Z",
    "arrival_at": "2030-05-02T06:00:00Z",
    "fares": [{"cabin": "ECONOMY", "fare_class": "Y", "price": {"amount": 45000, "currency": "USD"}, "seats": 12}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"fares": [{**FLIGHT["fares"][0], "price": {"amount": "450.00", "currency": "USD"}}]},
            "fares[0].price.amount",
        ),
        ({"fares": [{**FLIGHT["fares"][0], "seats": "12"}]}, "fares[0].seats"),
        ({"fares": [{**FLIGHT["fares"][0], "refundable": "true"}]}, "fares[0].refundable"),
        ({"departure_at": 1893520800}, "departure_at"),
        ({"is_admin": True}, "is_admin"),
    ],
    ids=["decimal-string-amount", "numeric-string-seats", "string-bool", "epoch-datetime", "unknown-field"],
)
async def test_values_of_another_json_type_are_not_coerced(
    client: httpx.AsyncClient, admin: Account, change: dict, field: str
) -> None:
    response = await client.post("/api/v1/flights", json={**FLIGHT, **change}, headers=admin.headers)
    assert fields(response) == [field]


async def test_an_unknown_field_is_named_with_the_fields_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post(LOGIN, json={"email": "a@b.co", "password": "x", "role": "ADMIN"})
    assert problem(response, 422)["errors"] == [{"field": "role", "message": "unknown field; allowed: email, password"}]


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"passengers": [{**PASSENGER, "first_name": "R2D2"}]}, "passengers[0].first_name", "letters, spaces, hyphens"),
        ({"passengers": [PASSENGER], "seats": ["14Z"]}, "seats[0]", "row number and seat letter, e.g. 14C"),
        ({"passengers": [PASSENGER], "cabin": "COACH"}, "cabin", "one of ECONOMY, PREMIUM_ECONOMY, BUSINESS, FIRST"),
        ({"passengers": []}, "passengers", "at least 1 item"),
    ],
    ids=["name", "seat", "enum", "empty-list"],
)
async def test_a_refused_value_says_what_is_allowed(
    client: httpx.AsyncClient, customer: Account, change: dict, field: str, says: str
) -> None:
    booking = {"flight_id": 1, "cabin": "ECONOMY", **change}
    response = await client.post(BOOKINGS, json=booking, headers=customer.headers)
    [error] = problem(response, 422)["errors"]
    assert error["field"] == field
    assert says in error["message"]
    assert "regex" not in response.text


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
async def test_a_time_that_cannot_be_moved_to_utc_is_a_422(
    client: httpx.AsyncClient, admin: Account, instant: str
) -> None:
    response = await client.post("/api/v1/flights", json={**FLIGHT, "departure_at": instant}, headers=admin.headers)
    assert problem(response, 422)["errors"] == [
        {"field": "departure_at", "message": "must be an instant between years 1 and 9999 in UTC"}
    ]
    response = await client.patch("/api/v1/flights/1", json={"arrival_at": instant}, headers=admin.headers)
    assert fields(response) == ["arrival_at"]
