"""The worker's booking crons, run with the context ``flightdesk worker`` builds at startup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from psycopg_pool import AsyncConnectionPool

from core_api.worker import WorkerSettings, expire_holds, forget_idempotency_keys, on_shutdown, on_startup
from tests.bookings.conftest import BOOKINGS, Account, SmallFlight, booking_request, fare_seats, rows


@pytest.fixture
async def worker_ctx(redis_url: str, database_url: str) -> AsyncIterator[dict[str, Any]]:
    redis: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url))
    ctx: dict[str, Any] = {"redis": redis, "database_url": database_url}
    await on_startup(ctx)
    try:
        yield ctx
    finally:
        await on_shutdown(ctx)
        await redis.aclose()


def test_the_worker_schedules_the_booking_crons() -> None:
    names = {job.name for job in WorkerSettings.cron_jobs}
    assert {"cron:expire_holds", "cron:forget_idempotency_keys"} <= names


async def test_the_hold_sweep_expires_lapsed_bookings_and_announces_it(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    worker_ctx: dict[str, Any],
    customer: Account,
    flight: SmallFlight,
) -> None:
    response = await client.post(BOOKINGS, json=booking_request(flight, fare_class="Y"), headers=customer.headers)
    booking = response.json()
    async with pool.connection() as conn:
        await conn.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 minute'")

    assert await expire_holds(worker_ctx) == 1
    assert await expire_holds(worker_ctx) == 0

    assert (await client.get(f"{BOOKINGS}/{booking['id']}", headers=customer.headers)).json()["status"] == "EXPIRED"
    assert await fare_seats(pool, flight.id) == flight.y_seats
    [event] = await rows(pool, "SELECT payload FROM outbox_events WHERE event_type = 'booking.expired'")
    assert event["payload"]["availability"]["seats_available"] == flight.y_seats


async def test_expired_idempotency_keys_are_forgotten(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    worker_ctx: dict[str, Any],
    customer: Account,
    flight: SmallFlight,
) -> None:
    for key in ("old-1", "old-2", "fresh"):
        headers = {**customer.headers, "Idempotency-Key": key}
        await client.post(BOOKINGS, json=booking_request(flight, fare_class="Y"), headers=headers)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key LIKE 'old-%'"
        )

    assert await forget_idempotency_keys(worker_ctx) == 2
    assert [row["key"] for row in await rows(pool, "SELECT key FROM idempotency_keys")] == ["fresh"]
