"""Seats under contention, with real concurrency: many requests in flight at once over many database connections.

No load may oversell a bucket, seat two bookings in one seat, or turn a duplicate request into two bookings.
"""

from __future__ import annotations

import asyncio
import collections
import itertools

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.settings import Settings, load_settings
from core_api.users.schemas import Role
from tests.bookings.conftest import (
    BOOKINGS,
    Account,
    MakeAccount,
    SmallFlight,
    add_small_flight,
    adult,
    booking_request,
    fare_seats,
    rows,
    widen_bucket,
)
from tests.conftest import TEST_CRYPTO_KEYS, TEST_JWT_KEYS

REQUESTS = 200


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """A pool as large as a busy API process keeps, and room for many unpaid seats per customer."""
    return load_settings(
        {
            "FLIGHTDESK_ENV": "test",
            "FLIGHTDESK_DATABASE_URL": database_url,
            "FLIGHTDESK_REDIS_URL": redis_url,
            "FLIGHTDESK_DATABASE_POOL_MIN": "1",
            "FLIGHTDESK_DATABASE_POOL_MAX": "40",
            "FLIGHTDESK_AUTH_JWT_KEYS": TEST_JWT_KEYS,
            "FLIGHTDESK_CRYPTO_KEYS": TEST_CRYPTO_KEYS,
            "FLIGHTDESK_RATE_LIMITS": "100000/second",
            "FLIGHTDESK_BOOKING_MAX_UNPAID_SEATS": "1000",
        },
        dotenv=None,
    )


@pytest.fixture
async def customers(make_account: MakeAccount) -> list[Account]:
    return [await make_account(Role.CUSTOMER) for _ in range(10)]


async def test_hundreds_of_buyers_of_few_seats_sell_exactly_those_seats(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customers: list[Account], flight: SmallFlight
) -> None:
    buyers = itertools.cycle(customers)
    request = booking_request(flight, fare_class="Y")

    responses = await asyncio.gather(
        *(client.post(BOOKINGS, json=request, headers=next(buyers).headers) for _ in range(REQUESTS))
    )

    statuses = collections.Counter(response.status_code for response in responses)
    assert statuses == {201: flight.y_seats, 409: REQUESTS - flight.y_seats}, statuses
    assert {response.json()["code"] for response in responses if response.status_code == 409} == {"SOLD_OUT"}
    assert await fare_seats(pool, flight.id) == 0
    booked = await rows(pool, "SELECT count(*) AS n, sum(seat_count) AS seats FROM bookings")
    assert booked == [{"n": flight.y_seats, "seats": flight.y_seats}]
    # Every success is a distinct booking with its own PNR, and the audit chain stayed linear.
    pnrs = {response.json()["pnr"] for response in responses if response.status_code == 201}
    assert len(pnrs) == flight.y_seats
    [audit] = await rows(pool, "SELECT count(*) AS n FROM audit_logs WHERE event_type = 'booking.created'")
    assert audit["n"] == flight.y_seats


STRIPES = 8


