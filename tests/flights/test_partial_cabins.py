"""Selling part of a cabin: a new flight's fares of a cabin hold at most the seats the cabin has; the seats no fare
covers are BLOCKED in its seat map (the back rows of the cabin), and bookings can take neither more seats than the
fares hold nor a BLOCKED seat. ``GET /flights/aircraft`` says what each type holds.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.seed.aircraft import AIRCRAFT
from core_api.users.schemas import Role
from tests.support.accounts import Account, MakeAccount

DEPARTURE = (datetime.now(UTC) + timedelta(days=20)).replace(hour=9, minute=30, second=0, microsecond=0)
CABIN_ORDER = ["FIRST", "BUSINESS", "PREMIUM_ECONOMY", "ECONOMY"]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def fare(cabin: str, fare_class: str, seats: int, amount: int = 10000) -> dict[str, Any]:
    return {"cabin": cabin, "fare_class": fare_class, "price": {"amount": amount, "currency": "GBP"}, "seats": seats}


def a320_flight(*fares: dict[str, Any]) -> dict[str, Any]:
    """BA987 LHR-CDG on an A320: 12 BUSINESS seats (rows 1-3), 162 ECONOMY (rows 4-30)."""
    return {
        "airline_code": "BA",
        "flight_number": "BA987",
        "origin": "LHR",
        "destination": "CDG",
        "departure_at": iso(DEPARTURE),
        "arrival_at": iso(DEPARTURE + timedelta(minutes=75)),
        "aircraft": "A320",
        "fares": list(fares),
    }


async def create(client: httpx.AsyncClient, admin: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/flights", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


def seats_of(seat_map: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    """(cabin, row, seat number, status) of every seat, in map order."""
    return [
        (cabin["cabin"], row["row"], seat["seat_no"], seat["status"])
        for cabin in seat_map["cabins"]
        for row in cabin["rows"]
        for seat in row["seats"]
    ]


async def test_fares_may_sell_part_of_each_cabin_and_the_rest_is_blocked_from_the_back(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account
) -> None:
    body = a320_flight(fare("BUSINESS", "J", 8), fare("ECONOMY", "Y", 40), fare("ECONOMY", "K", 60))

    flight = await create(client, admin, body)

    assert sorted((f["cabin"], f["fare_class"], f["seats_total"]) for f in flight["fares"]) == [
        ("BUSINESS", "J", 8),
        ("ECONOMY", "K", 60),
        ("ECONOMY", "Y", 40),
    ]
    seats = seats_of(flight["seat_map"])
    assert len(seats) == len(AIRCRAFT["A320"].seats)
    assert Counter((cabin, status) for cabin, _, _, status in seats) == {
        ("BUSINESS", "AVAILABLE"): 8,
        ("BUSINESS", "BLOCKED"): 4,
        ("ECONOMY", "AVAILABLE"): 100,
        ("ECONOMY", "BLOCKED"): 62,
    }
    for cabin in ("BUSINESS", "ECONOMY"):
        statuses = [status for seat_cabin, _, _, status in seats if seat_cabin == cabin]
        assert statuses == sorted(statuses), f"{cabin}: the sellable seats are the front ones, the blocked the back"
    # The seat map read back, and the rows stored, say the same.
    assert seats_of((await client.get(f"/api/v1/flights/{flight['id']}/seats")).json()) == seats
    async with pool.connection() as conn:
        stored = await (
            await conn.execute(
                "SELECT cabin, status, count(*) AS n FROM seats WHERE flight_id = %s GROUP BY cabin, status",
                (flight["id"],),
            )
        ).fetchall()
    assert {(row["cabin"], row["status"]): row["n"] for row in stored} == {
        ("BUSINESS", "AVAILABLE"): 8,
        ("BUSINESS", "BLOCKED"): 4,
        ("ECONOMY", "AVAILABLE"): 100,
        ("ECONOMY", "BLOCKED"): 62,
    }


async def test_a_cabin_without_fares_is_blocked_entirely(client: httpx.AsyncClient, admin: Account) -> None:
    flight = await create(client, admin, a320_flight(fare("ECONOMY", "Y", 162)))

    statuses = Counter((cabin, status) for cabin, _, _, status in seats_of(flight["seat_map"]))
    assert statuses == {("BUSINESS", "BLOCKED"): 12, ("ECONOMY", "AVAILABLE"): 162}
    assert [f["cabin"] for f in flight["fares"]] == ["ECONOMY"]


@pytest.mark.parametrize(
    ("fares", "field", "words"),
    [
        pytest.param([fare("BUSINESS", "J", 13), fare("ECONOMY", "Y", 10)], "fares[0].seats",
                     ["13", "12 BUSINESS"], id="one fare beyond its cabin"),
        pytest.param([fare("ECONOMY", "Y", 100), fare("BUSINESS", "J", 1), fare("ECONOMY", "K", 63)],
                     "fares[2].seats", ["163", "162 ECONOMY"], id="the fare that overfills its cabin"),
        pytest.param([fare("ECONOMY", "Y", 10), fare("FIRST", "F", 1)], "fares[1].cabin", ["no FIRST"],
                     id="a cabin the aircraft lacks"),
        pytest.param([fare("PREMIUM_ECONOMY", "W", 0)], "fares[0].cabin", ["no PREMIUM_ECONOMY"],
                     id="a cabin the aircraft lacks, even with no seats"),
    ],
)  # fmt: skip
async def test_fares_beyond_a_cabin_or_for_a_missing_cabin_are_422_naming_the_fare(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    fares: list[dict[str, Any]],
    field: str,
    words: list[str],
) -> None:
    response = await client.post("/api/v1/flights", json=a320_flight(*fares), headers=admin.headers)

    assert response.status_code == 422, response.text
    errors = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert list(errors) == [field]
    assert all(word in errors[field] for word in words), errors
    async with pool.connection() as conn:
        found = await (await conn.execute("SELECT 1 FROM flights WHERE flight_number = 'BA987'")).fetchall()
    assert found == []


# Booking against a partly sold cabin ----------------------------------------------------------------------------


@pytest.fixture
async def customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


def booking(flight: dict[str, Any], travellers: int, seats: list[str] | None = None) -> dict[str, Any]:
    passengers = [
        {"first_name": "Ann", "last_name": f"Example{'abcdefghi'[n]}", "date_of_birth": "1985-04-02", "type": "ADULT"}
        for n in range(travellers)
    ]
    body: dict[str, Any] = {"flight_id": flight["id"], "cabin": "ECONOMY", "passengers": passengers}
    if seats is not None:
        body["seats"] = seats
    return body


async def seat_and_fare_counts(pool: AsyncConnectionPool, flight_id: int) -> tuple[dict[str, int], int]:
    async with pool.connection() as conn:
        statuses = await (
            await conn.execute(
                "SELECT status, count(*) AS n FROM seats WHERE flight_id = %s AND cabin = 'ECONOMY' GROUP BY status",
                (flight_id,),
            )
        ).fetchall()
        left = await (
            await conn.execute(
                "SELECT sum(seats_available) AS n FROM flight_prices WHERE flight_id = %s AND cabin = 'ECONOMY'",
                (flight_id,),
            )
        ).fetchone()
    assert left is not None
    return {row["status"]: row["n"] for row in statuses}, int(left["n"])


async def test_bookings_take_only_the_fares_seats_and_only_available_seats_of_a_partly_sold_cabin(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account
) -> None:
    flight = await create(client, admin, a320_flight(fare("ECONOMY", "Y", 3)))
    statuses = {seat_no: status for cabin, _, seat_no, status in seats_of(flight["seat_map"]) if cabin == "ECONOMY"}
    available = [seat_no for seat_no, status in statuses.items() if status == "AVAILABLE"]
    blocked = [seat_no for seat_no, status in statuses.items() if status == "BLOCKED"]
    assert (len(available), len(blocked)) == (3, 159)
    bookings = "/api/v1/bookings"

    refused = await client.post(bookings, json=booking(flight, 1, [blocked[0]]), headers=customer.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "SEAT_TAKEN"
    assert await seat_and_fare_counts(pool, flight["id"]) == ({"AVAILABLE": 3, "BLOCKED": 159}, 3)

    seated = await client.post(bookings, json=booking(flight, 2, available[:2]), headers=customer.headers)
    assert seated.status_code == 201, seated.text
    assert seated.json()["seats"] == available[:2]
    too_many = await client.post(bookings, json=booking(flight, 2), headers=customer.headers)
    assert too_many.status_code == 409
    assert too_many.json()["code"] == "SOLD_OUT"
    last = await client.post(bookings, json=booking(flight, 1), headers=customer.headers)
    assert last.status_code == 201, last.text
    sold_out = await client.post(bookings, json=booking(flight, 1, [available[2]]), headers=customer.headers)
    assert sold_out.status_code == 409
    assert sold_out.json()["code"] == "SOLD_OUT"

    # The last traveller chose no seat: one stays AVAILABLE for them; blocked seats never changed.
    assert await seat_and_fare_counts(pool, flight["id"]) == ({"AVAILABLE": 1, "HELD": 2, "BLOCKED": 159}, 0)
    changed = await client.patch(
        f"{bookings}/{last.json()['id']}", json={"seats": [blocked[-1]]}, headers=customer.headers
    )
    assert changed.status_code == 409
    assert changed.json()["code"] == "SEAT_TAKEN"
    moved = await client.patch(
        f"{bookings}/{last.json()['id']}", json={"seats": [available[2]]}, headers=customer.headers
    )
    assert moved.status_code == 200, moved.text
    assert await seat_and_fare_counts(pool, flight["id"]) == ({"HELD": 3, "BLOCKED": 159}, 0)


# GET /flights/aircraft ---------------------------------------------------------------------------------------------


async def test_aircraft_lists_every_type_with_its_seats_per_cabin_without_logging_in(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/flights/aircraft")

    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["page"], page["page_size"]) == (len(AIRCRAFT), 1, 100)
    assert [item["type"] for item in page["items"]] == sorted(AIRCRAFT)
    for item in page["items"]:
        aircraft = AIRCRAFT[item["type"]]
        assert item["wide_body"] is aircraft.wide_body
        assert item["seats"] == len(aircraft.seats)
        assert [(cabin["cabin"], cabin["seats"]) for cabin in item["cabins"]] == [
            (cabin.value, seats) for cabin, seats in aircraft.seats_per_cabin.items()
        ]
        assert [cabin["cabin"] for cabin in item["cabins"]] == sorted(
            (cabin["cabin"] for cabin in item["cabins"]), key=CABIN_ORDER.index
        )
        rows = {
            cabin.value: sorted({seat.row_no for seat in aircraft.seats if seat.cabin == cabin})
            for cabin in aircraft.seats_per_cabin
        }
        for cabin in item["cabins"]:
            assert (cabin["first_row"], cabin["last_row"]) == (rows[cabin["cabin"]][0], rows[cabin["cabin"]][-1])
    a320 = next(item for item in page["items"] if item["type"] == "A320")
    assert [(cabin["cabin"], cabin["seats"]) for cabin in a320["cabins"]] == [("BUSINESS", 12), ("ECONOMY", 162)]


async def test_aircraft_pages(client: httpx.AsyncClient) -> None:
    second = (await client.get("/api/v1/flights/aircraft", params={"page": 2, "page_size": 2})).json()

    assert [item["type"] for item in second["items"]] == sorted(AIRCRAFT)[2:4]
    assert second["total"] == len(AIRCRAFT)
    bad = await client.get("/api/v1/flights/aircraft", params={"page_size": 0})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "page_size"


async def test_a_big_fare_gets_its_counter_striped_and_sells_from_the_stripes(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account
) -> None:
    # FLIGHTDESK_BOOKING_FARE_STRIPES (8) rows for a fare of at least FLIGHTDESK_BOOKING_STRIPE_MIN_SEATS (256).
    body = {
        **a320_flight(fare("ECONOMY", "Y", 300), fare("ECONOMY", "M", 100, amount=8000)),
        "destination": "JFK",
        "arrival_at": iso(DEPARTURE + timedelta(hours=8)),
        "aircraft": "A380-800",
        "flight_number": "BA117",
    }
    flight = await create(client, admin, body)
    async with pool.connection() as conn:
        counters = await (
            await conn.execute(
                "SELECT p.fare_class, p.stripes, p.seats_available AS main, count(s.stripe) AS rows,"
                " coalesce(sum(s.seats_available), 0) AS striped"
                " FROM flight_prices AS p LEFT JOIN fare_stripes AS s ON s.fare_id = p.id"
                " WHERE p.flight_id = %s GROUP BY p.id ORDER BY p.fare_class",
                (flight["id"],),
            )
        ).fetchall()
    assert [tuple(row.values()) for row in counters] == [("M", 1, 100, 0, 0), ("Y", 8, 0, 8, 300)]

    party = {**booking(flight, 2), "fare_class": "Y"}
    assert (await client.post("/api/v1/bookings", json=party, headers=customer.headers)).status_code == 201
    detail = (await client.get(f"/api/v1/flights/{flight['id']}")).json()
    assert {f["fare_class"]: f["seats_available"] for f in detail["fares"]} == {"Y": 298, "M": 100}
