"""Changing a booking after it is made: contact, names and seats (``PATCH``), cancelling (``DELETE``) and the
worker's release of lapsed holds. Each runs in one transaction that first locks the booking's row, so a cancel and
an expiry racing for the same booking serialise and exactly one of them returns its seats.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import SYSTEM, record
from core_api.bookings._common import (
    BOOKING_EVENTS,
    QUERIES,
    LockedBooking,
    claim_seats,
    emit_booking_event,
    fetch_bookings,
    lock_booking,
    seat_errors,
)
from core_api.bookings.schemas import Booking, BookingStatus, BookingUpdate
from core_api.flights.search import invalidate_flight
from core_api.payments._refunds import reserve_cancellation_refund
from core_api.storage.db import struct_row, transaction
from core_api.web.errors import HoldExpired, InvalidState, ValidationFailed

if TYPE_CHECKING:
    from uuid import UUID

    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.bookings.service import BookingService

__all__ = ["cancel_booking", "release_lapsed_holds", "update_booking"]

logger = logging.getLogger(__name__)

_LIVE = frozenset({BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED})


async def _release(tx: AsyncConnection[Any], booking: LockedBooking, status: BookingStatus) -> None:
    """End a live booking: its seats back to the fare bucket and the seat map, its passengers unseated."""
    await tx.execute(QUERIES["give_back_fare_seats"], {"fare_id": booking.fare_id, "seats": booking.seat_count})
    await claim_seats(tx, booking_id=booking.id, flight_id=booking.flight_id, cabin=booking.cabin, wanted=[])
    await tx.execute(QUERIES["clear_passenger_seats"], {"booking_id": booking.id})
    await tx.execute(QUERIES["end_booking"], {"id": booking.id, "status": status.value})


async def _forget_cached_searches(service: BookingService, flight_ids: set[int]) -> None:
    """Seats came back: drop cached searches that may have left the flight out (best effort, after commit)."""
    for flight_id in flight_ids:
        try:
            await invalidate_flight(service.redis, service.pool, flight_id)
        except Exception:
            logger.warning("cached searches of flight %s kept", flight_id, exc_info=True)


async def cancel_booking(service: BookingService, actor: Actor, principal: Principal, booking_id: UUID) -> Booking:
    """Cancel a live booking the caller may change: seats back to the bucket and the seat map in one transaction.

    404 when the caller may not see it, 403 for read-only roles, 409 ``INVALID_STATE`` when it already ended or its
    flight has left. A paid booking is refunded as its fare allows (what remains of the payment on a refundable
    fare, nothing on another): the refund is reserved in this transaction, with the seats' release, and asked of
    the provider after COMMIT (see :mod:`core_api.payments._refunds`).
    """
    refund_id = None
    async with transaction(service.pool) as tx:
        booking = await lock_booking(tx, booking_id, principal)
        if booking.status not in _LIVE:
            raise InvalidState(f"The booking is {booking.status.value} already.")
        if booking.departed:
            raise InvalidState("The flight has departed; the booking can no longer be cancelled.")
        await _release(tx, booking, BookingStatus.CANCELLED)
        refund_id = await reserve_cancellation_refund(tx, actor, booking)
        await emit_booking_event(tx, "booking.cancelled", booking, status=BookingStatus.CANCELLED)
        [cancelled] = await fetch_bookings(tx, [booking_id])
        await record(
            tx,
            EventType.BOOKING_CANCELLED,
            actor,
            ("booking", booking_id),
            before=booking.snapshot(),
            after={"status": BookingStatus.CANCELLED},
            metadata={"seats_released": booking.seat_count, "refund_id": refund_id},
        )
    BOOKING_EVENTS.labels(event="booking.cancelled").inc()
    await _forget_cached_searches(service, {booking.flight_id})
    if refund_id is not None and service.settle_refund is not None:
        await service.settle_refund(refund_id)
    return cancelled


async def release_lapsed_holds(service: BookingService, *, limit: int = 500) -> int:
    """Expire bookings whose hold lapsed unpaid, one transaction each (``SKIP LOCKED``: several workers share the
    work, and a booking being cancelled right now is left to the cancel). Returns how many were expired.
    """
    expired = 0
    flights: set[int] = set()
    while expired < limit:
        async with transaction(service.pool) as tx:
            row = await (await tx.execute(QUERIES["lapsed_hold"])).fetchone()
            if row is None:
                break
            async with tx.cursor(row_factory=struct_row(LockedBooking)) as cursor:
                await cursor.execute(QUERIES["lock_booking"], {"id": row["id"]})
                booking = await cursor.fetchone()
            assert booking is not None
            await _release(tx, booking, BookingStatus.EXPIRED)
            await emit_booking_event(tx, "booking.expired", booking, status=BookingStatus.EXPIRED)
            await record(
                tx,
                EventType.BOOKING_EXPIRED,
                SYSTEM,
                ("booking", booking.id),
                before=booking.snapshot(),
                after={"status": BookingStatus.EXPIRED},
                metadata={"seats_released": booking.seat_count, "hold_expires_at": booking.hold_expires_at},
            )
        expired += 1
        flights.add(booking.flight_id)
    BOOKING_EVENTS.labels(event="booking.expired").inc(expired)
    await _forget_cached_searches(service, flights)
    if expired:
        logger.info("released %d lapsed holds", expired)
    return expired


def _unset(value: object) -> bool:
    return isinstance(value, msgspec.UnsetType)


async def _rename(tx: AsyncConnection[Any], booking: LockedBooking, update: BookingUpdate) -> list[dict[str, Any]]:
    assert not _unset(update.passengers)
    renamed: list[dict[str, Any]] = []
    for index, passenger in enumerate(update.passengers):  # type: ignore[arg-type]
        first = None if _unset(passenger.first_name) else passenger.first_name
        last = None if _unset(passenger.last_name) else passenger.last_name
        params = {"id": passenger.id, "booking_id": booking.id, "first_name": first, "last_name": last}
        cursor = await tx.execute(QUERIES["rename_passenger"], params)
        if cursor.rowcount != 1:
            raise ValidationFailed.for_field(f"passengers[{index}].id", "no such passenger in this booking")
        renamed.append({"id": str(passenger.id), "first_name": first, "last_name": last})
    return renamed


async def _reseat(tx: AsyncConnection[Any], booking: LockedBooking, seats: list[str]) -> None:
    rows = await (await tx.execute(QUERIES["passenger_seating"], {"booking_id": booking.id})).fetchall()
    seated = [row["id"] for row in rows if row["type"] != "INFANT"]
    errors = seat_errors(seats, len(seated))
    if errors:
        raise ValidationFailed.of(errors)
    await claim_seats(tx, booking_id=booking.id, flight_id=booking.flight_id, cabin=booking.cabin, wanted=seats)
    await tx.execute(QUERIES["clear_passenger_seats"], {"booking_id": booking.id})
    params = {"booking_id": booking.id, "passenger_ids": seated[: len(seats)], "seat_nos": seats}
    await tx.execute(QUERIES["assign_passenger_seats"], params)


def _check_changeable(booking: LockedBooking, update: BookingUpdate) -> None:
    if booking.status not in _LIVE:
        raise InvalidState(f"The booking is {booking.status.value}; it can no longer change.")
    travel_changes = not (_unset(update.passengers) and _unset(update.seats))
    if travel_changes and booking.status is not BookingStatus.PENDING_PAYMENT:
        raise InvalidState("Names and seats change only while the booking awaits payment.")
    if booking.status is BookingStatus.PENDING_PAYMENT and booking.hold_lapsed:
        raise HoldExpired("The hold on this booking has lapsed.")
    if booking.departed:
        raise InvalidState("The flight has departed.")


async def update_booking(
    service: BookingService, actor: Actor, principal: Principal, booking_id: UUID, update: BookingUpdate
) -> Booking:
    """Change contact details (live bookings), passenger names and seats (awaiting payment) in one transaction.

    404 when the caller may not see the booking, 403 for read-only roles, 409 ``INVALID_STATE`` / ``HOLD_EXPIRED``
    / ``SEAT_TAKEN``, 422 naming the field.
    """
    if all(_unset(value) for value in msgspec.structs.astuple(update)):
        raise ValidationFailed.for_field("body", "send at least one of contact_email, contact_phone, passengers, seats")
    async with transaction(service.pool) as tx:
        booking = await lock_booking(tx, booking_id, principal)
        _check_changeable(booking, update)
        changes: dict[str, Any] = {}
        if not (_unset(update.contact_email) and _unset(update.contact_phone)):
            email = booking.contact_email if _unset(update.contact_email) else update.contact_email
            phone = booking.contact_phone if _unset(update.contact_phone) else update.contact_phone
            params = {"id": booking_id, "contact_email": email, "contact_phone": phone}
            await tx.execute(QUERIES["update_contact"], params)
            changes.update(contact_email=email, contact_phone=phone)
        if not _unset(update.passengers):
            changes["passengers"] = await _rename(tx, booking, update)
        if not _unset(update.seats):
            await _reseat(tx, booking, list(update.seats))  # type: ignore[arg-type]
            changes["seats"] = update.seats
        await tx.execute(QUERIES["touch_booking"], {"id": booking_id})
        await emit_booking_event(tx, "booking.updated", booking, status=booking.status)
        [updated] = await fetch_bookings(tx, [booking_id])
        await record(
            tx,
            EventType.BOOKING_UPDATED,
            actor,
            ("booking", booking_id),
            before=booking.snapshot(),
            after=changes,
            metadata={"fields": sorted(changes)},
        )
    BOOKING_EVENTS.labels(event="booking.updated").inc()
    return updated
