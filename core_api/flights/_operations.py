"""Flight operations (``PATCH /flights/{id}``): status changes and re-timing, audited, and announced to every live
booking of the flight through the outbox.

Statuses move forward only::

    SCHEDULED -> DELAYED | CANCELLED | DEPARTED
    DELAYED   -> CANCELLED | DEPARTED        (and DELAYED again, with new times)
    DEPARTED  -> ARRIVED
    CANCELLED, ARRIVED: final

Times change only while the flight is SCHEDULED or DELAYED and stays so. ``departure_at`` alone moves both times
(the block time is kept); ``arrival_at`` alone moves the arrival. A delay never moves the departure earlier. The
change a booking is told about is ``cancelled``, ``delayed`` (the flight is or becomes DELAYED) or ``retimed`` (a
SCHEDULED flight's times change); DEPARTED and ARRIVED are recorded but announce nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import record
from core_api.flights._store import QUERIES, ensure_may_operate, fetch_detail, schedule_errors
from core_api.flights.schemas import FlightDetail, FlightStatus, FlightUpdate
from core_api.storage.db import struct_row, transaction
from core_api.web.errors import FieldError, InvalidState, NotFound, ValidationFailed

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.storage.db import DbPool

__all__ = ["TRANSITIONS", "update_flight"]

TRANSITIONS: dict[FlightStatus, frozenset[FlightStatus]] = {
    FlightStatus.SCHEDULED: frozenset({FlightStatus.DELAYED, FlightStatus.CANCELLED, FlightStatus.DEPARTED}),
    FlightStatus.DELAYED: frozenset({FlightStatus.CANCELLED, FlightStatus.DEPARTED}),
    FlightStatus.DEPARTED: frozenset({FlightStatus.ARRIVED}),
    FlightStatus.CANCELLED: frozenset(),
    FlightStatus.ARRIVED: frozenset(),
}
_RETIMABLE = frozenset({FlightStatus.SCHEDULED, FlightStatus.DELAYED})

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
    departure = current.departure_at
    if not isinstance(update.departure_at, msgspec.UnsetType):
        departure = update.departure_at.astimezone(UTC)
    if not isinstance(update.arrival_at, msgspec.UnsetType):
        arrival = update.arrival_at.astimezone(UTC)
    else:
        arrival = current.arrival_at + (departure - current.departure_at)
    errors = schedule_errors(departure, arrival, now, check_departure=departure != current.departure_at)
    if arrival != current.arrival_at and arrival <= now and not any(e.field == "arrival_at" for e in errors):
        errors.append(FieldError("arrival_at", "must be in the future"))
    if status is FlightStatus.DELAYED and departure < current.departure_at:
        errors.append(FieldError("departure_at", "a delay cannot move the departure earlier"))
    if errors:
        raise ValidationFailed.of(errors)
    return departure, arrival


def plan_update(current: _Flight, update: FlightUpdate, now: datetime) -> _Plan | None:
    """The effect of ``update`` on ``current`` (``None``: nothing changes), or why it is refused (409 / 422)."""
    allowed = TRANSITIONS[current.status]
    if not allowed:
        raise InvalidState(f"The flight is {current.status.value}; it cannot change any more.")
    status = current.status if isinstance(update.status, msgspec.UnsetType) else update.status
    if status is not current.status and status not in allowed:
        raise InvalidState(f"A {current.status.value} flight cannot become {status.value}.")
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
    pool: DbPool, actor: Actor, principal: Principal, flight_id: int, update: FlightUpdate
) -> FlightDetail:
    """Apply a status change and/or new times in one transaction holding the flight's row lock: the flight, one
    ``flight.changed`` outbox event per live booking, and the audit row. A request that changes nothing writes
    nothing and answers the flight as it is.
    """
    if all(isinstance(value, msgspec.UnsetType) for value in msgspec.structs.astuple(update)):
        raise ValidationFailed.for_field("body", "send at least one of status, departure_at, arrival_at")
    # The operating airline never changes, so it is checked before taking the lock.
    await ensure_may_operate(pool, actor, principal, await _airline_of(pool, flight_id), flight_id)
    async with transaction(pool) as tx:
        current = await _lock(tx, flight_id)
        plan = plan_update(current, update, datetime.now(UTC))
        if plan is None:
            return await fetch_detail(tx, flight_id)
        after = {"status": plan.status, "departure_at": plan.departure_at, "arrival_at": plan.arrival_at}
        await tx.execute(QUERIES["update_flight"], {"id": flight_id, **after})
        notified = 0
        if plan.change is not None:
            cursor = await tx.execute(
                QUERIES["notify_affected_bookings"],
                {
                    "flight_id": flight_id,
                    "flight_number": current.flight_number,
                    "change": plan.change,
                    "status": plan.status,
                    "old_departure_at": current.departure_at,
                    "new_departure_at": plan.departure_at,
                    "old_arrival_at": current.arrival_at,
                    "new_arrival_at": plan.arrival_at,
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
