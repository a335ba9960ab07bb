"""Reading bookings: the caller's list (scoped by role in the query), one booking, and manage-my-booking by PNR."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core_api.bookings._common import QUERIES, fetch_bookings, scope_of
from core_api.bookings.schemas import Booking, BookingPage
from core_api.web.errors import NotFound

if TYPE_CHECKING:
    from datetime import date
    from uuid import UUID

    from core_api.auth.schemas import Principal
    from core_api.bookings.schemas import BookingStatus
    from core_api.storage.db import DbPool

__all__ = ["get_booking", "get_booking_by_pnr", "list_bookings"]


async def list_bookings(
    pool: DbPool,
    principal: Principal,
    *,
    status: BookingStatus | None,
    flight_id: int | None,
    day: date | None,
    page: int,
    page_size: int,
) -> BookingPage:
    """The bookings the caller may see, newest first: customers their own, travel agents those they made, airline
    agents those on their airline's flights, business owners and admins all.
    """
    params = {
        **scope_of(principal).params(),
        "status": status.value if status else None,
        "flight_id": flight_id,
        "day": day,
        "limit": page_size,
        "offset": (page - 1) * page_size,
    }
    async with pool.connection() as conn:
        row = await (await conn.execute(QUERIES["booking_page"], params)).fetchone()
        assert row is not None  # one row, whatever matches
        items = await fetch_bookings(conn, row["ids"])
    total = int(row["total"])
    return BookingPage(items=items, total=total, page=page, page_size=page_size)


async def get_booking(pool: DbPool, principal: Principal, booking_id: UUID) -> Booking:
    """One booking the caller may see, else 404 (whether it exists or not)."""
    async with pool.connection() as conn:
        params = {"id": booking_id, **scope_of(principal).params()}
        if await (await conn.execute(QUERIES["visible_booking"], params)).fetchone() is None:
            raise NotFound("Booking not found.")
        bookings = await fetch_bookings(conn, [booking_id])
    if not bookings:
        raise NotFound("Booking not found.")
    return bookings[0]


async def get_booking_by_pnr(pool: DbPool, pnr: str, last_name: str) -> Booking:
    """The booking with this PNR when a passenger has this last name (any case); one 404 for every miss, so the
    answer tells nothing about which half was wrong.
    """
    async with pool.connection() as conn:
        params = {"pnr": pnr.upper(), "last_name": " ".join(last_name.split())}
        row = await (await conn.execute(QUERIES["booking_by_pnr"], params)).fetchone()
        if row is None:
            raise NotFound("No booking matches this PNR and last name.")
        [booking] = await fetch_bookings(conn, [row["id"]])
    return booking
