"""What the flight services share: the named queries, reading a flight's detail and seat map, and who may operate
an airline's flights.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core_api.audit.schemas import EventType
from core_api.audit.service import record
from core_api.flights.schemas import Cabin, CabinSeats, FlightDetail, Seat, SeatMap, SeatRow, SeatStatus
from core_api.storage.db import load_queries, struct_row, transaction
from core_api.users.schemas import Role
from core_api.web.errors import Conflict, FieldError, Forbidden, NotFound, register_constraint

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.storage.db import DbPool

__all__ = [
    "MAX_BLOCK_TIME",
    "MAX_SCHEDULE_AHEAD",
    "QUERIES",
    "arrival_errors",
    "departure_errors",
    "ensure_may_operate",
    "fetch_detail",
    "fetch_seat_map",
    "schedule_errors",
]

QUERIES = load_queries("flights")

# The longest scheduled flights take about 19 hours; a longer block time is a typo in a date.
MAX_BLOCK_TIME = timedelta(hours=24)
# Airlines sell about a year ahead; two years leaves room without accepting the year 9999.
MAX_SCHEDULE_AHEAD = timedelta(days=731)

register_constraint(
    "flights_one_departure_per_number", Conflict("A flight with this flight number already departs at this time.")
)


def departure_errors(departure_at: datetime, now: datetime) -> list[FieldError]:
    """What is wrong with a new departure: it must be ahead, and not too far.

    Safe for any aware input, the years 1 and 9999 included: it only subtracts datetimes (a ``timedelta`` cannot
    overflow), never adds to one or converts one to UTC, which can leave datetime's range.
    """
    ahead = departure_at - now
    if ahead <= timedelta(0):
        return [FieldError("departure_at", "must be in the future")]
    if ahead > MAX_SCHEDULE_AHEAD:
        return [FieldError("departure_at", f"must be at most {MAX_SCHEDULE_AHEAD.days} days ahead")]
    return []


def arrival_errors(departure_at: datetime, arrival_at: datetime) -> list[FieldError]:
    """What is wrong with an arrival: after the departure, within a day. Safe for any aware input, like
    :func:`departure_errors`.
    """
    block_time = arrival_at - departure_at
    if block_time <= timedelta(0):
        return [FieldError("arrival_at", "must be after departure_at")]
    if block_time > MAX_BLOCK_TIME:
        return [FieldError("arrival_at", "must be at most 24 hours after departure_at")]
    return []


def schedule_errors(departure_at: datetime, arrival_at: datetime, now: datetime) -> list[FieldError]:
    """What is wrong with a new flight's times (:func:`departure_errors` and :func:`arrival_errors`). Times that
    pass are within two years of ``now``, so converting them to UTC or adding hours to them is safe.
    """
    return departure_errors(departure_at, now) + arrival_errors(departure_at, arrival_at)


async def fetch_detail(conn: AsyncConnection[Any], flight_id: int) -> FlightDetail:
    """The flight with its fares, or 404."""
    async with conn.cursor(row_factory=struct_row(FlightDetail)) as cursor:
        await cursor.execute(QUERIES["flight_detail"], {"id": flight_id})
        detail = await cursor.fetchone()
    if detail is None:
        raise NotFound("Flight not found.")
    return detail


async def fetch_seat_map(conn: AsyncConnection[Any], flight_id: int) -> SeatMap:
    """The flight's seats grouped by cabin then row (one query, rows already in map order), or 404."""
    cursor = await conn.execute(QUERIES["flight_seats"], {"id": flight_id})
    rows = await cursor.fetchall()
    if not rows:
        raise NotFound("Flight not found.")
    cabins: list[CabinSeats] = []
    for row in rows:
        if row["seat_no"] is None:  # the flight has no seats at all
            break
        if not cabins or cabins[-1].cabin != row["cabin"]:
            cabins.append(CabinSeats(cabin=Cabin(row["cabin"]), rows=[]))
        seat_rows = cabins[-1].rows
        if not seat_rows or seat_rows[-1].row != row["row_no"]:
            seat_rows.append(SeatRow(row=row["row_no"], seats=[]))
        seat_rows[-1].seats.append(
            Seat(seat_no=row["seat_no"], status=SeatStatus(row["status"]), features=list(row["features"]))
        )
    return SeatMap(flight_id=flight_id, aircraft=rows[0]["aircraft"], cabins=cabins)


async def ensure_may_operate(
    pool: DbPool, actor: Actor, principal: Principal, airline_code: str, flight_id: int | None = None
) -> None:
    """ADMIN operates every airline's flights, an AIRLINE_AGENT only its own airline's: anyone else is refused
    (403, not 404: flights are public, so there is nothing to hide) and the refusal is audited.
    """
    if principal.role is Role.ADMIN:
        return
    if principal.role is Role.AIRLINE_AGENT and principal.airline_code == airline_code:
        return
    async with transaction(pool) as tx:
        await record(
            tx,
            EventType.SECURITY_ACCESS_DENIED,
            actor,
            ("flight", flight_id) if flight_id is not None else None,
            metadata={"reason": "flight of another airline", "airline_code": airline_code},
        )
    raise Forbidden("You may only operate flights of your own airline.")
