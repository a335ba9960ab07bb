"""Writing the demo seed into PostgreSQL: one transaction, bulk ``COPY``, and nothing written twice.

Airlines and airports are inserted with ``ON CONFLICT DO NOTHING`` (airports through a temporary table, as
``COPY`` has no conflict clause). Flights already present for a (flight number, departure) are left alone, so a
second run adds nothing and a run over a longer range only adds the missing days. Flight ids are drawn from the
table's own identity sequence before the ``COPY`` (``COPY`` may write a ``GENERATED ALWAYS`` column), so fare
buckets and seats can reference them without a read-back and later inserts keep numbering after them. Fare
buckets and seats take their ids from their identity columns.

Each flight is written with its status at seeding time: ARRIVED once landed, DEPARTED in the air, else SCHEDULED.
With ``history_days``, the days before ``start`` get their flights too, with fare buckets but no seat map (nobody
picks a seat on a flight that has left, and seat maps are most of the volume); then ``history`` adds the bookings
made over those days, in the same transaction.

Seats are most of the volume (about 47,000 a day). Each aircraft type's seat map is copied once into a temporary
table and multiplied out server-side (``INSERT ... SELECT`` per chunk of flights): measured a little faster than
streaming every seat row through ``COPY``, and it leaves the Python process idle. The server's per-row cost
(three indexes and the foreign-key check on ``flight_id``) is what bounds the seed's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from core_api.seed.history import SMALL_HISTORY, HistoryVolume, seed_history
from core_api.seed.reference import AIRLINES, Airport, load_airports
from core_api.seed.schedule import PlannedFlight, daily_services, planned_flights
from core_api.storage.migrations import analyze_loaded

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["DEFAULT_RANDOM_SEED", "SeedProgress", "SeedSummary", "is_seeded", "seed_reference_and_flights"]

# Two seeds started together (``flightdesk up`` in two shells) queue here instead of racing: "fd-seed".
_ADVISORY_LOCK_KEY = 0x66642D73656564
# The history's random draws start from this unless told otherwise: the same seed value, the same bookings.
DEFAULT_RANDOM_SEED = 20260301
# How many rows to write between two progress updates.
_PROGRESS_EVERY = 5_000

_INSERT_AIRLINE = """
INSERT INTO airlines (code, name, country) VALUES (%(code)s, %(name)s, %(country)s)
ON CONFLICT (code) DO NOTHING
"""
_CREATE_AIRPORT_STAGING = "CREATE TEMPORARY TABLE seed_airports (LIKE airports) ON COMMIT DROP"
_COPY_AIRPORT_STAGING = (
    "COPY seed_airports (code, name, city, country, tz, latitude, longitude) FROM STDIN (FORMAT BINARY)"
)
_INSERT_STAGED_AIRPORTS = """
INSERT INTO airports (code, name, city, country, tz, latitude, longitude)
SELECT code, name, city, country, tz, latitude, longitude FROM seed_airports
ON CONFLICT (code) DO NOTHING
"""
_EXISTING_DEPARTURES = """
SELECT flight_number, departure_at FROM flights
WHERE departure_at >= %(since)s::timestamptz AND departure_at <= %(until)s::timestamptz
"""
_RESERVE_FLIGHT_IDS = "SELECT nextval(pg_get_serial_sequence('flights', 'id')) FROM generate_series(1, %(count)s::int)"
_COPY_FLIGHTS = """
COPY flights (id, airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft, status)
FROM STDIN (FORMAT BINARY)
"""
_COPY_FARES = """
COPY flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total, seats_available, refundable)
FROM STDIN (FORMAT BINARY)
"""
_CREATE_SEAT_MAP_STAGING = """
CREATE TEMPORARY TABLE seed_seat_maps (aircraft text, seat_no text, cabin text, row_no smallint, features text[])
ON COMMIT DROP
"""
_COPY_SEAT_MAP_STAGING = "COPY seed_seat_maps (aircraft, seat_no, cabin, row_no, features) FROM STDIN (FORMAT BINARY)"
_INSERT_SEATS_FROM_MAPS = """
INSERT INTO seats (flight_id, seat_no, cabin, row_no, features)
SELECT f.flight_id, m.seat_no, m.cabin, m.row_no, m.features
FROM unnest(%(flight_ids)s::bigint[], %(aircraft)s::text[]) AS f (flight_id, aircraft)
JOIN seed_seat_maps AS m USING (aircraft)
ORDER BY f.flight_id
"""
# Into an empty seats table (the first seed), building the key and checking the flight reference once at the
# end is about twice as fast as maintaining them row by row; the transaction keeps this invisible to others.
_SEATS_EMPTY = "SELECT NOT EXISTS (SELECT 1 FROM seats)"
_DROP_SEAT_CONSTRAINTS = "ALTER TABLE seats DROP CONSTRAINT seats_flight_id_fkey, DROP CONSTRAINT seats_pkey"
_RESTORE_SEAT_CONSTRAINTS = """
ALTER TABLE seats
    ADD CONSTRAINT seats_pkey PRIMARY KEY (flight_id, seat_no),
    ADD CONSTRAINT seats_flight_id_fkey FOREIGN KEY (flight_id) REFERENCES flights (id) ON DELETE CASCADE
