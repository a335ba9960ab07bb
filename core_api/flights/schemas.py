"""Wire types of flights (SPEC §4 flights): search (query, offers, segments, per-source status), flight detail with
fares, seat maps, airlines and airports, and what creating and updating a flight take.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

__all__ = [
    "Airline",
    "AirlinePage",
    "Airport",
    "AirportMatches",
    "Cabin",
    "CabinSeats",
    "CreatedFlight",
    "Fare",
    "FareCreate",
    "FlightCreate",
    "FlightDetail",
    "FlightStatus",
    "FlightUpdate",
    "Money",
    "MoneyInput",
    "Offer",
    "SearchMeta",
    "SearchQuery",
    "SearchResponse",
    "Seat",
    "SeatMap",
    "SeatRow",
    "SeatStatus",
    "Segment",
    "SortKey",
    "SourceStatus",
]


class Cabin(enum.StrEnum):
    ECONOMY = "ECONOMY"
    PREMIUM_ECONOMY = "PREMIUM_ECONOMY"
    BUSINESS = "BUSINESS"
    FIRST = "FIRST"


SortKey = Literal["price", "duration", "departure"]


class Money(msgspec.Struct, frozen=True):
    """An amount in minor units of its ISO 4217 currency (JPY has none: 1 = ¥1)."""

    amount: int
    currency: str


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A validated, normalised search (upper-case codes, defaults filled); also the cache key's source."""

    origin: str
    destination: str
    date: date
    adults: int = 1
    children: int = 0
    infants: int = 0
    cabin: Cabin | None = None
    sort: SortKey = "price"
    max_price: int | None = None
    airline: str | None = None

    @property
    def seats_needed(self) -> int:
        """Infants travel on a lap and take no seat."""
        return self.adults + self.children


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    flight_number: str
    airline: str
    origin: str
    destination: str
    departure_at: datetime
    arrival_at: datetime
    duration_minutes: int


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """One bookable price for the whole party. ``flight_id`` is set for our own inventory, else ``None``."""

    offer_id: str
    source: str
    flight_id: int | None
    segments: list[Segment]
    cabin: Cabin
    fare_class: str
    price: Money
    seats_left: int


class SourceStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: Literal["ok", "error", "timeout", "unavailable"]
    count: int
    ms: float


class SearchMeta(msgspec.Struct, frozen=True, kw_only=True):
    sources: list[SourceStatus]
    cached: bool


class SearchResponse(msgspec.Struct, frozen=True, kw_only=True):
    offers: list[Offer]
    meta: SearchMeta


# Flight resources ----------------------------------------------------------------------------------------------


class FlightStatus(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    DELAYED = "DELAYED"
    CANCELLED = "CANCELLED"
    DEPARTED = "DEPARTED"
    ARRIVED = "ARRIVED"


class SeatStatus(enum.StrEnum):
    AVAILABLE = "AVAILABLE"
    HELD = "HELD"
    OCCUPIED = "OCCUPIED"
    BLOCKED = "BLOCKED"


class Airline(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: str
    country: str


class AirlinePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Airline]
    total: int
    page: int
    page_size: int


class Airport(msgspec.Struct, frozen=True, kw_only=True):
    """An airport and its IANA time zone, in which its local times are read."""

    code: str
    name: str
    city: str
    country: str
    tz: str
    latitude: float
    longitude: float


class AirportMatches(msgspec.Struct, frozen=True, kw_only=True):
    """Airports matching a lookup, best match first (a ranked top-N for autocomplete, not a paged list)."""

    items: list[Airport]


class Fare(msgspec.Struct, frozen=True, kw_only=True):
    """A fare bucket with its live availability."""

    cabin: Cabin
    fare_class: str
    price: Money
    seats_total: int
    seats_available: int
    refundable: bool


class FlightDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A flight with its fares. Times are UTC; ``origin_airport.tz`` / ``destination_airport.tz`` localise them."""

    id: int
    airline: str
    airline_name: str
    flight_number: str
    origin: str
    destination: str
    departure_at: datetime
    arrival_at: datetime
    duration_minutes: int
    status: FlightStatus
    aircraft: str
    origin_airport: Airport
    destination_airport: Airport
    fares: list[Fare]


class Seat(msgspec.Struct, frozen=True, kw_only=True):
    seat_no: str
    status: SeatStatus
    features: list[str]


class SeatRow(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    seats: list[Seat]


class CabinSeats(msgspec.Struct, frozen=True, kw_only=True):
    cabin: Cabin
    rows: list[SeatRow]


class SeatMap(msgspec.Struct, frozen=True, kw_only=True):
    """Seats grouped by cabin (front to back) then row; features are ``WINDOW``, ``AISLE``, ``MIDDLE``,
    ``EXIT_ROW``, ``EXTRA_LEGROOM``.
    """

    flight_id: int
    aircraft: str
    cabins: list[CabinSeats]


class CreatedFlight(FlightDetail, frozen=True, kw_only=True):
    """A new flight: its detail plus the seat map generated from its aircraft."""

    seat_map: SeatMap


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# Bounds checked while decoding, so a malformed or oversized field is refused, naming it, before any rule runs.
AirlineCode = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{2}$", description="a 2-character IATA airline code, e.g. BA")
]
AirportCode = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z]{3}$", description="a 3-letter IATA airport code, e.g. JFK")
]
FlightNumber = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{2}[0-9]{1,4}$", description="an airline code and 1-4 digits, e.g. BA117")
]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 with an offset, e.g. ...Z")]
# 10^12 minor units: ten billion in a two-decimal currency, far beyond any fare, far inside bigint.
Amount = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000_000)]
CurrencyCode = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="a 3-letter ISO 4217 currency code, e.g. USD")
]


class MoneyInput(_Request):
    amount: Amount
    currency: CurrencyCode


class FareCreate(_Request):
    """A fare bucket of a new flight; ``seats`` of a cabin's buckets must add up to that cabin's seats."""

    cabin: Cabin
    fare_class: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]$", description="one upper-case letter, e.g. Y")]
    price: MoneyInput
    seats: Annotated[int, msgspec.Meta(ge=0, le=999)]
    refundable: bool = False


class FlightCreate(_Request):
    """A new flight. ``aircraft`` defaults to the airline's type for the route's length."""

    airline_code: AirlineCode
    flight_number: FlightNumber
    origin: AirportCode
    destination: AirportCode
    departure_at: AwareDatetime
    arrival_at: AwareDatetime
    fares: Annotated[list[FareCreate], msgspec.Meta(min_length=1, max_length=40)]
    aircraft: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None


class FlightUpdate(_Request):
    """A status change and/or new times; absent fields stay as they are.

    ``departure_at`` alone moves both times (the block time is kept); ``arrival_at`` alone moves only the arrival.
    """

    status: FlightStatus | msgspec.UnsetType = msgspec.UNSET
    departure_at: AwareDatetime | msgspec.UnsetType = msgspec.UNSET
    arrival_at: AwareDatetime | msgspec.UnsetType = msgspec.UNSET
