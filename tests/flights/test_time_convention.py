"""One convention for every time on the wire: an RFC 3339 UTC timestamp ending in ``Z``, and beside the times of a
flight the IANA zones of its airports (``origin_tz`` / ``destination_tz``) to show them in local time — in search
offers (ours and Amadeus'), flight resources, a booking's flight and the ``flight.changed`` event.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.support.accounts import Account, MakeAccount

ZONES = {"JFK": "America/New_York", "LHR": "Europe/London"}


@pytest.fixture
def day(seed_start: date) -> date:
    return seed_start + timedelta(days=1)


def assert_utc(text: Any) -> datetime:
    """``text`` is an RFC 3339 timestamp in UTC, written with ``Z``."""
    assert isinstance(text, str), text
    assert text.endswith("Z"), text
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0)
    return moment


def assert_zoned_times(flight: dict[str, Any], *times: str) -> None:
    """The flight-like object's times are UTC and its airports' zones stand beside them."""
    for field in times:
        assert_utc(flight[field])
    assert flight["origin_tz"] == ZONES[flight["origin"]]
    assert flight["destination_tz"] == ZONES[flight["destination"]]


async def test_search_offers_give_utc_times_and_each_airports_zone(client: httpx.AsyncClient, day: date) -> None:
    for cached in (False, True):
        response = await client.get(
            "/api/v1/flights/search", params={"origin": "JFK", "destination": "LHR", "date": day.isoformat()}
        )
        body = response.json()
        assert body["meta"]["cached"] is cached
        assert body["offers"]
        for offer in body["offers"]:
            (segment,) = offer["segments"]
            assert_zoned_times(segment, "departure_at", "arrival_at")
            # The searched day is the departure's date in the origin's zone.
            departure = assert_utc(segment["departure_at"])
            assert departure.astimezone(ZoneInfo(segment["origin_tz"])).date() == day


@pytest.fixture
async def flight_id(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM flights WHERE flight_number = 'BA101' ORDER BY departure_at LIMIT 1")
        ).fetchone()
    assert row is not None
    return int(row["id"])


async def test_flight_resources_give_utc_times_and_each_airports_zone(
    client: httpx.AsyncClient, admin: Account, flight_id: int
) -> None:
    detail = (await client.get(f"/api/v1/flights/{flight_id}")).json()
    assert_zoned_times(detail, "departure_at", "arrival_at")
    assert (detail["origin_airport"]["tz"], detail["destination_airport"]["tz"]) == (ZONES["JFK"], ZONES["LHR"])

    later = assert_utc(detail["departure_at"]) + timedelta(hours=1)
    updated = await client.patch(
        f"/api/v1/flights/{flight_id}",
        json={"status": "DELAYED", "departure_at": later.astimezone(ZoneInfo("Asia/Tokyo")).isoformat()},
        headers=admin.headers,
    )
    assert updated.status_code == 200, updated.text
    assert_zoned_times(updated.json(), "departure_at", "arrival_at")
    assert assert_utc(updated.json()["departure_at"]) == later


@pytest.fixture
async def customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


async def test_bookings_and_flight_events_give_utc_times_and_each_airports_zone(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account, flight_id: int
) -> None:
    passenger = {"first_name": "Ann", "last_name": "Example", "date_of_birth": "1985-04-02", "type": "ADULT"}
    response = await client.post(
        "/api/v1/bookings",
        json={"flight_id": flight_id, "cabin": "ECONOMY", "passengers": [passenger]},
        headers=customer.headers,
    )
    assert response.status_code == 201, response.text
    booking = response.json()
    for field in ("hold_expires_at", "created_at", "updated_at"):
        assert_utc(booking[field])
    assert_zoned_times(booking["flight"], "departure_at", "arrival_at")
    assert_zoned_times(
        (await client.get(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).json()["flight"],
        "departure_at",
        "arrival_at",
    )

    later = assert_utc(booking["flight"]["departure_at"]) + timedelta(minutes=40)
    delayed = await client.patch(
        f"/api/v1/flights/{flight_id}",
        json={"status": "DELAYED", "departure_at": later.isoformat()},
        headers=admin.headers,
    )
    assert delayed.status_code == 200, delayed.text

    async with pool.connection() as conn:
        [event] = await (
            await conn.execute("SELECT payload FROM outbox_events WHERE event_type = 'flight.changed'")
        ).fetchall()
    payload = event["payload"]
    assert_zoned_times(payload, "old_departure_at", "new_departure_at", "old_arrival_at", "new_arrival_at")
    assert assert_utc(payload["new_departure_at"]) == later
