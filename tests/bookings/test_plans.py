"""The booking path's reads are index lookups whatever the statistics say: on tables never analysed, and on
statistics taken before the live holds piled up (the state after a seed, with autovacuum off or behind).

The unpaid-seat cap is the one that went wrong: it read every live hold of the system (bookings_live_holds_idx,
or bookings_status_idx, looked empty to stale statistics). It must be a range of the holder's own index, O(1) in
the holder's history, as a custom plan and as the generic plan the prepared statement ends up with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from core_api.bookings._common import QUERIES

_REFERENCE = """
INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');
INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
    ('JFK', 'John F Kennedy International Airport', 'New York', 'US', 'America/New_York', 40.64, -73.78),
    ('LHR', 'London Heathrow Airport', 'London', 'GB', 'Europe/London', 51.47, -0.45);
INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)
VALUES ('BA', 'BA117', 'JFK', 'LHR', now() + interval '10 days', now() + interval '10 days 7 hours', 'A320');
INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total, seats_available)
SELECT id, 'ECONOMY', 'Y', 45000, 'USD', 1000000, 1000000 FROM flights;
INSERT INTO users (email, password_hash, full_name, role)
SELECT 'user' || n || '@example.com', 'x', 'User ' || n, CASE WHEN n <= 20 THEN 'TRAVEL_AGENT' ELSE 'CUSTOMER' END
FROM generate_series(1, 1000) AS n;
"""

# Bookings numbered [first, last): customers and agents in turn, a distinct PNR for each number (base 31).
_BOOKINGS = """
WITH people AS (SELECT id, role, row_number() OVER (ORDER BY email) AS n FROM users)
INSERT INTO bookings (pnr, flight_id, fare_id, cabin, fare_class, customer_id, agent_id, created_by, status,
                      seat_count, total_amount, currency, contact_email, hold_expires_at)
SELECT (SELECT string_agg(substr('ABCDEFGHJKMNPQRSTUVWXYZ23456789', 1 + mod(g / (31 ^ k)::int, 31), 1), ''
                          ORDER BY k)
        FROM generate_series(0, 5) AS k),
       (SELECT id FROM flights), (SELECT id FROM flight_prices), 'ECONOMY', 'Y', c.id, a.id, c.id,
       %(status)s::text, 1, 45000, 'USD', 'someone@example.com', now() + %(hold)s::interval
FROM generate_series(%(first)s::int, %(last)s::int - 1) AS g
JOIN people AS c ON c.n = 21 + mod(g, 980)
JOIN people AS a ON a.n = 1 + mod(g, 20)
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cursor = await conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params)
    row = await cursor.fetchone()
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


async def _generic_plan(conn: psycopg.AsyncConnection[Any], query: str, holder: object) -> list[dict[str, Any]]:
    """The plan a prepared statement settles on, with the holder unknown at planning time."""
    text = re.sub(r"%\(holder\)s", "$1", query)
    await conn.execute("DEALLOCATE ALL")
    await conn.execute(sql.SQL("PREPARE cap (uuid) AS {}").format(sql.SQL(text)))  # type: ignore[arg-type]
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        cursor = await conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE cap ({})").format(sql.Literal(holder)))
        row = await cursor.fetchone()
    finally:
        await conn.execute("RESET plan_cache_mode")
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


def _assert_reads_the_holders_index(nodes: list[dict[str, Any]], index: str, column: str) -> None:
    scans = [node for node in nodes if node.get("Relation Name") == "bookings" or "Index Name" in node]
    assert not [node for node in scans if node["Node Type"] == "Seq Scan"], scans
    used = [node for node in scans if node.get("Index Name") == index]
    assert used, scans
    assert all(f"{column} = " in node["Index Cond"] for node in used), used
    assert {node.get("Index Name") for node in scans if "Index Name" in node} == {index}, scans


@pytest.fixture(params=["never analysed", "analysed before the holds"])
async def history(request: pytest.FixtureRequest, database_url: str) -> psycopg.AsyncConnection[Any]:
    """20,000 ended bookings and 15,000 live holds over 980 customers and 20 agents, with no statistics, or with
    statistics taken while no hold was live.
    """
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await conn.execute(_REFERENCE)
    await conn.execute(_BOOKINGS, {"status": "CONFIRMED", "hold": "-1 day", "first": 0, "last": 20_000})
    if request.param == "analysed before the holds":
        await conn.execute("ANALYZE")
    await conn.execute(_BOOKINGS, {"status": "PENDING_PAYMENT", "hold": "15 minutes", "first": 20_000, "last": 35_000})
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("query", "index", "column"),
    [
        ("unpaid_seats_of_customer", "bookings_customer_live_holds_idx", "customer_id"),
        ("unpaid_seats_of_agent", "bookings_agent_live_holds_idx", "agent_id"),
    ],
)
async def test_the_unpaid_seat_cap_reads_only_the_holders_live_holds(
    history: psycopg.AsyncConnection[Any], query: str, index: str, column: str
) -> None:
    cursor = await history.execute(f"SELECT {column} FROM bookings WHERE status = 'PENDING_PAYMENT' LIMIT 1")
    row = await cursor.fetchone()
    assert row is not None
    holder = row[0]

    _assert_reads_the_holders_index(await _plan(history, QUERIES[query], {"holder": holder}), index, column)
    _assert_reads_the_holders_index(await _generic_plan(history, QUERIES[query], holder), index, column)