@pytest.mark.parametrize(("party", "seats"), [(1, 40), (2, 40), (3, 42)])
async def test_a_striped_bucket_sells_every_seat_to_as_many_buyers_at_once(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customers: list[Account],
    reference_data: None,
    party: int,
    seats: int,
) -> None:
    # 40 seats over 8 stripes of 5: parties of 2 and 3 leave stripes too short for them and must take across
    # stripes; exactly as many parties as fit, all at once, must all be sold, and one more refused.
    flight = await add_small_flight(pool, y_seats=seats, y_stripes=STRIPES)
    buyers = itertools.cycle(customers)
    request = booking_request(flight, *[adult(name) for name in ["Ann", "Bob", "Cy"][:party]], fare_class="Y")

    responses = await asyncio.gather(
        *(client.post(BOOKINGS, json=request, headers=next(buyers).headers) for _ in range(seats // party))
    )

    assert collections.Counter(response.status_code for response in responses) == {201: seats // party}
    assert await fare_seats(pool, flight.id) == 0
    assert await rows(pool, "SELECT count(*) AS n FROM fare_stripes WHERE seats_available <> 0") == [{"n": 0}]
    refused = await client.post(BOOKINGS, json=booking_request(flight, fare_class="Y"), headers=customers[0].headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "SOLD_OUT")


async def test_hundreds_of_mixed_parties_on_a_striped_bucket_never_oversell_it(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customers: list[Account], reference_data: None
) -> None:
    flight = await add_small_flight(pool, y_seats=40, y_stripes=STRIPES)
    buyers = itertools.cycle(customers)
    parties = [1 + n % 3 for n in range(REQUESTS)]

    responses = await asyncio.gather(
        *(
            client.post(
                BOOKINGS,
                json=booking_request(flight, *[adult(name) for name in ["Ann", "Bob", "Cy"][:size]], fare_class="Y"),
                headers=next(buyers).headers,
            )
            for size in parties
        )
    )

    sold = sum(size for size, response in zip(parties, responses, strict=True) if response.status_code == 201)
    refused = [size for size, response in zip(parties, responses, strict=True) if response.status_code != 201]
    assert {response.json()["code"] for response in responses if response.status_code != 201} == {"SOLD_OUT"}
    left = await fare_seats(pool, flight.id)
    assert sold + left == 40
    assert 0 <= left < min(refused)  # every refusal asked for more than is left (seats only ever went down)
    booked = await rows(pool, "SELECT coalesce(sum(seat_count), 0) AS seats FROM bookings")
    assert booked == [{"seats": sold}]


async def test_one_seat_claimed_by_many_at_once_goes_to_one(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customers: list[Account], flight: SmallFlight
) -> None:
    await widen_bucket(pool, flight.id, 100)
    request = booking_request(flight, fare_class="Y", seats=["4C"])

    responses = await asyncio.gather(*(client.post(BOOKINGS, json=request, headers=c.headers) for c in customers * 3))

    statuses = collections.Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: len(responses) - 1}, statuses
    assert {response.json()["code"] for response in responses if response.status_code == 409} == {"SEAT_TAKEN"}
    # The losers gave their bucket seats back with their rolled-back transactions.
    assert await fare_seats(pool, flight.id) == 99
    holders = await rows(pool, "SELECT booking_id FROM seats WHERE flight_id = %s AND seat_no = '4C'", flight.id)
    winner = next(response.json() for response in responses if response.status_code == 201)
    assert [str(row["booking_id"]) for row in holders] == [winner["id"]]


async def test_concurrent_duplicates_under_one_idempotency_key_make_one_booking(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    headers = {**customer.headers, "Idempotency-Key": "checkout-7f3a"}
    request = booking_request(flight, adult(), adult("Bo"), fare_class="Y")

    responses = await asyncio.gather(*(client.post(BOOKINGS, json=request, headers=headers) for _ in range(20)))

    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert sum(response.headers.get("idempotent-replayed") == "true" for response in responses) == 19
    assert await rows(pool, "SELECT count(*) AS n FROM bookings") == [{"n": 1}]
    assert await fare_seats(pool, flight.id) == flight.y_seats - 2


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    headers = {**customer.headers, "Idempotency-Key": "checkout-1"}
    first = await client.post(BOOKINGS, json=booking_request(flight, fare_class="Y"), headers=headers)
    # Key order and spacing do not make another request; another traveller does.
    reordered = dict(reversed(list(booking_request(flight, fare_class="Y").items())))
    again = await client.post(BOOKINGS, json=reordered, headers=headers)
    other = await client.post(BOOKINGS, json=booking_request(flight, adult("Bo"), fare_class="Y"), headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert other.status_code == 422
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await rows(pool, "SELECT count(*) AS n FROM bookings") == [{"n": 1}]


async def test_idempotency_keys_belong_to_their_caller(
    client: httpx.AsyncClient, customer: Account, other_customer: Account, flight: SmallFlight
) -> None:
    request = booking_request(flight, fare_class="Y")
    mine = await client.post(BOOKINGS, json=request, headers={**customer.headers, "Idempotency-Key": "k-1"})
    theirs = await client.post(BOOKINGS, json=request, headers={**other_customer.headers, "Idempotency-Key": "k-1"})

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["customer_id"] == other_customer.id


async def test_a_refused_request_leaves_its_key_free_for_a_retry(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    headers = {**customer.headers, "Idempotency-Key": "retry-me"}
    async with pool.connection() as conn:
        await conn.execute("UPDATE flights SET status = 'CANCELLED' WHERE id = %s", (flight.id,))
    refused = await client.post(BOOKINGS, json=booking_request(flight), headers=headers)
    async with pool.connection() as conn:
        await conn.execute("UPDATE flights SET status = 'SCHEDULED' WHERE id = %s", (flight.id,))
    retried = await client.post(BOOKINGS, json=booking_request(flight), headers=headers)

    assert refused.status_code == 409
    assert retried.status_code == 201
    assert retried.headers.get("idempotent-replayed") is None