"""
# Flights per seat INSERT: small enough for a moving progress bar, large enough that round trips do not count.
_SEAT_CHUNK_FLIGHTS = 500
_IS_SEEDED = "SELECT EXISTS (SELECT 1 FROM flights)"


class SeedProgress(Protocol):
    """Receives progress as the seed writes; ``flightdesk seed`` draws bars from it."""

    def start(self, task: str, total: int) -> None: ...

    def advance(self, task: str, amount: int = 1) -> None: ...


@dataclass(frozen=True)
class SeedSummary:
    """Rows this run inserted (zero for what was already there) and how long it took."""

    airports: int
    airlines: int
    flights: int
    fares: int
    seats: int
    seconds: float
    users: int = 0
    bookings: int = 0
    passengers: int = 0
    audit_events: int = 0


class _Silent:
    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, task: str, amount: int = 1) -> None:
        pass


async def is_seeded(conninfo: str) -> bool:
    """Whether the database has any flights."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute(_IS_SEEDED)).fetchone()
        return bool(row and row[0])


async def seed_reference_and_flights(
    conninfo: str,
    *,
    days: int = 60,
    start: date | None = None,
    history_days: int = 0,
    history: HistoryVolume = SMALL_HISTORY,
    random_seed: int = DEFAULT_RANDOM_SEED,
    progress: SeedProgress | None = None,
    striping: tuple[int, int] = (1, 1),
) -> SeedSummary:
    """Load airlines, airports and ``days`` days of flights from ``start`` (default: today in UTC), all or nothing.
    ``striping`` (stripes, minimum seats) splits the counters of the big fare buckets still on sale, once their
    history is sold (``split_fare_seats``, migration 0015).

    With ``history_days``, also the flights of that many days before ``start`` and the bookings made over the
    ``history_days`` days before now (``history`` says how many), with their users and audit trail.
    Safe to run again: rows already present are skipped, and the summary counts only the rows this run added.
    """
    if days < 0 or history_days < 0:
        raise ValueError("days must not be negative")
    began = time.perf_counter()
    progress = progress or _Silent()
    now = datetime.now(UTC)
    first_day = start or now.date()
    airports = load_airports()
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            airlines_added = await _insert_airlines(conn)
            airports_added = await _insert_airports(conn, airports.values(), progress)
            flights, fares, seats = await _write_flights(conn, first_day, days, history_days, now, progress)
            added = await seed_history(
                conn, days=history_days, volume=history, now=now, random_seed=random_seed, progress=progress
            )
            await conn.execute(_STRIPE_FARES, {"stripes": striping[0], "min_seats": striping[1]})
        # Statistics of everything loaded, not left to autovacuum (off here, and late anywhere after a bulk load).
        await analyze_loaded(conn)
    return SeedSummary(
        airports=airports_added,
        airlines=airlines_added,
        flights=flights,
        fares=fares,
        seats=seats,
        seconds=time.perf_counter() - began,
        users=added.users,
        bookings=added.bookings,
        passengers=added.passengers,
        audit_events=added.audit_events,
    )


