"""Flight resources: reading a flight and its seat map, the airline and aircraft lists and the airport lookup;
creating and operating flights live in ``_creation`` and ``_operations`` and are exported from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core_api.flights._creation import create_flight
from core_api.flights._operations import TRANSITIONS, update_flight
from core_api.flights._store import QUERIES, fetch_detail, fetch_seat_map
from core_api.flights.schemas import (
    AircraftCabin,
    AircraftPage,
    AircraftType,
    Airline,
    AirlinePage,
    Airport,
    AirportMatches,
    Cabin,
    FlightDetail,
    SeatMap,
)
from core_api.seed.aircraft import AIRCRAFT, Aircraft
from core_api.web.errors import ValidationFailed

if TYPE_CHECKING:
    from core_api.storage.db import DbPool

__all__ = [
    "TRANSITIONS",
    "create_flight",
    "get_flight",
    "get_seat_map",
    "list_aircraft",
    "list_airlines",
    "search_airports",
    "update_flight",
]

# Word prefixes count from this length: a shorter one ("a" starts "Airport") matches thousands of names, saying nothing.
_MIN_WORD_QUERY = 3


async def get_flight(pool: DbPool, flight_id: int) -> FlightDetail:
    """A flight with its fares and live availability, or 404."""
    async with pool.connection() as conn:
        return await fetch_detail(conn, flight_id)


async def get_seat_map(pool: DbPool, flight_id: int) -> SeatMap:
    """A flight's seat map with each seat's live status, or 404."""
    async with pool.connection() as conn:
        return await fetch_seat_map(conn, flight_id)


async def list_airlines(pool: DbPool, *, page: int, page_size: int) -> AirlinePage:
    """Airlines by code, a page at a time."""
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["airlines_page"], {"limit": page_size, "offset": (page - 1) * page_size})
        rows = await cursor.fetchall()
        if rows:
            total = int(rows[0]["total"])
        else:
            row = await (await conn.execute(QUERIES["count_airlines"])).fetchone()
            total = int(row["total"]) if row else 0
    items = [Airline(code=row["code"], name=row["name"], country=row["country"]) for row in rows]
    return AirlinePage(items=items, total=total, page=page, page_size=page_size)


def _aircraft_type(aircraft: Aircraft) -> AircraftType:
    cabins = []
    for layout in aircraft.cabins:  # front to back
        rows = [seat.row_no for seat in aircraft.seats if seat.cabin == layout.cabin]
        cabins.append(
            AircraftCabin(
                cabin=Cabin(layout.cabin.value),
                seats=aircraft.seats_per_cabin[layout.cabin],
                first_row=min(rows),
                last_row=max(rows),
            )
        )
    return AircraftType(type=aircraft.name, wide_body=aircraft.wide_body, seats=len(aircraft.seats), cabins=cabins)


def list_aircraft(*, page: int, page_size: int) -> AircraftPage:
    """The aircraft types flights can be created with, by type, a page at a time (a catalogue kept in code, with
    the seat maps it generates: no database read).
    """
    names = sorted(AIRCRAFT)
    chosen = names[(page - 1) * page_size : page * page_size]
    items = [_aircraft_type(AIRCRAFT[name]) for name in chosen]
    return AircraftPage(items=items, total=len(names), page=page, page_size=page_size)


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching what starts with ``text`` taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search_airports(pool: DbPool, query: str, *, limit: int) -> AirportMatches:
    """Airports whose code, city, name or a word of the name starts with ``query`` (any case, with or without
    accents), best first.
    """
    query = " ".join(query.split())
    if not query:
        raise ValidationFailed.for_field("q", "must contain something other than spaces")
    params = {
        "q": query,
        "code": query.upper(),
        "code_pattern": _like_prefix(query.upper()),
        "pattern": _like_prefix(query),  # folded (accents, case) by the query, as the indexed side is
        "words": len(query) >= _MIN_WORD_QUERY,
        "limit": limit,
    }
    async with pool.connection() as conn:
        rows = await (await conn.execute(QUERIES["search_airports"], params)).fetchall()
    return AirportMatches(items=[Airport(**row) for row in rows])
