"""Changing a booking (``PATCH``), cancelling it (``DELETE``) and the worker's release of lapsed holds: seats and
inventory go back exactly once, whatever races.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from core_api.bookings.service import BookingService, release_lapsed_holds
from core_api.security.crypto import load_cipher
from core_api.settings import Settings
from tests.bookings.conftest import (
    BOOKINGS,
    Account,
    SmallFlight,
    adult,
    booking_request,
    fare_seats,
    infant,
    rows,
)


@pytest.fixture
async def bookings(pool: AsyncConnectionPool, redis_url: str, settings: Settings) -> AsyncIterator[BookingService]:
    """The booking service as the worker builds it."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        yield BookingService(pool, redis, settings, load_cipher(settings))
    finally:
        await redis.aclose()


async def _book(client: httpx.AsyncClient, account: Account, flight: SmallFlight, **fields: Any) -> dict[str, Any]:
    response = await client.post(BOOKINGS, json=booking_request(flight, **fields), headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _lapse(pool: AsyncConnectionPool, booking_id: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s", (booking_id,)
        )


async def _seat_holders(pool: AsyncConnectionPool, flight: SmallFlight) -> dict[str, str]:
    found = await rows(
        pool, "SELECT seat_no, booking_id FROM seats WHERE flight_id = %s AND booking_id IS NOT NULL", flight.id
    )
    return {row["seat_no"]: str(row["booking_id"]) for row in found}


async def test_contact_names_and_seats_change_while_awaiting_payment(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await _book(client, customer, flight, passengers=[adult(), adult("Bo")], fare_class="Y", seats=["2A"])
    first, second = booking["passengers"]

    response = await client.patch(
        f"{BOOKINGS}/{booking['id']}",
        json={
            "contact_email": "ann@example.org",
            "contact_phone": "+1 212 555 0100",
            "passengers": [{"id": second["id"], "first_name": "Bob"}],
            "seats": ["5E", "5F"],
        },
        headers=customer.headers,
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["contact_email"], changed["contact_phone"]) == ("ann@example.org", "+1 212 555 0100")
    assert [p["first_name"] for p in changed["passengers"]] == ["Ann", "Bob"]
    assert [p["seat_no"] for p in changed["passengers"]] == ["5E", "5F"]
    assert await _seat_holders(pool, flight) == {"5E": booking["id"], "5F": booking["id"]}
    assert first["id"] == changed["passengers"][0]["id"]
    [audit] = await rows(pool, "SELECT after FROM audit_logs WHERE event_type = 'booking.updated'")
    assert audit["after"]["seats"] == ["5E", "5F"]
    assert await rows(pool, "SELECT count(*) AS n FROM outbox_events WHERE event_type = 'booking.updated'") == [
        {"n": 1}
    ]
    # Taking the seats off again frees them.
    cleared = await client.patch(f"{BOOKINGS}/{booking['id']}", json={"seats": []}, headers=customer.headers)
    assert cleared.json()["seats"] == []
    assert await _seat_holders(pool, flight) == {}


async def test_two_bookings_swapping_seats_at_once_never_share_one(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    other_customer: Account,
    flight: SmallFlight,
) -> None:
    mine = await _book(client, customer, flight, fare_class="Y", seats=["2A"])
    theirs = await _book(client, other_customer, flight, fare_class="Y", seats=["2B"])

    results = await asyncio.gather(
        client.patch(f"{BOOKINGS}/{mine['id']}", json={"seats": ["2B"]}, headers=customer.headers),
        client.patch(f"{BOOKINGS}/{theirs['id']}", json={"seats": ["2A"]}, headers=other_customer.headers),
    )

    # Each wants the other's seat, still held: both are refused, neither deadlocks, nothing moved.
    assert [r.status_code for r in results] == [409, 409]
    assert {r.json()["code"] for r in results} == {"SEAT_TAKEN"}
    assert await _seat_holders(pool, flight) == {"2A": mine["id"], "2B": theirs["id"]}


async def test_a_seat_for_an_infant_or_a_stranger_passenger_is_refused(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight
) -> None:
    booking = await _book(client, customer, flight, passengers=[adult(), infant()])
    url = f"{BOOKINGS}/{booking['id']}"

    two_seats = await client.patch(url, json={"seats": ["2A", "2B"]}, headers=customer.headers)
    stranger = await client.patch(
        url,
        json={"passengers": [{"id": "00000000-0000-4000-8000-000000000000", "last_name": "X"}]},
        headers=customer.headers,
    )
    empty = await client.patch(url, json={}, headers=customer.headers)

    assert (two_seats.status_code, two_seats.json()["errors"][0]["field"]) == (422, "seats")
    assert (stranger.status_code, stranger.json()["errors"][0]["field"]) == (422, "passengers[0].id")
    assert (empty.status_code, empty.json()["errors"][0]["field"]) == (422, "body")


async def test_cancelling_returns_seats_and_inventory_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await _book(client, customer, flight, passengers=[adult(), adult("Bo")], fare_class="Y", seats=["2A"])
    assert await fare_seats(pool, flight.id) == flight.y_seats - 2

    cancelled = await client.delete(f"{BOOKINGS}/{booking['id']}", headers=customer.headers)
    again = await client.delete(f"{BOOKINGS}/{booking['id']}", headers=customer.headers)
    patched = await client.patch(f"{BOOKINGS}/{booking['id']}", json={"seats": ["2B"]}, headers=customer.headers)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    assert cancelled.json()["cancelled_at"] is not None
    assert cancelled.json()["seats"] == []
    assert (again.status_code, again.json()["code"]) == (409, "INVALID_STATE")
    assert (patched.status_code, patched.json()["code"]) == (409, "INVALID_STATE")
    assert await fare_seats(pool, flight.id) == flight.y_seats
    assert await _seat_holders(pool, flight) == {}
    events = await rows(pool, "SELECT event_type, payload FROM outbox_events ORDER BY seq")
    assert [e["event_type"] for e in events] == ["booking.created", "booking.cancelled"]
    assert events[-1]["payload"]["availability"]["seats_available"] == flight.y_seats


async def test_a_lapsed_hold_cannot_change_and_the_worker_expires_it(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    bookings: BookingService,
    customer: Account,
    flight: SmallFlight,
) -> None:
    booking = await _book(client, customer, flight, fare_class="Y", seats=["6F"])
    live = await _book(client, customer, flight, fare_class="Y")
    await _lapse(pool, booking["id"])

    refused = await client.patch(f"{BOOKINGS}/{booking['id']}", json={"seats": ["6E"]}, headers=customer.headers)
    expired = await release_lapsed_holds(bookings)

    assert (refused.status_code, refused.json()["code"]) == (409, "HOLD_EXPIRED")
    assert expired == 1
    read = (await client.get(f"{BOOKINGS}/{booking['id']}", headers=customer.headers)).json()
    assert (read["status"], read["seats"]) == ("EXPIRED", [])
    assert read["expired_at"] is not None
    assert (await client.get(f"{BOOKINGS}/{live['id']}", headers=customer.headers)).json()["status"] == (
        "PENDING_PAYMENT"
    )
    assert await fare_seats(pool, flight.id) == flight.y_seats - 1
    assert await _seat_holders(pool, flight) == {}
    [audit] = await rows(pool, "SELECT actor_role FROM audit_logs WHERE event_type = 'booking.expired'")
    assert audit["actor_role"] == "SYSTEM"
    assert await release_lapsed_holds(bookings) == 0


async def test_expiry_racing_a_cancel_releases_the_seats_once(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    bookings: BookingService,
    customer: Account,
    flight: SmallFlight,
) -> None:
    booked = [await _book(client, customer, flight, fare_class="Y") for _ in range(4)]
    for booking in booked:
        await _lapse(pool, booking["id"])

    # Two workers and a cancel per booking, all at once.
    outcomes = await asyncio.gather(
        release_lapsed_holds(bookings),
        release_lapsed_holds(bookings),
        *(client.delete(f"{BOOKINGS}/{b['id']}", headers=customer.headers) for b in booked),
    )

    expired = outcomes[0] + outcomes[1]
    cancels = [response.status_code for response in outcomes[2:]]
    assert expired + cancels.count(200) == len(booked)
    assert set(cancels) <= {200, 409}
    statuses = await rows(pool, "SELECT status, count(*) AS n FROM bookings GROUP BY status ORDER BY status")
    assert sum(row["n"] for row in statuses) == len(booked)
    assert {row["status"] for row in statuses} <= {"CANCELLED", "EXPIRED"}
    assert await fare_seats(pool, flight.id) == flight.y_seats
    ended = await rows(
        pool,
        "SELECT count(*) AS n FROM outbox_events WHERE event_type IN ('booking.cancelled', 'booking.expired')",
    )
    assert ended == [{"n": len(booked)}]
