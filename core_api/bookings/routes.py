"""``/bookings``: create (customers for themselves, travel agents and admins for customers), list and read (scoped
to the caller), manage-my-booking by PNR and last name (public), change and cancel.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from core_api.auth.guards import PUBLIC, actor_of, principal_of, roles
from core_api.auth.schemas import Principal
from core_api.bookings import service
from core_api.bookings.idempotency import IdempotencyKey
from core_api.bookings.schemas import Booking, BookingCreate, BookingPage, BookingStatus, BookingUpdate
from core_api.users.schemas import Role
from core_api.web.deps import Pool
from core_api.web.errors import (
    Conflict,
    Forbidden,
    HoldExpired,
    IdempotencyKeyReused,
    InvalidState,
    NotFound,
    SeatTaken,
    SoldOut,
    ValidationFailed,
)
from core_api.web.parameters import UuidPath

__all__ = ["provide_booking_service", "route_handlers"]

_BOOKERS = roles(Role.CUSTOMER, Role.TRAVEL_AGENT, Role.ADMIN)
_PNR = re.compile(r"^[A-HJKMNP-Za-hjkmnp-z2-9]{6}$")
_FLIGHT_ID_MAX = 2**63 - 1


def provide_booking_service(state: State) -> service.BookingService:
    return state.bookings


Bookings = NamedDependency[service.BookingService]
_DEPENDENCIES = {"bookings": Provide(provide_booking_service, sync_to_thread=False)}


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    assert principal is not None  # the guard lets no anonymous caller through
    return principal


def _booking_id(value: str) -> uuid.UUID:
    # Parsed here rather than by a ``:uuid`` path type, so a malformed id is a 422 naming ``id``.
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed.for_field("id", "must be a UUID") from None


@post(
    "/bookings",
    operation_id="createBooking",
    tags=["bookings"],
    opt=_BOOKERS,
    dependencies=_DEPENDENCIES,
    status_code=HTTP_201_CREATED,
    raises=[SoldOut, SeatTaken, InvalidState, Conflict, IdempotencyKeyReused],
)
async def create_booking(
    request: Request[Any, Any, Any],
    bookings: Bookings,
    data: JSONBody[BookingCreate],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Any unique string of printable ASCII (at most 255 characters) per intended booking.",
        ),
    ] = None,
) -> Response[Booking]:
    """Hold seats of one fare bucket for 1-9 travellers; the booking awaits payment until `hold_expires_at`.

    Customers book for themselves; travel agents (and admins) for a customer (`customer_id`) or for travellers
    reached at `contact_email`. Without `fare_class` the cheapest bucket of the cabin with seats for everyone is
    taken. `seats` go to the adults and children in order (infants sit on a lap). The price is the fare per seated
    traveller plus 10 % of it per infant.

    Send an `Idempotency-Key` header to retry safely: the same key and body answer the first response again
    (`Idempotent-Replayed: true`), another body under the same key is 422 `IDEMPOTENCY_KEY_REUSED`.
    Sold out is 409 `SOLD_OUT`, a taken seat 409 `SEAT_TAKEN`, too many seats held unpaid 409 `CONFLICT`.
    """
    body = await request.body()
    principal = _caller(request)
    key = None
    if idempotency_key is not None:
        key = IdempotencyKey.of(principal.id, idempotency_key, "POST", request.url.path, body)
    result = await service.create_booking(bookings, actor_of(request), principal, data, key)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.booking_id is not None:
        headers["Location"] = f"{request.url.path}/{result.booking_id}"
    # The booking is already JSON (it may be the stored answer of an earlier request); bytes pass through as they are.
    content: Any = result.body
    return Response(content, status_code=result.status_code, media_type="application/json", headers=headers)


@get("/bookings", operation_id="listBookings", tags=["bookings"])
async def list_bookings(
    request: Request[Any, Any, Any],
    pool: Pool,
    status: Annotated[BookingStatus | None, QueryParameter(description="Only bookings in this status.")] = None,
    flight_id: Annotated[int | None, QueryParameter(ge=1, le=_FLIGHT_ID_MAX)] = None,
    departure_date: Annotated[
        date | None, QueryParameter(name="date", description="Departure day of the flight (UTC), YYYY-MM-DD.")
    ] = None,
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> BookingPage:
    """The bookings the caller may see, newest first: customers their own, travel agents those they made, airline
    agents those on their airline's flights, business owners and admins all.
    """
    return await service.list_bookings(
        pool,
        _caller(request),
        status=status,
        flight_id=flight_id,
        day=departure_date,
        page=page,
        page_size=page_size,
    )


@get("/bookings/pnr/{pnr:str}", operation_id="getBookingByPnr", tags=["bookings"], opt=PUBLIC, raises=[NotFound])
async def get_booking_by_pnr(
    pool: Pool,
    pnr: Annotated[
        str,
        PathParameter(
            pattern=_PNR.pattern,
            description="a booking reference: 6 characters from A-Z and 2-9 (no I, L, O, 0, 1), e.g. K7X2PQ",
        ),
    ],
    last_name: Annotated[
        str | None,
        QueryParameter(min_length=1, max_length=100, required=True, description="A passenger's last name."),
    ] = None,
) -> Booking:
    """Manage my booking without an account: the booking with this PNR, when one of its passengers has this last
    name (any case). Any mismatch is the same 404.
    """
    if last_name is None or not last_name.strip():
        raise ValidationFailed.for_field("last_name", "required")
    return await service.get_booking_by_pnr(pool, pnr, last_name)


@get("/bookings/{id:str}", operation_id="getBooking", tags=["bookings"], raises=[NotFound])
async def get_booking(request: Request[Any, Any, Any], pool: Pool, id: UuidPath) -> Booking:
    """One booking the caller may see (404 otherwise, whether or not it exists)."""
    return await service.get_booking(pool, _caller(request), _booking_id(id))


@patch(
    "/bookings/{id:str}",
    operation_id="updateBooking",
    tags=["bookings"],
    dependencies=_DEPENDENCIES,
    raises=[NotFound, Forbidden, InvalidState, HoldExpired, SeatTaken],
)
async def update_booking(
    request: Request[Any, Any, Any], bookings: Bookings, id: UuidPath, data: JSONBody[BookingUpdate]
) -> Booking:
    """Change contact details (while the booking is live), passenger names and seats (while it awaits payment).
    `seats` replaces the whole assignment. Business owners read only (403).
    """
    booking_id = _booking_id(id)
    return await service.update_booking(bookings, actor_of(request), _caller(request), booking_id, data)


@delete(
    "/bookings/{id:str}",
    operation_id="cancelBooking",
    tags=["bookings"],
    dependencies=_DEPENDENCIES,
    status_code=HTTP_200_OK,
    raises=[NotFound, Forbidden, InvalidState],
)
async def cancel_booking(request: Request[Any, Any, Any], bookings: Bookings, id: UuidPath) -> Booking:
    """Cancel a booking awaiting payment or confirmed: its seats return to sale at once. Answers the cancelled
    booking. Refunds of paid bookings follow the fare rules once payments exist.
    """
    booking_id = _booking_id(id)
    return await service.cancel_booking(bookings, actor_of(request), _caller(request), booking_id)


route_handlers = [create_booking, list_bookings, get_booking_by_pnr, get_booking, update_booking, cancel_booking]