_STRIPE_FARES = """
SELECT split_fare_seats(array_agg(p.id), %(stripes)s::int, %(min_seats)s::int)
FROM flight_prices AS p JOIN flights AS f ON f.id = p.flight_id
WHERE f.departure_at > now() AND %(stripes)s::int > 1
"""


async def _write_flights(
    conn: AsyncConnection[Any], first_day: date, days: int, history_days: int, now: datetime, progress: SeedProgress
) -> tuple[int, int, int]:
    """The flights missing from the days before ``first_day`` and from it on, with fares; seat maps from it on and
    for the earlier ones still to leave.

    Returns how many flights, fares and seats were added (the planned flights are let go before the history).
    """
    past = await _new_flights(conn, list(planned_flights(first_day - timedelta(days=history_days), history_days)))
    future = await _new_flights(conn, list(planned_flights(first_day, days)))
    flights = past + future
    flight_ids = await _reserve_flight_ids(conn, len(flights))
    await _copy_flights(conn, flights, flight_ids, now, progress)
    fares = await _copy_fares(conn, flights, flight_ids, progress)
    # Seat maps from the first day on, and for the flights of the days before that have not left yet: the evening
    # flights of the local day before UTC's today, west of Greenwich, just after midnight UTC.
    mapped = [
        (flight, flight_id) for flight, flight_id in zip(past, flight_ids, strict=False) if flight.departure_at > now
    ]
    mapped += zip(future, flight_ids[len(past) :], strict=True)
    seats = await _copy_seats(conn, [flight for flight, _ in mapped], [flight_id for _, flight_id in mapped], progress)
    return len(flights), fares, seats


def _status_at(flight: PlannedFlight, now: datetime) -> str:
    if flight.arrival_at <= now:
        return "ARRIVED"
    if flight.departure_at <= now:
        return "DEPARTED"
    return "SCHEDULED"


async def _insert_airlines(conn: AsyncConnection[Any]) -> int:
    added = 0
    async with conn.cursor() as cursor:
        for airline in AIRLINES:
            await cursor.execute(
                _INSERT_AIRLINE, {"code": airline.code, "name": airline.name, "country": airline.country}
            )
            added += cursor.rowcount
    return added


async def _insert_airports(conn: AsyncConnection[Any], airports: Iterable[Airport], progress: SeedProgress) -> int:
    rows = [(a.code, a.name, a.city, a.country, a.tz, a.latitude, a.longitude) for a in airports]
    progress.start("airports", len(rows))
    async with conn.cursor() as cursor:
        await cursor.execute(_CREATE_AIRPORT_STAGING)
        async with cursor.copy(_COPY_AIRPORT_STAGING) as copy:
            copy.set_types(["text", "text", "text", "text", "text", "float8", "float8"])
            for row in rows:
                await copy.write_row(row)
        await cursor.execute(_INSERT_STAGED_AIRPORTS)
        progress.advance("airports", len(rows))
        return cursor.rowcount


async def _new_flights(conn: AsyncConnection[Any], planned: list[PlannedFlight]) -> list[PlannedFlight]:
    """The planned flights not in the table yet (a rerun, or a range overlapping an earlier seed, skips those)."""
    if not planned:
        return []
    longest = max(service.duration for service in daily_services())
    window = {
        "since": min(flight.departure_at for flight in planned),
        "until": max(flight.departure_at for flight in planned) + longest + timedelta(days=1),
    }
    cursor = await conn.execute(_EXISTING_DEPARTURES, window)
    existing = {(number, departure_at) for number, departure_at in await cursor.fetchall()}
    return [flight for flight in planned if (flight.service.flight_number, flight.departure_at) not in existing]


