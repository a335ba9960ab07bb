"""Fixtures for booking tests: seeded inventory, a small flight of our own whose seats run out fast, and accounts of
every role logged in through the API.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.storage.db import transaction
from core_api.users.schemas import Role
from tests.support.accounts import Account, MakeAccount, new_account

AIRLINE = "BA"
BOOKINGS = "/api/v1/bookings"


@pytest.fixture
async def reference_data(pool: AsyncConnectionPool) -> None:
    """The airline and airports of the small flight (the test database starts empty: cloning the seeded one costs
    a checkpoint per test).
    """
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB'), ('AA', 'American', 'US');
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
                ('JFK', 'John F Kennedy International Airport', 'New York', 'US', 'America/New_York', 40.64, -73.78),
                ('LHR', 'London Heathrow Airport', 'London', 'GB', 'Europe/London', 51.47, -0.45);
            """
        )


@pytest.fixture
def make_account(pool: AsyncConnectionPool, client: httpx.AsyncClient, reference_data: None) -> MakeAccount:
    """A new user of a role (airline agents work for BA), made as the CLI makes them, then logged in."""
    numbers = itertools.count(1)

    async def make(role: Role = Role.CUSTOMER, *, last_name: str = "Example") -> Account:
        number = next(numbers)
        airline = AIRLINE if role is Role.AIRLINE_AGENT else None
        full_name = f"{role.title()} {number} {last_name}"
        return await new_account(pool, client, role, number, full_name=full_name, airline_code=airline)

    return make


@pytest.fixture
async def customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


@pytest.fixture
async def other_customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


@pytest.fixture
async def agent(make_account: MakeAccount) -> Account:
    return await make_account(Role.TRAVEL_AGENT)


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    return await make_account(Role.ADMIN)


class SmallFlight(msgspec.Struct, frozen=True):
    """A BA flight JFK-LHR ten days out: ECONOMY Y (``y_seats``) and M (3 seats, cheaper), BUSINESS J (4), and a
    seat map of row 1 BUSINESS (1A-1D) and rows 2-6 ECONOMY (A-F).
    """

    id: int
    y_seats: int
    departure_at: datetime


async def add_small_flight(
    pool: AsyncConnectionPool, *, y_seats: int = 5, number: str = "BA9001", airline: str = "BA", y_stripes: int = 1
) -> SmallFlight:
    """The flight; with ``y_stripes``, its Y bucket's counter split over that many rows (migration 0015)."""
    departure = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    async with transaction(pool) as tx:
        row = await (
            await tx.execute(
                "INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at,"
                " aircraft) VALUES (%s, %s, 'JFK', 'LHR', %s, %s, 'A320') RETURNING id",
                (airline, number, departure, departure + timedelta(hours=7)),
            )
        ).fetchone()
        assert row is not None
        flight_id = row["id"]
        await tx.execute(
            """
            INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,
                                       seats_available, refundable)
            VALUES (%(id)s, 'ECONOMY', 'Y', 45000, 'USD', %(y)s, %(y)s, false),
                   (%(id)s, 'ECONOMY', 'M', 30000, 'USD', 3, 3, false),
                   (%(id)s, 'BUSINESS', 'J', 250000, 'USD', 4, 4, true)
            """,
            {"id": flight_id, "y": y_seats},
        )
        await tx.execute(
            """
            INSERT INTO seats (flight_id, seat_no, cabin, row_no, features)
            SELECT %(id)s, r || l, CASE WHEN r = 1 THEN 'BUSINESS' ELSE 'ECONOMY' END, r, '{}'::text[]
            FROM generate_series(1, 6) AS r, unnest('{A,B,C,D,E,F}'::text[]) AS l
            WHERE r > 1 OR l <= 'D'
            """,
            {"id": flight_id},
        )
        await tx.execute(
            "SELECT split_fare_seats(array_agg(id), %s, 1) FROM flight_prices"
            " WHERE flight_id = %s AND fare_class = 'Y'",
            (y_stripes, flight_id),
        )
    return SmallFlight(id=flight_id, y_seats=y_seats, departure_at=departure)


@pytest.fixture
async def flight(pool: AsyncConnectionPool, reference_data: None) -> SmallFlight:
    return await add_small_flight(pool)


def adult(first: str = "Ann", last: str = "Example", *, born: date = date(1985, 4, 2)) -> dict[str, Any]:
    return {"first_name": first, "last_name": last, "date_of_birth": born.isoformat(), "type": "ADULT"}


def child(first: str = "Cal", last: str = "Example") -> dict[str, Any]:
    born = datetime.now(UTC).date() - timedelta(days=365 * 7)
    return {"first_name": first, "last_name": last, "date_of_birth": born.isoformat(), "type": "CHILD"}


def infant(first: str = "Ivy", last: str = "Example") -> dict[str, Any]:
    born = datetime.now(UTC).date() - timedelta(days=200)
    return {"first_name": first, "last_name": last, "date_of_birth": born.isoformat(), "type": "INFANT"}


def booking_request(flight: SmallFlight, *passengers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"flight_id": flight.id, "cabin": "ECONOMY", "passengers": list(passengers) or [adult()], **fields}


async def widen_bucket(pool: AsyncConnectionPool, flight_id: int, seats: int, fare_class: str = "Y") -> None:
    """Give a bucket ``seats`` seats, none sold (for tests about something other than running out)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE flight_prices SET seats_total = %s, seats_available = %s WHERE flight_id = %s AND fare_class = %s",
            (seats, seats, flight_id, fare_class),
        )


async def fare_seats(pool: AsyncConnectionPool, flight_id: int, fare_class: str = "Y") -> int:
    """Seats left in a bucket: its row's, and its stripes' when it has them."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT fare_seats_available(id, seats_available, stripes) AS seats_available FROM flight_prices"
                " WHERE flight_id = %s AND fare_class = %s",
                (flight_id, fare_class),
            )
        ).fetchone()
    assert row is not None
    return int(row["seats_available"])


async def rows(pool: AsyncConnectionPool, query: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await (await conn.execute(query, params)).fetchall()
