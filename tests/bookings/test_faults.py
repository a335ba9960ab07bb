"""A booking whose database connection dies mid-transaction: a clean error, nothing half-written, and a retry with
the same Idempotency-Key books exactly once.
"""

from __future__ import annotations

import asyncio

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from tests.bookings.conftest import BOOKINGS, Account, SmallFlight, booking_request, fare_seats, rows
from tests.support.waits import backend_waiting_on_the_outbox


async def test_a_connection_killed_between_update_and_commit_changes_nothing_and_a_retry_books_once(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    database_url: str,
    customer: Account,
    flight: SmallFlight,
) -> None:
    headers = {**customer.headers, "Idempotency-Key": "order-4711"}
    request = booking_request(flight, fare_class="Y", seats=["3A"])
    async with await psycopg.AsyncConnection.connect(database_url) as blocker:
        # Keep writers out of the outbox (no request takes such a lock): the booking takes its seats, writes its
        # rows, then waits here before COMMIT.
        await blocker.execute("LOCK TABLE outbox_events IN SHARE MODE")
        pending = asyncio.ensure_future(client.post(BOOKINGS, json=request, headers=headers))
        pid = await backend_waiting_on_the_outbox(database_url)
        async with pool.connection() as conn:
            taken = await fare_seats(pool, flight.id)
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        response = await pending
        await blocker.rollback()

    assert taken == flight.y_seats  # uncommitted: nobody else saw the seats go
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert "outbox_events" not in response.text
    assert await fare_seats(pool, flight.id) == flight.y_seats
    for table in ("bookings", "passengers", "outbox_events", "idempotency_keys"):
        assert await rows(pool, f"SELECT 1 FROM {table}") == [], table
    assert await rows(pool, "SELECT 1 FROM seats WHERE booking_id IS NOT NULL") == []

    retried = await client.post(BOOKINGS, json=request, headers=headers)
    replayed = await client.post(BOOKINGS, json=request, headers=headers)

    assert retried.status_code == 201, retried.text
    assert retried.headers.get("idempotent-replayed") is None
    assert replayed.status_code == 201
    assert replayed.json()["id"] == retried.json()["id"]
    assert await rows(pool, "SELECT count(*) AS n FROM bookings") == [{"n": 1}]
    assert await fare_seats(pool, flight.id) == flight.y_seats - 1
