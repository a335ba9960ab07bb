"""Flight operations (``PATCH /flights/{id}``): status changes and re-timing, audited, announced to every live
booking of the flight through the outbox, and dropping the cached searches of the flight's old and new day.

Statuses move forward only::

    SCHEDULED -> DELAYED | CANCELLED | DEPARTED
    DELAYED   -> CANCELLED | DEPARTED        (and DELAYED again, with new times)
    DEPARTED  -> ARRIVED
    CANCELLED, ARRIVED: final

A flight is marked DEPARTED from :data:`DEPARTED_FROM` before its departure (as scheduled or revised) and ARRIVED
from :data:`ARRIVED_FROM` before its arrival, not earlier (409): flights leave a little early, land early more
often, but nothing is off the ground weeks ahead. A flight leaving earlier than that is re-timed first.

Times change only while the flight is SCHEDULED or DELAYED and stays so. ``departure_at`` alone moves both times
(the block time is kept); ``arrival_at`` alone moves the arrival. A delay never moves the departure earlier. The
change a booking is told about is ``cancelled``, ``delayed`` (the flight is or becomes DELAYED) or ``retimed`` (a
SCHEDULED flight's times change); DEPARTED and ARRIVED are recorded but announce nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import record
from core_api.flights._search_cache import changing_flights
from core_api.flights._store import QUERIES, arrival_errors, departure_errors, ensure_may_operate, fetch_detail
from core_api.flights.schemas import FlightDetail, FlightStatus, FlightUpdate
from core_api.storage.db import struct_row
from core_api.web.errors import FieldError, InvalidState, NotFound, ValidationFailed

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.storage.db import DbPool

__all__ = ["ARRIVED_FROM", "DEPARTED_FROM", "TRANSITIONS", "update_flight"]

TRANSITIONS: dict[FlightStatus, frozenset[FlightStatus]] = {
    FlightStatus.SCHEDULED: frozenset({FlightStatus.DELAYED, FlightStatus.CANCELLED, FlightStatus.DEPARTED}),
    FlightStatus.DELAYED: frozenset({FlightStatus.CANCELLED, FlightStatus.DEPARTED}),
    FlightStatus.DEPARTED: frozenset({FlightStatus.ARRIVED}),
    FlightStatus.CANCELLED: frozenset(),
    FlightStatus.ARRIVED: frozenset(),
}
_RETIMABLE = frozenset({FlightStatus.SCHEDULED, FlightStatus.DELAYED})
DEPARTED_FROM = timedelta(hours=1)
"""How long before its departure a flight may be marked DEPARTED."""
ARRIVED_FROM = timedelta(hours=2)
"""How long before its arrival a flight may be marked ARRIVED (tail winds bring long flights in early)."""

Change = Literal["cancelled", "delayed", "retimed"]


class _Flight(msgspec.Struct, frozen=True, kw_only=True):
    """The locked row's operational fields."""

    id: int
    airline_code: str
    flight_number: str
    status: FlightStatus
    departure_at: datetime
    arrival_at: datetime

    def schedule(self) -> dict[str, Any]:
        return {"status": self.status, "departure_at": self.departure_at, "arrival_at": self.arrival_at}


@dataclass(frozen=True)
class _Plan:
    """What an update does to a flight: its new state, the audit event, and the change bookings are told about."""

    status: FlightStatus
    departure_at: datetime
    arrival_at: datetime
    event_type: EventType
    change: Change | None


def _new_times(
    current: _Flight, update: FlightUpdate, status: FlightStatus, now: datetime
) -> tuple[datetime, datetime]:
    """The flight's new times in UTC, or 422 naming what is wrong with them.

    The input is checked before any arithmetic on it: deriving the arrival from a departure in the year 9999, or
    converting such a time to UTC, would leave datetime's range (only subtractions, which yield a ``timedelta``,
    are safe on any input).
    """
    departure = current.departure_at if isinstance(update.departure_at, msgspec.UnsetType) else update.departure_at
    errors = departure_errors(departure, now) if departure != current.departure_at else []
    if not isinstance(update.arrival_at, msgspec.UnsetType):
        arrival = update.arrival_at
    elif errors:
        raise ValidationFailed.of(errors)
    else:
        arrival = current.arrival_at + (departure - current.departure_at)
    arrival_problems = arrival_errors(departure, arrival)
    if not arrival_problems and arrival != current.arrival_at and arrival <= now:
        arrival_problems.append(FieldError("arrival_at", "must be in the future"))
    errors += arrival_problems
    if status is FlightStatus.DELAYED and departure < current.departure_at:
        errors.append(FieldError("departure_at", "a delay cannot move the departure earlier"))
    if errors:
        raise ValidationFailed.of(errors)
    # Both checked: within two years of now, so the conversion cannot overflow.
    return departure.astimezone(UTC), arrival.astimezone(UTC)


