"""Reading flights (public): the detail with fares and live availability, the seat map, the airline list."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.seed.aircraft import AIRCRAFT

CABIN_ORDER = ["FIRST", "BUSINESS", "PREMIUM_ECONOMY", "ECONOMY"]


async def one(pool: AsyncConnectionPool, query: str, *params: Any) -> dict[str, Any]:
    async with pool.connection() as conn:
        row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return row


@pytest.fixture
async def flight_id(pool: AsyncConnectionPool) -> int:
    """The first seeded BA101, JFK to London Heathrow on a B777-300ER (four cabins)."""
    row = await one(pool, "SELECT id FROM flights WHERE flight_number = 'BA101' ORDER BY departure_at LIMIT 1")
    return int(row["id"])


async def test_flight_detail_has_fares_airports_and_utc_times(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, flight_id: int
) -> None:
    response = await client.get(f"/api/v1/flights/{flight_id}")

    assert response.status_code == 200
    flight = response.json()
    stored = await one(pool, "SELECT * FROM flights WHERE id = %s", flight_id)
    assert flight["id"] == flight_id
    assert (flight["airline"], flight["airline_name"], flight["flight_number"]) == ("BA", "British Airways", "BA101")
    assert (flight["origin"], flight["destination"]) == ("JFK", "LHR")
    assert flight["origin_airport"]["tz"] == "America/New_York"
    assert flight["destination_airport"]["tz"] == "Europe/London"
    assert (flight["status"], flight["aircraft"]) == ("SCHEDULED", "B777-300ER")
    assert flight["departure_at"].endswith("Z")
    assert datetime.fromisoformat(flight["departure_at"]) == stored["departure_at"]
    assert datetime.fromisoformat(flight["arrival_at"]) == stored["arrival_at"]
    assert flight["duration_minutes"] == (stored["arrival_at"] - stored["departure_at"]).total_seconds() // 60


async def test_fares_cover_every_seat_of_each_cabin(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, flight_id: int
) -> None:
    fares = (await client.get(f"/api/v1/flights/{flight_id}")).json()["fares"]

    seats_by_cabin = Counter(seat.cabin.value for seat in AIRCRAFT["B777-300ER"].seats)
    filed: Counter[str] = Counter()
    for fare in fares:
        filed[fare["cabin"]] += fare["seats_total"]
        assert fare["seats_available"] == fare["seats_total"]
        assert fare["price"]["currency"] == "GBP"
        assert isinstance(fare["price"]["amount"], int)
        assert fare["price"]["amount"] > 0
    assert filed == seats_by_cabin
    cabins = [fare["cabin"] for fare in fares]
    assert cabins == sorted(cabins, key=CABIN_ORDER.index), "cabins front to back"
    assert {(fare["cabin"], fare["fare_class"]) for fare in fares} >= {("ECONOMY", "Y"), ("FIRST", "F")}


async def test_flight_detail_shows_live_availability(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, flight_id: int
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE flight_prices SET seats_available = seats_available - 3 "
            "WHERE flight_id = %s AND cabin = 'ECONOMY' AND fare_class = 'K'",
            (flight_id,),
        )

    fares = (await client.get(f"/api/v1/flights/{flight_id}")).json()["fares"]

    saver = next(fare for fare in fares if fare["fare_class"] == "K")
    assert saver["seats_available"] == saver["seats_total"] - 3


async def test_seat_map_groups_seats_by_cabin_and_row_with_features(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, flight_id: int
) -> None:
    response = await client.get(f"/api/v1/flights/{flight_id}/seats")

    assert response.status_code == 200
    seat_map = response.json()
    assert (seat_map["flight_id"], seat_map["aircraft"]) == (flight_id, "B777-300ER")
    assert [cabin["cabin"] for cabin in seat_map["cabins"]] == CABIN_ORDER
    seats = [seat for cabin in seat_map["cabins"] for row in cabin["rows"] for seat in row["seats"]]
    layout = AIRCRAFT["B777-300ER"].seats
    assert len(seats) == len(layout)
    assert {seat["seat_no"]: seat["features"] for seat in seats} == {s.seat_no: list(s.features) for s in layout}
    rows = [row["row"] for cabin in seat_map["cabins"] for row in cabin["rows"]]
    assert rows == sorted(rows) == list(range(1, len(rows) + 1))
    for cabin in seat_map["cabins"]:
        for row in cabin["rows"]:
            assert all(seat["seat_no"].startswith(str(row["row"])) for seat in row["seats"])
            letters = [seat["seat_no"][-1] for seat in row["seats"]]
            assert letters == sorted(letters)
    assert {seat["status"] for seat in seats} == {"AVAILABLE"}
    # Window, aisle, middle and exit-row seats all appear on a wide body.
    features = {feature for seat in seats for feature in seat["features"]}
    assert features == {"WINDOW", "AISLE", "MIDDLE", "EXIT_ROW", "EXTRA_LEGROOM"}


async def test_seat_map_shows_each_seats_status(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, flight_id: int
) -> None:
    fare = await one(pool, "SELECT id FROM flight_prices WHERE flight_id = %s AND fare_class = 'K'", flight_id)
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO bookings (pnr, flight_id, fare_id, cabin, fare_class, seat_count, total_amount, currency,"
                " contact_email, hold_expires_at) VALUES ('SEATMP', %s, %s, 'ECONOMY', 'K', 2, 100, 'GBP',"
                " 'a@example.com', now() + interval '15 minutes') RETURNING id",
                (flight_id, fare["id"]),
            )
        ).fetchone()
        assert row is not None
        for seat_no, status in (("20A", "HELD"), ("20B", "OCCUPIED")):
            await conn.execute(
                "UPDATE seats SET status = %s, booking_id = %s WHERE flight_id = %s AND seat_no = %s",
                (status, row["id"], flight_id, seat_no),
            )
        await conn.execute("UPDATE seats SET status = 'BLOCKED' WHERE flight_id = %s AND seat_no = '20C'", (flight_id,))

    seat_map = (await client.get(f"/api/v1/flights/{flight_id}/seats")).json()

    statuses = {seat["seat_no"]: seat["status"] for c in seat_map["cabins"] for r in c["rows"] for seat in r["seats"]}
    assert (statuses["20A"], statuses["20B"], statuses["20C"], statuses["20D"]) == (
        "HELD",
        "OCCUPIED",
        "BLOCKED",
        "AVAILABLE",
    )


@pytest.mark.parametrize("suffix", ["", "/seats"])
async def test_unknown_flight_is_404(client: httpx.AsyncClient, suffix: str) -> None:
    response = await client.get(f"/api/v1/flights/987654321{suffix}")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize("flight_id", ["abc", "1.5", "-1", "0", "1e3", "99999999999999999999", "%20"])
@pytest.mark.parametrize("suffix", ["", "/seats"])
async def test_malformed_flight_id_is_422_naming_id(client: httpx.AsyncClient, flight_id: str, suffix: str) -> None:
    response = await client.get(f"/api/v1/flights/{flight_id}{suffix}")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [error["field"] for error in response.json()["errors"]] == ["id"]


async def test_airlines_lists_every_airline_by_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/flights/airlines")

    assert response.status_code == 200
    page = response.json()
    codes = [airline["code"] for airline in page["items"]]
    assert codes == sorted(["AA", "UA", "DL", "BA", "AF", "LH", "KL", "IB", "EK", "SQ", "NH", "QF"])
    assert (page["total"], page["page"], page["page_size"]) == (12, 1, 100)
    assert page["items"][codes.index("BA")] == {"code": "BA", "name": "British Airways", "country": "GB"}


async def test_airlines_pages(client: httpx.AsyncClient) -> None:
    second = (await client.get("/api/v1/flights/airlines", params={"page": 2, "page_size": 5})).json()
    beyond = (await client.get("/api/v1/flights/airlines", params={"page": 9, "page_size": 5})).json()

    assert [airline["code"] for airline in second["items"]] == ["IB", "KL", "LH", "NH", "QF"]
    assert second["total"] == 12
    assert (beyond["items"], beyond["total"]) == ([], 12)
    bad = await client.get("/api/v1/flights/airlines", params={"page_size": 101})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "page_size"
