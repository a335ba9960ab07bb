"""``/flights``: flight detail and seat maps, airlines and the airport lookup (public); creating and operating
flights (ADMIN, or an AIRLINE_AGENT for its own airline). Search has its own routes module.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request, Response, get, patch, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from core_api.auth.guards import PUBLIC, actor_of, principal_of, roles
from core_api.auth.schemas import Principal
from core_api.flights import service
from core_api.flights.schemas import (
    AircraftPage,
    AirlinePage,
    AirportMatches,
    CreatedFlight,
    FlightCreate,
    FlightDetail,
    FlightUpdate,
    SeatMap,
)
from core_api.users.schemas import Role
from core_api.web.deps import Pool, Redis
from core_api.web.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed
from core_api.web.parameters import PositiveIdPath

__all__ = ["route_handlers"]


_OPERATORS = roles(Role.ADMIN, Role.AIRLINE_AGENT)
_FLIGHT_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_MAX_BIGINT = 2**63 - 1


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    assert principal is not None  # the guard lets no anonymous caller through
    return principal


def _flight_id(value: str) -> int:
    # Parsed here rather than by an ``:int`` path type, so a malformed id is a 422 naming ``id``, not a bare 4xx.
    if not _FLIGHT_ID.match(value) or int(value) > _MAX_BIGINT:
        raise ValidationFailed.for_field("id", "must be a positive integer")
    return int(value)


@get("/flights/airlines", operation_id="listAirlines", tags=["flights"], opt=PUBLIC)
async def list_airlines(
    pool: Pool,
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 100,
) -> AirlinePage:
    """Airlines, by code."""
    return await service.list_airlines(pool, page=page, page_size=page_size)


@get("/flights/aircraft", operation_id="listAircraft", tags=["flights"], opt=PUBLIC, sync_to_thread=False)
def list_aircraft(
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 100,
) -> AircraftPage:
    """Aircraft types, by type, each with its seats per cabin (front to back) and the rows each cabin spans: what
    `aircraft` of `POST /flights` accepts, and how many seats the fares of each cabin may hold at most. Public
    reference data, like airlines and airports.
    """
    return service.list_aircraft(page=page, page_size=page_size)


@get("/flights/airports", operation_id="searchAirports", tags=["flights"], opt=PUBLIC)
async def search_airports(
    pool: Pool,
    q: Annotated[
        str | None,
        QueryParameter(
            min_length=1, max_length=64, required=True, description="Start of an airport's IATA code, city or name."
        ),
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=50)] = 10,
) -> AirportMatches:
    """Look airports up by what a traveller types, case-insensitively, best match first: the exact IATA code, then
    codes, cities and names starting with `q`, then names or cities with a word starting with it ("heath" finds
    London Heathrow). For autocomplete: a ranked top `limit`, not a paged list.
    """
    if q is None:
        # Declared optional only so that a missing `q` is reported by name, like every other bad parameter.
        raise ValidationFailed.for_field("q", "required")
    return await service.search_airports(pool, q, limit=limit)


@get("/flights/{id:str}", operation_id="getFlight", tags=["flights"], opt=PUBLIC, raises=[NotFound])
async def get_flight(pool: Pool, id: PositiveIdPath) -> FlightDetail:
    """A flight with its fare buckets and live seat availability. Times are UTC; each airport carries its time
    zone. Prices are `{amount, currency}` in minor units.
    """
    return await service.get_flight(pool, _flight_id(id))


@get("/flights/{id:str}/seats", operation_id="getSeatMap", tags=["flights"], opt=PUBLIC, raises=[NotFound])
async def get_seat_map(pool: Pool, id: PositiveIdPath) -> SeatMap:
    """A flight's seat map by cabin (front to back) and row: each seat's number, status (AVAILABLE, HELD, OCCUPIED,
    BLOCKED) and features (WINDOW, AISLE, MIDDLE, EXIT_ROW, EXTRA_LEGROOM).
    """
    return await service.get_seat_map(pool, _flight_id(id))


@post(
    "/flights",
    operation_id="createFlight",
    tags=["flights"],
    opt=_OPERATORS,
    status_code=HTTP_201_CREATED,
    raises=[Forbidden, Conflict],
)
async def create_flight(
    request: Request[Any, Any, Any], pool: Pool, redis: Redis, data: JSONBody[FlightCreate]
) -> Response[CreatedFlight]:
    """Create a flight with its fare buckets and a seat map generated from the aircraft's layout (ADMIN, or an
    AIRLINE_AGENT for its own airline; another airline is 403).

    `aircraft` defaults to the airline's type for the route's length (`GET /flights/aircraft` lists the types and
    their cabins). The `seats` of each cabin's fares add up to at most that cabin's seats; the seats no fare covers
    are BLOCKED in the seat map (the back of the cabin). A fare for a cabin the aircraft lacks is refused. All fares
    share one currency. The same flight number departing at the same time again is 409.
    """
    booking = request.app.state.bookings.settings.booking  # how big buckets are striped
    striping = (booking.fare_stripes, booking.stripe_min_seats)
    flight = await service.create_flight(pool, redis, actor_of(request), _caller(request), data, striping=striping)
    return Response(flight, status_code=HTTP_201_CREATED, headers={"Location": f"{request.url.path}/{flight.id}"})


@patch(
    "/flights/{id:str}",
    operation_id="updateFlight",
    tags=["flights"],
    opt=_OPERATORS,
    raises=[NotFound, Forbidden, InvalidState],
)
async def update_flight(
    request: Request[Any, Any, Any], pool: Pool, redis: Redis, id: PositiveIdPath, data: JSONBody[FlightUpdate]
) -> FlightDetail:
    """Change a flight's status and/or times (ADMIN, or an AIRLINE_AGENT of its airline; another airline's agent
    is 403 — flights are public, so there is nothing to hide).

    Statuses move forward: SCHEDULED → DELAYED | CANCELLED | DEPARTED, DELAYED → CANCELLED | DEPARTED (or a new
    delay), DEPARTED → ARRIVED; CANCELLED and ARRIVED are final (409 INVALID_STATE). DEPARTED is accepted from one
    hour before the (revised) departure, ARRIVED from two hours before the arrival (409 earlier). `departure_at`
    alone moves both times, keeping the block time. A delay, cancellation or re-timing queues a `flight.changed`
    event for every booking awaiting payment or confirmed, which notifies its travellers.
    """
    return await service.update_flight(pool, redis, actor_of(request), _caller(request), _flight_id(id), data)


route_handlers = [list_airlines, list_aircraft, search_airports, get_flight, get_seat_map, create_flight, update_flight]
