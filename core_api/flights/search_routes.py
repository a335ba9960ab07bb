"""``GET /flights/search``: the query string read into a :class:`SearchQuery`, and the search service's answer.

Every parameter arrives as text and is read here rather than by Litestar's typed parameters, so that each fault —
``adults=abc``, ``adults=-1``, ``date=2026-02-30``, a missing ``origin`` — is a 422 problem naming the query
parameter with a message a client can show, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import ParameterKwarg, QueryParameter

from core_api.auth.guards import PUBLIC, principal_of
from core_api.flights.schemas import Cabin, SearchQuery, SearchResponse, SortKey
from core_api.flights.search import MAX_DAYS_AHEAD, MAX_SEATED, SearchService
from core_api.web.errors import FieldError, ValidationFailed

__all__ = ["parse_search_query", "provide_search_service", "route_handlers"]

_IATA = re.compile(r"[A-Za-z]{3}")
_AIRLINE = re.compile(r"[A-Za-z0-9]{2}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SORTS: dict[str, SortKey] = {"price": "price", "duration": "duration", "departure": "departure"}


class _Problems:
    """The query's faults, collected so that one answer names every bad field."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))

    def airport(self, field: str, value: str | None) -> str | None:
        if not value or not value.strip():
            self.add(field, "required: a 3-letter IATA airport code")
        elif not _IATA.fullmatch(value.strip()):
            self.add(field, "not a 3-letter IATA airport code")
        else:
            return value.strip().upper()
        return None

    def count(self, field: str, value: str | None, *, default: int, low: int, high: int) -> int:
        if value is None or not value.strip():
            return default
        text = value.strip()
        number = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else None
        if number is None or not low <= number <= high:
            self.add(field, f"must be a whole number from {low} to {high}")
            return default
        return number

    def day(self, value: str | None, now: datetime) -> date | None:
        if not value or not value.strip():
            self.add("date", "required: the departure date as YYYY-MM-DD")
            return None
        try:
            day = date.fromisoformat(value.strip()) if _ISO_DATE.fullmatch(value.strip()) else None
        except ValueError:
            day = None
        if day is None:
            self.add("date", "not a date in the form YYYY-MM-DD")
        # Today anywhere on Earth is still bookable: the earliest "today" is at UTC-12, the latest at UTC+14.
        elif day < (now - timedelta(hours=12)).date():
            self.add("date", "is in the past")
        elif day > (now + timedelta(hours=14)).date() + timedelta(days=MAX_DAYS_AHEAD):
            self.add("date", f"is more than {MAX_DAYS_AHEAD} days ahead")
        else:
            return day
        return None

    def choice(self, field: str, value: str | None, allowed: Sequence[str]) -> str | None:
        if value is None or not value.strip():
            return None
        if value.strip().casefold() in (option.casefold() for option in allowed):
            return next(option for option in allowed if option.casefold() == value.strip().casefold())
        self.add(field, f"must be one of {', '.join(allowed)}")
        return None


def parse_search_query(
    *,
    origin: str | None,
    destination: str | None,
    day: str | None,
    adults: str | None = None,
    children: str | None = None,
    infants: str | None = None,
    cabin: str | None = None,
    sort: str | None = None,
    max_price: str | None = None,
    airline: str | None = None,
    now: datetime | None = None,
) -> SearchQuery:
    """The raw query parameters as a normalised :class:`SearchQuery`, or :class:`ValidationFailed` naming every bad
    field. Codes are case-insensitive (normalised to upper case); empty optional parameters count as absent.
    Whether the airports exist is checked by :meth:`SearchService.search`, against the database.
    """
    problems = _Problems()
    origin_code = problems.airport("origin", origin)
    destination_code = problems.airport("destination", destination)
    if origin_code and origin_code == destination_code:
        problems.add("destination", "must differ from origin")
    departure_day = problems.day(day, now or datetime.now(UTC))
    adult_count = problems.count("adults", adults, default=1, low=1, high=MAX_SEATED)
    child_count = problems.count("children", children, default=0, low=0, high=MAX_SEATED - 1)
    infant_count = problems.count("infants", infants, default=0, low=0, high=MAX_SEATED)
    if adult_count + child_count > MAX_SEATED:
        problems.add("children", f"adults and children together may take at most {MAX_SEATED} seats")
    if infant_count > adult_count:
        problems.add("infants", "at most one infant per adult")
    cabin_name = problems.choice("cabin", cabin, [member.value for member in Cabin])
    sort_key = _SORTS[problems.choice("sort", sort, list(_SORTS)) or "price"]
    price_limit: int | None = None
    if max_price is not None and max_price.strip():
        text = max_price.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 15):
            problems.add("max_price", "must be a whole number of minor units, at least 0 and below 10^15")
        else:
            price_limit = int(text)
    airline_code = None
    if airline is not None and airline.strip():
        if _AIRLINE.fullmatch(airline.strip()):
            airline_code = airline.strip().upper()
        else:
            problems.add("airline", "not a 2-character IATA airline code")
    if problems.errors:
        raise ValidationFailed.of(problems.errors)
    assert origin_code
    assert destination_code
    assert departure_day
    return SearchQuery(
        origin=origin_code,
        destination=destination_code,
        date=departure_day,
        adults=adult_count,
        children=child_count,
        infants=infant_count,
        cabin=Cabin(cabin_name) if cabin_name else None,
        sort=sort_key,
        max_price=price_limit,
        airline=airline_code,
    )


