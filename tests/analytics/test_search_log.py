"""Searches are logged for the funnel without a database round trip on the search path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.support.accounts import MakeAccount
from tests.support.warehouse_rows import insert_known_rows


async def test_searches_are_noted_in_memory_and_written_in_one_batch(
    app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool, database_url: str, make_account: MakeAccount
) -> None:
    insert_known_rows(database_url)
    customer = await make_account(Role.CUSTOMER)
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    params = {"origin": "JFK", "destination": "LHR", "date": day, "adults": "2", "cabin": "ECONOMY"}
    assert (await client.get("/api/v1/flights/search", params=params)).status_code == 200
    assert (await client.get("/api/v1/flights/search", params=params, headers=customer.headers)).status_code == 200
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) AS n FROM search_events")).fetchone() == {"n": 0}
    assert await app.state.search_log.flush() == 2
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT origin, destination, departure_date::text AS day, adults, cabin, result_count, cached, "
                "user_id::text AS user_id FROM search_events ORDER BY id"
            )
        ).fetchall()
    assert rows == [
        {
            "origin": "JFK",
            "destination": "LHR",
            "day": day,
            "adults": 2,
            "cabin": "ECONOMY",
            "result_count": 0,
            "cached": False,
            "user_id": None,
        },
        {
            "origin": "JFK",
            "destination": "LHR",
            "day": day,
            "adults": 2,
            "cabin": "ECONOMY",
            "result_count": 0,
            "cached": True,
            "user_id": customer.id,
        },
    ]
