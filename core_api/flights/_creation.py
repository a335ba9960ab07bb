"""Creating a flight (``POST /flights``): every rule checked first, then one transaction writes the flight, its fare
buckets, the seat map generated from its aircraft's layout and the ``flight.created`` audit row; the cached searches
of its route and day go once it has committed.

Seats per fare are given by the caller: how an airline splits a cabin between fare classes, and how much of it it
sells at all (crew rest seats, a partner's allotment, a cabin kept back), is its revenue decision, not something to
guess. The fares of a cabin hold at most the seats the cabin has, and the seats no fare covers — the back of the
cabin — are BLOCKED in the seat map. So the fare buckets and the seat map tell the same story: a cabin's buckets
never sell more seats than the map has AVAILABLE, and a traveller can choose only an AVAILABLE seat.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import record
from core_api.flights._search_cache import changing_flights
from core_api.flights._store import QUERIES, ensure_may_operate, fetch_detail, fetch_seat_map, schedule_errors
from core_api.flights.schemas import CreatedFlight, FareCreate, FlightCreate, FlightDetail
from core_api.seed.aircraft import AIRCRAFT, FLEETS, LONG_HAUL_KM, ULTRA_LONG_HAUL_KM, Aircraft, Fleet
from core_api.seed.reference import Airport, great_circle_km
from core_api.web.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.storage.db import DbPool

__all__ = ["create_flight"]

# The types of an airline the demo seed does not know: a common narrow body, wide body and flagship.
_DEFAULT_FLEET = Fleet("A320", "B787-9", "B777-300ER")


@dataclass(frozen=True)
class _NewFlight:
    """The request with its codes upper-cased. Its times stay as given (aware, any offset) until they are checked:
    converting a time at the end of the calendar (``9999-12-31T23:30-05:00``) to UTC overflows.
    """

    airline_code: str
    flight_number: str
    origin: str
    destination: str
    departure_at: datetime
    arrival_at: datetime
    aircraft: str | None
    fares: list[FareCreate]


def _normalised(data: FlightCreate) -> _NewFlight:
    return _NewFlight(
        airline_code=data.airline_code.upper(),
        flight_number=data.flight_number.upper(),
        origin=data.origin.upper(),
        destination=data.destination.upper(),
        departure_at=data.departure_at,
        arrival_at=data.arrival_at,
        aircraft=data.aircraft.strip().upper() if data.aircraft is not None else None,
        fares=data.fares,
    )


def _request_errors(flight: _NewFlight, now: datetime) -> list[FieldError]:
    """The rules that need no database."""
    errors: list[FieldError] = []
    if flight.flight_number[:2] != flight.airline_code:
        errors.append(FieldError("flight_number", f"must start with the airline code {flight.airline_code}"))
    if flight.origin == flight.destination:
        errors.append(FieldError("destination", "must differ from origin"))
    errors += schedule_errors(flight.departure_at, flight.arrival_at, now)
    if flight.aircraft is not None and flight.aircraft not in AIRCRAFT:
        errors.append(FieldError("aircraft", f"unknown aircraft; known: {', '.join(sorted(AIRCRAFT))}"))
    seen: dict[tuple[str, str], int] = {}
    currency = flight.fares[0].price.currency
    for index, fare in enumerate(flight.fares):
        first = seen.setdefault((fare.cabin.value, fare.fare_class), index)
        if first != index:
            message = f"{fare.cabin.value} {fare.fare_class} repeats fares[{first}]"
            errors.append(FieldError(f"fares[{index}].fare_class", message))
        if fare.price.currency != currency:
            errors.append(FieldError(f"fares[{index}].price.currency", f"every fare must be in {currency}"))
    return errors


def _seat_errors(fares: list[FareCreate], aircraft: Aircraft) -> list[FieldError]:
    """The fares of each cabin hold at most its seats (naming the fare that overfills it); a fare for a cabin the
    aircraft lacks is refused.
    """
    errors: list[FieldError] = []
    capacity = {cabin.value: seats for cabin, seats in aircraft.seats_per_cabin.items()}
    filed: dict[str, int] = {}
    for index, fare in enumerate(fares):
        cabin = fare.cabin.value
        if cabin not in capacity:
            message = f"the {aircraft.name} has no {cabin} cabin; its cabins are {', '.join(capacity)}"
            errors.append(FieldError(f"fares[{index}].cabin", message))
            continue
        before = filed.get(cabin, 0)
        filed[cabin] = before + fare.seats
        if before <= capacity[cabin] < filed[cabin]:
            has = f"the {aircraft.name} has {capacity[cabin]} {cabin} seats"
            errors.append(FieldError(f"fares[{index}].seats", f"{cabin} fares would hold {filed[cabin]} seats; {has}"))
    return errors


def _default_aircraft(airline_code: str, origin: Airport, destination: Airport) -> Aircraft:
    """The type the airline flies on a route of this length (seed fleets), else a common type for the length."""
    fleet = FLEETS.get(airline_code, _DEFAULT_FLEET)
    distance_km = great_circle_km(origin, destination)
    if distance_km >= ULTRA_LONG_HAUL_KM:
        return AIRCRAFT[fleet.flagship]
    if distance_km >= LONG_HAUL_KM:
        return AIRCRAFT[fleet.wide_body]
    return AIRCRAFT[fleet.narrow_body]


async def _reference_errors(tx: AsyncConnection[Any], flight: _NewFlight) -> tuple[list[FieldError], Aircraft | None]:
    """Airline and airports known; the aircraft (given, or chosen by distance) when it can be told."""
    errors: list[FieldError] = []
    row = await (await tx.execute(QUERIES["airline_exists"], {"code": flight.airline_code})).fetchone()
    if not row or not row["exists"]:
        errors.append(FieldError("airline_code", "unknown airline"))
    cursor = await tx.execute(QUERIES["airports_by_code"], {"codes": [flight.origin, flight.destination]})
    airports = {row["code"]: Airport(**row) for row in await cursor.fetchall()}
    for field in ("origin", "destination"):
        if getattr(flight, field) not in airports:
            errors.append(FieldError(field, "unknown airport"))
    if flight.aircraft is not None:
        return errors, AIRCRAFT.get(flight.aircraft)
    if flight.origin in airports and flight.destination in airports and not errors:
        return errors, _default_aircraft(flight.airline_code, airports[flight.origin], airports[flight.destination])
    return errors, None


# Bounded: most flights of a type sell their cabins alike, but the splits are the callers' to choose.
@functools.lru_cache(maxsize=256)
def _seat_columns(aircraft_name: str, sold: tuple[tuple[str, int], ...]) -> dict[str, list[Any]]:
    """The seat map of a type as the column arrays ``insert_seats`` unnests, selling ``sold`` seats of each cabin
    (the front ones; the rest of the cabin is BLOCKED).
    """
    seats = AIRCRAFT[aircraft_name].seats
    for_sale = dict(sold)
    statuses: list[str] = []
    for seat in seats:  # front to back
        left = for_sale.get(seat.cabin.value, 0)
        statuses.append("AVAILABLE" if left > 0 else "BLOCKED")
        for_sale[seat.cabin.value] = left - 1
    return {
        "seat_nos": [seat.seat_no for seat in seats],
        "cabins": [seat.cabin.value for seat in seats],
        "row_nos": [seat.row_no for seat in seats],
        "features": [",".join(seat.features) for seat in seats],
        "statuses": statuses,
    }


def _seats_sold(fares: list[FareCreate]) -> tuple[tuple[str, int], ...]:
    sold: dict[str, int] = {}
    for fare in fares:
        sold[fare.cabin.value] = sold.get(fare.cabin.value, 0) + fare.seats
    return tuple(sorted(sold.items()))


def _fare_columns(fares: list[FareCreate]) -> dict[str, list[Any]]:
    return {
        "cabins": [fare.cabin.value for fare in fares],
        "fare_classes": [fare.fare_class for fare in fares],
        "price_amounts": [fare.price.amount for fare in fares],
        "currencies": [fare.price.currency for fare in fares],
        "seats": [fare.seats for fare in fares],
        "refundable": [fare.refundable for fare in fares],
    }


def audit_snapshot(detail: FlightDetail) -> dict[str, Any]:
    """A flight as the audit trail keeps it: identity, schedule and fares, without the airport objects."""
    snapshot = msgspec.to_builtins(detail)
    for key in (
        "origin_airport",
        "destination_airport",
        "origin_tz",
        "destination_tz",
        "airline_name",
        "duration_minutes",
    ):
        snapshot.pop(key, None)
    return snapshot


async def create_flight(
    pool: DbPool,
    redis: aioredis.Redis,
    actor: Actor,
    principal: Principal,
    data: FlightCreate,
    *,
    striping: tuple[int, int] = (1, 1),
) -> CreatedFlight:
    """Check the request (422 naming every bad field, nothing written), then write it all in one transaction, after
    which the cached searches of its route and day are dropped (they could not list it). ``striping`` is
    (stripes, minimum seats): the fare buckets of at least that many seats get their counter split over that many
    rows (``split_fare_seats``, migration 0015).

    An AIRLINE_AGENT of another airline is refused (403); a flight number already departing at that time is 409.
    """
    flight = _normalised(data)
    await ensure_may_operate(pool, actor, principal, flight.airline_code)
    errors = _request_errors(flight, datetime.now(UTC))
    async with changing_flights(pool, redis) as affected:
        tx = affected.tx
        reference_errors, aircraft = await _reference_errors(tx, flight)
        errors += reference_errors
        if aircraft is not None:
            errors += _seat_errors(flight.fares, aircraft)
        if errors:
            raise ValidationFailed.of(errors)
        assert aircraft is not None
        row = await (
            await tx.execute(
                QUERIES["insert_flight"],
                {
                    "airline_code": flight.airline_code,
                    "flight_number": flight.flight_number,
                    "origin": flight.origin,
                    "destination": flight.destination,
                    # Checked by now: within two years of today, so the conversion cannot overflow.
                    "departure_at": flight.departure_at.astimezone(UTC),
                    "arrival_at": flight.arrival_at.astimezone(UTC),
                    "aircraft": aircraft.name,
                },
            )
        ).fetchone()
        assert row is not None
        flight_id = int(row["id"])
        await tx.execute(QUERIES["insert_fares"], {"flight_id": flight_id, **_fare_columns(flight.fares)})
        stripes, min_seats = striping
        await tx.execute(QUERIES["stripe_fares"], {"flight_id": flight_id, "stripes": stripes, "min_seats": min_seats})
        seat_columns = _seat_columns(aircraft.name, _seats_sold(flight.fares))
        await tx.execute(QUERIES["insert_seats"], {"flight_id": flight_id, **seat_columns})
        await affected.note(flight_id)
        detail = await fetch_detail(tx, flight_id)
        seat_map = await fetch_seat_map(tx, flight_id)
        await record(tx, EventType.FLIGHT_CREATED, actor, ("flight", flight_id), after=audit_snapshot(detail))
    return CreatedFlight(**msgspec.structs.asdict(detail), seat_map=seat_map)