def provide_search_service(state: State) -> SearchService:
    """The app's :class:`SearchService`, built on first use from the app's settings, pool and Redis."""
    service: SearchService | None = state.get("search")
    if service is None:
        # The lifespan opened the pool and Redis and keeps the app's settings in the auth context.
        service = SearchService.from_settings(state.auth.settings, state.pool, state.redis)
        state.search = service
    return service


def _integer(description: str, low: int, high: int) -> ParameterKwarg:
    # Read as text (see the module docstring) but documented as what it must be.
    schema = {"oneOf": [{"type": "integer", "minimum": low, "maximum": high}, {"type": "null"}]}
    return QueryParameter(description=description, schema_extra=schema)


def _code(description: str, pattern: str, *, required: bool = False) -> ParameterKwarg:
    # Read as text and checked by parse_search_query (which names every bad field at once), documented as it must be.
    variants: list[dict[str, object]] = [{"type": "string", "pattern": pattern}]
    return QueryParameter(
        description=description,
        required=required or None,
        schema_extra={"oneOf": variants if required else [*variants, {"type": "null"}]},
    )


def _one_of(values: Sequence[str]) -> dict[str, object]:
    return {"oneOf": [{"type": "string", "enum": list(values)}, {"type": "null"}]}


@get(
    "/flights/search",
    operation_id="searchFlights",
    tags=["flights"],
    opt=PUBLIC,
    dependencies={"search_service": Provide(provide_search_service, sync_to_thread=False)},
)
async def search_flights(
    request: Request[Any, Any, Any],
    search_service: NamedDependency[SearchService],
    origin: Annotated[
        str | None, _code("IATA code of the departure airport, e.g. JFK.", "^[A-Za-z]{3}$", required=True)
    ] = None,
    destination: Annotated[
        str | None, _code("IATA code of the arrival airport, e.g. LHR.", "^[A-Za-z]{3}$", required=True)
    ] = None,
    departure_date: Annotated[
        str | None,
        QueryParameter(
            name="date",
            description="Departure date, local at the origin airport (YYYY-MM-DD): today (anywhere on Earth) "
            f"up to {MAX_DAYS_AHEAD} days ahead.",
            required=True,
            schema_extra={"oneOf": [{"type": "string", "format": "date"}]},
        ),
    ] = None,
    adults: Annotated[str | None, _integer("Adults, 1-9 (default 1).", 1, MAX_SEATED)] = None,
    children: Annotated[
        str | None, _integer("Children, 0-8; with the adults at most 9 seats.", 0, MAX_SEATED - 1)
    ] = None,
    infants: Annotated[str | None, _integer("Infants on a lap, at most one per adult.", 0, MAX_SEATED)] = None,
    cabin: Annotated[
        str | None,
        QueryParameter(description="Only this cabin.", schema_extra=_one_of([member.value for member in Cabin])),
    ] = None,
    sort: Annotated[
        str | None,
        QueryParameter(description="Order of the offers (default price).", schema_extra=_one_of(list(_SORTS))),
    ] = None,
    max_price: Annotated[
        str | None,
        _integer("Highest price for the whole party, in minor units of the offer's currency.", 0, 10**15 - 1),
    ] = None,
    airline: Annotated[str | None, _code("Only this airline (2-character IATA code).", "^[A-Za-z0-9]{2}$")] = None,
) -> SearchResponse:
    """Search bookable flights of one route on one day, priced for the whole party.

    Offers come from every enabled source — our own inventory (`local`), Amadeus when configured, Sabre (not yet
    integrated) — each within its own time budget; `meta.sources` tells how each did (`ok`, `error`, `timeout`,
    `unavailable`) and a failed source never fails the search. The same flight and fare from two sources is listed
    once. `price` is for the whole party: a full fare per adult and child, 10 % of it per infant. Answers are cached
    for a few minutes (`meta.cached`), but the seats of our own flights are always current, and a flight created or
    changed since is never hidden by the cache. Times are UTC (`...Z`); each segment carries its airports' IANA
    zones (`origin_tz`, `destination_tz`). Codes are case-insensitive.
    """
    query = parse_search_query(
        origin=origin,
        destination=destination,
        day=departure_date,
        adults=adults,
        children=children,
        infants=infants,
        cabin=cabin,
        sort=sort,
        max_price=max_price,
        airline=airline,
    )
    response = await search_service.search(query)
    # The funnel's first step, noted in memory and written in batches (core_api.analytics.search_log).
    search_log = request.app.state.get("search_log")
    if search_log is not None:
        principal = principal_of(request)
        search_log.note(query, response, principal.id if principal else None)
    return response


route_handlers = [search_flights]