def _wire_time(moment: datetime) -> str:
    """A time as every response writes it: RFC 3339 in UTC with ``Z`` (msgspec's rendering)."""
    return msgspec.json.encode(moment.astimezone(UTC)).decode()[1:-1]


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _ensure_due(current: _Flight, status: FlightStatus, now: datetime) -> None:
    """409 when ``status`` is DEPARTED or ARRIVED long before the flight's departure or arrival."""
    if status is FlightStatus.DEPARTED:
        moment, window, event = current.departure_at, DEPARTED_FROM, "leaves"
    elif status is FlightStatus.ARRIVED:
        moment, window, event = current.arrival_at, ARRIVED_FROM, "lands"
    else:
        return
    if now < moment - window:
        hours = window // timedelta(hours=1)
        raise InvalidState(
            f"{current.flight_number} {event} at {_minute(moment)}; it can be marked {status.value} from "
            f"{hours} hour{'s' if hours != 1 else ''} before that ({_minute(moment - window)}) on."
        )


def plan_update(current: _Flight, update: FlightUpdate, now: datetime) -> _Plan | None:
    """The effect of ``update`` on ``current`` (``None``: nothing changes), or why it is refused (409 / 422)."""
    allowed = TRANSITIONS[current.status]
    if not allowed:
        raise InvalidState(f"The flight is {current.status.value}; it cannot change any more.")
    status = current.status if isinstance(update.status, msgspec.UnsetType) else update.status
    if status is not current.status and status not in allowed:
        raise InvalidState(f"A {current.status.value} flight cannot become {status.value}.")
    if status is not current.status:
        _ensure_due(current, status, now)
    retiming = not (
        isinstance(update.departure_at, msgspec.UnsetType) and isinstance(update.arrival_at, msgspec.UnsetType)
    )
    if retiming and current.status not in _RETIMABLE:
        raise InvalidState(f"The times of a {current.status.value} flight cannot change.")
    if retiming and status not in _RETIMABLE:
        field = "departure_at" if not isinstance(update.departure_at, msgspec.UnsetType) else "arrival_at"
        raise ValidationFailed.for_field(field, f"a flight becoming {status.value} keeps its times")
    departure, arrival = (
        _new_times(current, update, status, now) if retiming else (current.departure_at, current.arrival_at)
    )
    retimed = (departure, arrival) != (current.departure_at, current.arrival_at)
    if status is current.status and not retimed:
        return None
    change: Change | None = None
    event_type = EventType.FLIGHT_UPDATED
    if status is FlightStatus.CANCELLED:
        change, event_type = "cancelled", EventType.FLIGHT_CANCELLED
    elif status is FlightStatus.DELAYED:
        change, event_type = "delayed", EventType.FLIGHT_DELAYED
    elif retimed:
        change = "retimed"
    return _Plan(status, departure, arrival, event_type, change)


async def _lock(tx: AsyncConnection[Any], flight_id: int) -> _Flight:
    async with tx.cursor(row_factory=struct_row(_Flight)) as cursor:
        await cursor.execute(QUERIES["lock_flight"], {"id": flight_id})
        flight = await cursor.fetchone()
    if flight is None:
        raise NotFound("Flight not found.")
    return flight


async def _airline_of(pool: DbPool, flight_id: int) -> str:
    async with pool.connection() as conn:
        row = await (await conn.execute(QUERIES["flight_airline"], {"id": flight_id})).fetchone()
    if row is None:
        raise NotFound("Flight not found.")
    return str(row["airline_code"])


async def update_flight(
    pool: DbPool, redis: aioredis.Redis, actor: Actor, principal: Principal, flight_id: int, update: FlightUpdate
) -> FlightDetail:
    """Apply a status change and/or new times in one transaction holding the flight's row lock: the flight, one
    ``flight.changed`` outbox event per live booking, and the audit row; once committed, the cached searches of its
    route on its old and new day are dropped. A request that changes nothing writes nothing and answers the flight
    as it is.
    """
    if all(isinstance(value, msgspec.UnsetType) for value in msgspec.structs.astuple(update)):
        raise ValidationFailed.for_field("body", "send at least one of status, departure_at, arrival_at")
    # The operating airline never changes, so it is checked before taking the lock.
    await ensure_may_operate(pool, actor, principal, await _airline_of(pool, flight_id), flight_id)
    async with changing_flights(pool, redis) as affected:
        tx = affected.tx
        current = await _lock(tx, flight_id)
        plan = plan_update(current, update, datetime.now(UTC))
        if plan is None:
            return await fetch_detail(tx, flight_id)
        after = {"status": plan.status, "departure_at": plan.departure_at, "arrival_at": plan.arrival_at}
        await affected.note(flight_id)  # the day it leaves on now, and below the day it leaves on after the change
        await tx.execute(QUERIES["update_flight"], {"id": flight_id, **after})
        await affected.note(flight_id)
        notified = 0
        if plan.change is not None:
            cursor = await tx.execute(
                QUERIES["notify_affected_bookings"],
                {
                    "flight_id": flight_id,
                    "flight_number": current.flight_number,
                    "change": plan.change,
                    "status": plan.status,
                    "old_departure_at": _wire_time(current.departure_at),
                    "new_departure_at": _wire_time(plan.departure_at),
                    "old_arrival_at": _wire_time(current.arrival_at),
                    "new_arrival_at": _wire_time(plan.arrival_at),
                },
            )
            notified = cursor.rowcount
        detail = await fetch_detail(tx, flight_id)
        await record(
            tx,
            plan.event_type,
            actor,
            ("flight", flight_id),
            before=current.schedule(),
            after=after,
            metadata={"change": plan.change, "notified_bookings": notified},
        )
    return detail
