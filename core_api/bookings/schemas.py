"""Wire types of bookings (SPEC §4 bookings, §5): what creating and changing a booking take, and the booking read."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec

from core_api.flights.schemas import Cabin, FlightStatus, Money

__all__ = [
    "Booking",
    "BookingCreate",
    "BookingFlight",
    "BookingPage",
    "BookingStatus",
    "BookingUpdate",
    "Passenger",
    "PassengerInput",
    "PassengerRename",
    "PassengerType",
]


class BookingStatus(enum.StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class PassengerType(enum.StrEnum):
    ADULT = "ADULT"
    CHILD = "CHILD"
    INFANT = "INFANT"


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# Bounds checked while decoding, so a malformed or oversized field is refused, naming it, before any rule runs.
# Names: letters (any script) and marks, with single spaces, hyphens, apostrophes or periods between them.
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=r"^[^\W\d_](?:[^\W\d_]|[\u0300-\u036f]|(?:\. ?|[ '\u2019-])(?=[^\W\d_]))*\.?$",
        description="letters, spaces, hyphens and apostrophes (and a period after an initial), starting with a letter, "
        "e.g. Anne-Marie O'Neil",
    ),
]
Document = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9<-]{5,30}$",
        description="a passport or ID number: 5-30 letters, digits, < or - (stored encrypted)",
    ),
]
SeatNumber = Annotated[
    str, msgspec.Meta(pattern=r"^[1-9][0-9]?[A-K]$", description="a row number and seat letter, e.g. 14C")
]
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="an email address, e.g. ada@example.com",
    ),
]
Phone = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\+?[0-9(][0-9 ().-]{2,30}$",
        description="a phone number: digits, optionally a leading +, spaces, ( ) . or -",
    ),
]
FlightId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
FareClass = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]$", description="one upper-case letter, e.g. Y")]


class PassengerInput(_Request):
    """A traveller. Type follows age on the departure day: INFANT under 2 (on an adult's lap, no seat), CHILD 2-11,
    ADULT 12 and over.
    """

    first_name: Name
    last_name: Name
    date_of_birth: date
    type: PassengerType
    document: Document | None = None


class BookingCreate(_Request):
    """A booking of one fare bucket for 1-9 travellers. Without ``fare_class`` the cheapest bucket of the cabin with
    seats for everyone is taken. ``seats`` go to the seated travellers (adults and children) in order.
    """

    flight_id: FlightId
    cabin: Cabin
    passengers: Annotated[list[PassengerInput], msgspec.Meta(min_length=1, max_length=9)]
    fare_class: FareClass | None = None
    seats: Annotated[list[SeatNumber], msgspec.Meta(max_length=9)] | None = None
    contact_email: Email | None = None
    contact_phone: Phone | None = None
    customer_id: UUID | None = None


class PassengerRename(_Request):
    id: UUID
    first_name: Name | msgspec.UnsetType = msgspec.UNSET
    last_name: Name | msgspec.UnsetType = msgspec.UNSET


class BookingUpdate(_Request):
    """Contact details (while the booking is live); passenger names and seats (while it awaits payment).

    ``seats`` replaces the whole assignment: the seated travellers in order get these seats, the others none.
    """

    contact_email: Email | msgspec.UnsetType = msgspec.UNSET
    contact_phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    passengers: Annotated[list[PassengerRename], msgspec.Meta(min_length=1, max_length=9)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    seats: Annotated[list[SeatNumber], msgspec.Meta(max_length=9)] | msgspec.UnsetType = msgspec.UNSET


class Passenger(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    first_name: str
    last_name: str
    date_of_birth: date
    type: PassengerType
    seat_no: str | None
    has_document: bool


class BookingFlight(msgspec.Struct, frozen=True, kw_only=True):
    """The flight of a booking. Times are UTC; ``origin_tz`` / ``destination_tz`` (IANA zones) localise them."""

    id: int
    airline: str
    flight_number: str
    origin: str
    destination: str
    departure_at: datetime
    arrival_at: datetime
    origin_tz: str
    destination_tz: str
    status: FlightStatus


class Booking(msgspec.Struct, frozen=True, kw_only=True):
    """A booking. ``hold_expires_at`` is when an unpaid booking releases its seats; ``seats`` are the seat numbers
    it holds, in passenger order.
    """

    id: UUID
    pnr: str
    status: BookingStatus
    hold_expires_at: datetime
    total: Money
    cabin: Cabin
    fare_class: str
    passengers: list[Passenger]
    seats: list[str]
    flight: BookingFlight
    customer_id: UUID | None
    agent_id: UUID | None
    contact_email: str
    contact_phone: str | None
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    expired_at: datetime | None
    status_reason: str | None = None
    """Why the booking is in its status when that alone does not say (a late payment refunded, seats re-taken)."""


class BookingPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Booking]
    total: int
    page: int
    page_size: int
