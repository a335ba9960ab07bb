"""What the booking services share: the named queries, who may see and change a booking, reading bookings back,
the outbox payload, and the seat claim that create and change both use.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from prometheus_client import Counter

from core_api.bookings.schemas import Booking, BookingStatus
from core_api.storage.db import load_queries, struct_row
from core_api.users.schemas import Role
from core_api.web.errors import (
    FieldError,
    Forbidden,
    NotFound,
    SeatTaken,
    SoldOut,
    ValidationFailed,
    register_constraint,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import AsyncConnection

    from core_api.auth.schemas import Principal

__all__ = [
    "BOOKING_EVENTS",
    "QUERIES",
    "LockedBooking",
    "Scope",
    "booking_event_params",
    "claim_seats",
    "emit_booking_event",
    "fetch_bookings",
    "lock_booking",
    "scope_of",
    "seat_errors",
]

QUERIES = load_queries("bookings")

BOOKING_EVENTS = Counter(
    "flightdesk_booking_events_total", "Booking changes committed, by outbox event type.", ["event"]
)

# Two bookings can never seat two passengers in one seat: the database says so, and it means someone was faster.
register_constraint("passengers_one_per_seat", SeatTaken("A chosen seat was taken by another booking."))
# take_fare_seats takes seats from the bucket unconditionally; the CHECK refuses to oversell it.
register_constraint("flight_prices_seats_in_range", SoldOut("Not enough seats left in this fare."))


@dataclass(frozen=True)
class Scope:
    """Which bookings a caller sees: ``all``, a customer's own, an agent's own, or an airline's flights'."""

    kind: Literal["all", "customer", "agent", "airline"]
    user_id: uuid.UUID
    airline_code: str | None = None

    def params(self) -> dict[str, Any]:
        return {"scope": self.kind, "user_id": self.user_id, "airline_code": self.airline_code}


def scope_of(principal: Principal) -> Scope:
    match principal.role:
        case Role.CUSTOMER:
            return Scope("customer", principal.id)
        case Role.TRAVEL_AGENT:
            return Scope("agent", principal.id)
        case Role.AIRLINE_AGENT:
            return Scope("airline", principal.id, principal.airline_code)
        case _:
            return Scope("all", principal.id)


class LockedBooking(msgspec.Struct, frozen=True, kw_only=True):
    """A booking's row, locked, as changes need it."""

    id: uuid.UUID
    pnr: str
    status: BookingStatus
    flight_id: int
    fare_id: int
    cabin: str
    fare_class: str
    seat_count: int
    customer_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    created_by: uuid.UUID | None
    contact_email: str
    contact_phone: str | None
    hold_expires_at: datetime
    hold_lapsed: bool
    total_amount: int
    currency: str
    airline_code: str
    departure_at: datetime
    departed: bool

    def snapshot(self) -> dict[str, Any]:
        """The booking as its audit rows show it."""
        return {
            "status": self.status,
            "pnr": self.pnr,
            "flight_id": self.flight_id,
            "cabin": self.cabin,
            "fare_class": self.fare_class,
            "seat_count": self.seat_count,
            "total": {"amount": self.total_amount, "currency": self.currency},
            "customer_id": self.customer_id,
            "agent_id": self.agent_id,
            "contact_email": self.contact_email,
        }


async def lock_booking(tx: AsyncConnection[Any], booking_id: uuid.UUID, principal: Principal) -> LockedBooking:
    """The booking locked for a change by ``principal``: 404 when they may not see it, 403 when they may see but
    not change it (business owners read only).
    """
    scope = scope_of(principal)
    visible = await (await tx.execute(QUERIES["visible_booking"], {"id": booking_id, **scope.params()})).fetchone()
    if visible is None:
        raise NotFound("Booking not found.")
    if principal.role is Role.BUSINESS_OWNER:
        raise Forbidden("Business owners may read bookings, not change them.")
    async with tx.cursor(row_factory=struct_row(LockedBooking)) as cursor:
        await cursor.execute(QUERIES["lock_booking"], {"id": booking_id})
        booking = await cursor.fetchone()
    if booking is None:
        raise NotFound("Booking not found.")
    return booking