async def _reserve_flight_ids(conn: AsyncConnection[Any], count: int) -> list[int]:
    if count == 0:
        return []
    cursor = await conn.execute(_RESERVE_FLIGHT_IDS, {"count": count})
    return [flight_id for (flight_id,) in await cursor.fetchall()]


async def _copy_flights(
    conn: AsyncConnection[Any],
    flights: Sequence[PlannedFlight],
    flight_ids: Sequence[int],
    now: datetime,
    progress: SeedProgress,
) -> None:
    progress.start("flights", len(flights))
    async with conn.cursor() as cursor, cursor.copy(_COPY_FLIGHTS) as copy:
        copy.set_types(["int8", "text", "text", "text", "text", "timestamptz", "timestamptz", "text", "text"])
        for written, (flight_id, flight) in enumerate(zip(flight_ids, flights, strict=True), start=1):
            service = flight.service
            await copy.write_row(
                (
                    flight_id,
                    service.airline.code,
                    service.flight_number,
                    service.origin.code,
                    service.destination.code,
                    flight.departure_at,
                    flight.arrival_at,
                    service.aircraft.name,
                    _status_at(flight, now),
                )
            )
            if written % _PROGRESS_EVERY == 0:
                progress.advance("flights", _PROGRESS_EVERY)
    progress.advance("flights", len(flights) % _PROGRESS_EVERY)


async def _copy_fares(
    conn: AsyncConnection[Any], flights: Sequence[PlannedFlight], flight_ids: Sequence[int], progress: SeedProgress
) -> int:
    total = sum(len(flight.fares) for flight in flights)
    progress.start("fares", total)
    async with conn.cursor() as cursor, cursor.copy(_COPY_FARES) as copy:
        copy.set_types(["int8", "text", "text", "int8", "text", "int4", "int4", "bool"])
        for flight_id, flight in zip(flight_ids, flights, strict=True):
            for fare in flight.fares:
                await copy.write_row(
                    (
                        flight_id,
                        fare.cabin.value,
                        fare.fare_class,
                        fare.price_amount,
                        fare.currency,
                        fare.seats_total,
                        fare.seats_total,
                        fare.refundable,
                    )
                )
            progress.advance("fares", len(flight.fares))
    return total


async def _copy_seats(
    conn: AsyncConnection[Any], flights: Sequence[PlannedFlight], flight_ids: Sequence[int], progress: SeedProgress
) -> int:
    total = sum(len(flight.service.aircraft.seats) for flight in flights)
    progress.start("seats", total)
    aircraft = {flight.service.aircraft.name: flight.service.aircraft for flight in flights}
    async with conn.cursor() as cursor:
        await cursor.execute(_SEATS_EMPTY)
        row = await cursor.fetchone()
        bulk = bool(row and row[0]) and total > 0
        if bulk:
            await cursor.execute(_DROP_SEAT_CONSTRAINTS)
        await cursor.execute(_CREATE_SEAT_MAP_STAGING)
        async with cursor.copy(_COPY_SEAT_MAP_STAGING) as copy:
            copy.set_types(["text", "text", "text", "int2", "text[]"])
            for name, model in aircraft.items():
                for seat in model.seats:
                    await copy.write_row((name, seat.seat_no, seat.cabin.value, seat.row_no, list(seat.features)))
        for begin in range(0, len(flights), _SEAT_CHUNK_FLIGHTS):
            chunk = flights[begin : begin + _SEAT_CHUNK_FLIGHTS]
            await cursor.execute(
                _INSERT_SEATS_FROM_MAPS,
                {
                    "flight_ids": flight_ids[begin : begin + _SEAT_CHUNK_FLIGHTS],
                    "aircraft": [flight.service.aircraft.name for flight in chunk],
                },
            )
            progress.advance("seats", cursor.rowcount)
        if bulk:
            await cursor.execute(_RESTORE_SEAT_CONSTRAINTS)
    return total