async def fetch_bookings(conn: AsyncConnection[Any], ids: Sequence[uuid.UUID]) -> list[Booking]:
    """The bookings of ``ids`` as the API shows them, in the order of ``ids``."""
    if not ids:
        return []
    async with conn.cursor(row_factory=struct_row(Booking)) as cursor:
        await cursor.execute(QUERIES["booking_detail"], {"ids": list(ids)})
        found = {booking.id: booking for booking in await cursor.fetchall()}
    return [found[booking_id] for booking_id in ids if booking_id in found]


async def claim_seats(
    tx: AsyncConnection[Any],
    *,
    booking_id: uuid.UUID,
    flight_id: int,
    cabin: str,
    wanted: Sequence[str],
    status: str = "HELD",
) -> None:
    """Make ``wanted`` the seats the booking holds: lock them and the booking's current ones in seat order, refuse
    seats that do not exist in the cabin (422, naming ``seats[i]``) or that someone else holds (409 SEAT_TAKEN),
    release the booking's others and hold the new ones.
    """
    cursor = await tx.execute(
        QUERIES["lock_seats"], {"flight_id": flight_id, "seat_nos": list(wanted), "booking_id": booking_id}
    )
    seats = {row["seat_no"]: row for row in await cursor.fetchall()}
    errors = [
        FieldError(f"seats[{index}]", f"no seat {seat_no} in {cabin} on this flight")
        for index, seat_no in enumerate(wanted)
        if seat_no not in seats or seats[seat_no]["cabin"] != cabin
    ]
    if errors:
        raise ValidationFailed.of(errors)
    taken = [
        seat_no
        for seat_no in wanted
        if seats[seat_no]["booking_id"] != booking_id and seats[seat_no]["status"] != "AVAILABLE"
    ]
    if taken:
        raise SeatTaken(f"Seat {', '.join(taken)} is not available.")
    await tx.execute(QUERIES["release_seats"], {"flight_id": flight_id, "booking_id": booking_id, "keep": list(wanted)})
    if wanted:
        await tx.execute(
            QUERIES["hold_seats"],
            {"flight_id": flight_id, "booking_id": booking_id, "seat_nos": list(wanted), "status": status},
        )


def seat_errors(seats: list[str], seated: int) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(seats) > seated:
        errors.append(FieldError("seats", f"{len(seats)} seats for {seated} seated travellers (infants take none)"))
    seen: set[str] = set()
    for index, seat_no in enumerate(seats):
        if seat_no in seen:
            errors.append(FieldError(f"seats[{index}]", f"seat {seat_no} is listed twice"))
        seen.add(seat_no)
    return errors


def booking_event_params(event_type: str, booking: LockedBooking, *, status: BookingStatus) -> dict[str, Any]:
    """The parameters of a booking's outbox event (``insert_booking_event``, ``take_fare_seats_announced``), shaped
    for the WebSocket hub (see ``core_api.outbox``); the statement fills in the fare bucket's availability as the
    transaction leaves it.
    """
    payload = {
        "booking_id": str(booking.id),
        "pnr": booking.pnr,
        "status": status.value,
        "flight_id": booking.flight_id,
        "airline_code": booking.airline_code,
        "customer_id": str(booking.customer_id) if booking.customer_id else None,
        "agent_id": str(booking.agent_id) if booking.agent_id else None,
        "seat_count": booking.seat_count,
        "total": {"amount": booking.total_amount, "currency": booking.currency},
        "availability": {
            "flight_id": booking.flight_id,
            "cabin": booking.cabin,
            "fare_class": booking.fare_class,
            "seats_available": None,
        },
    }
    return {
        "id": uuid.uuid4(),
        "event_type": event_type,
        "booking_id": str(booking.id),
        "fare_id": booking.fare_id,
        "payload": msgspec.json.encode(payload).decode(),
    }


async def emit_booking_event(
    tx: AsyncConnection[Any], event_type: str, booking: LockedBooking, *, status: BookingStatus
) -> None:
    """The outbox event of a booking change (:func:`booking_event_params`). Sends no answer back, so it costs no
    round trip inside a pipeline.
    """
    await tx.execute(QUERIES["insert_booking_event"], booking_event_params(event_type, booking, status=status))
