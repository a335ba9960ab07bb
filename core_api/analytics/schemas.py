"""Wire types of ``/analytics``. Money is minor units per currency; growth rates are relative changes against the
previous period of the same length (``0.25`` = +25 %), null when the previous value was zero."""

from __future__ import annotations

import enum
from datetime import date, datetime

import msgspec

from core_api.flights.schemas import Money

__all__ = [
    "AgentBookings",
    "AirlineBookings",
    "AirlineLoad",
    "AnalyticsPeriod",
    "BookingCounts",
    "BookingPoint",
    "BookingsReport",
    "Cancellations",
    "DashboardReport",
    "FlightLoad",
    "FlightsReport",
    "Freshness",
    "Funnel",
    "LoadFigures",
    "LoadPoint",
    "RealtimeCounts",
    "RealtimePoint",
    "RealtimeReport",
    "ReportCompare",
    "ReportInterval",
    "RevenueByAirline",
    "RevenueByRoute",
    "RevenueFigures",
    "RevenuePoint",
    "RevenueReport",
    "RoleUsers",
    "RouteBookings",
    "SecurityCount",
    "UserCounts",
    "UserPoint",
    "UsersReport",
]


class ReportInterval(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class ReportCompare(enum.StrEnum):
    PREVIOUS_PERIOD = "previous_period"


class _Out(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Fields of a comparison not asked for are left out."""


class AnalyticsPeriod(_Out, frozen=True, kw_only=True):
    """Local days ``from`` to ``to`` (both included) in ``tz``, bucketed by ``interval`` (weeks from Monday)."""

    from_: date = msgspec.field(name="from")
    to: date
    tz: str
    interval: ReportInterval


class Freshness(_Out, frozen=True, kw_only=True):
    """The warehouse snapshot answered from: ``as_of`` is the PostgreSQL time its data is from (null before the
    first refresh), ``age_seconds`` how old that is now."""

    snapshot: str | None
    as_of: datetime | None
    built_at: datetime | None
    age_seconds: float | None


class BookingCounts(_Out, frozen=True, kw_only=True):
    bookings: int
    seats: int
    confirmed: int
    cancelled: int
    expired: int


class BookingPoint(BookingCounts, frozen=True, kw_only=True):
    bucket: date


class RouteBookings(_Out, frozen=True, kw_only=True):
    origin: str
    destination: str
    bookings: int
    seats: int


class AirlineBookings(_Out, frozen=True, kw_only=True):
    airline_code: str
    bookings: int
    seats: int


class AgentBookings(_Out, frozen=True, kw_only=True):
    agent_id: str
    agent_name: str | None
    bookings: int
    seats: int
    confirmed: int
    cancelled: int


class BookingsReport(_Out, frozen=True, kw_only=True):
    """Bookings by creation time: totals, series, top routes, airlines and agents."""

    period: AnalyticsPeriod
    freshness: Freshness
    totals: BookingCounts
    booked: list[Money]
    series: list[BookingPoint]
    growth: dict[str, float | None]
    top_routes: list[RouteBookings]
    by_airline: list[AirlineBookings]
    by_agent: list[AgentBookings]
    previous_period: AnalyticsPeriod | None = None
    previous: BookingCounts | None = None
    previous_series: list[BookingPoint] | None = None


class RevenueFigures(_Out, frozen=True, kw_only=True):
    """Per currency: payments succeeded (gross), refunds succeeded, and gross minus refunds (net)."""

    currency: str
    gross: int
    refunded: int
    net: int
    payments: int
    refunds: int


class RevenuePoint(RevenueFigures, frozen=True, kw_only=True):
    bucket: date


class RevenueByRoute(_Out, frozen=True, kw_only=True):
    origin: str
    destination: str
    currency: str
    net: int


class RevenueByAirline(_Out, frozen=True, kw_only=True):
    airline_code: str
    currency: str
    gross: int
    refunded: int
    net: int


class RevenueReport(_Out, frozen=True, kw_only=True):
    """Revenue net of refunds per currency (payments when they succeeded, refunds when requested); ``growth`` is
    the net revenue's, by currency."""

    period: AnalyticsPeriod
    freshness: Freshness
    totals: list[RevenueFigures]
    series: list[RevenuePoint]
    growth: dict[str, float | None]
    by_route: list[RevenueByRoute]
    by_airline: list[RevenueByAirline]
    previous_period: AnalyticsPeriod | None = None
    previous: list[RevenueFigures] | None = None
    previous_series: list[RevenuePoint] | None = None


class RoleUsers(_Out, frozen=True, kw_only=True):
    role: str
    new_users: int
    deleted_users: int
    total_users: int


class UserPoint(_Out, frozen=True, kw_only=True):
    bucket: date
    role: str
    new_users: int
    deleted_users: int


class UserCounts(_Out, frozen=True, kw_only=True):
    new_users: int
    deleted_users: int


class UsersReport(_Out, frozen=True, kw_only=True):
    """Accounts created and deleted in the period by role, and how many exist at its end."""

    period: AnalyticsPeriod
    freshness: Freshness
    totals: UserCounts
    total_users: int
    by_role: list[RoleUsers]
    series: list[UserPoint]
    growth: dict[str, float | None]
    previous_period: AnalyticsPeriod | None = None
    previous: UserCounts | None = None


class LoadFigures(_Out, frozen=True, kw_only=True):
    flights: int
    seats_total: int
    seats_sold: int
    seats_taken: int
    load_factor: float


class LoadPoint(_Out, frozen=True, kw_only=True):
    bucket: date
    flights: int
    seats_total: int
    seats_sold: int
    load_factor: float


class AirlineLoad(LoadFigures, frozen=True, kw_only=True):
    airline_code: str


class FlightLoad(_Out, frozen=True, kw_only=True):
    flight_id: int
    airline_code: str
    flight_number: str
    origin: str
    destination: str
    departure_at: datetime
    status: str
    seats_total: int
    seats_sold: int
    load_factor: float


class FlightsReport(_Out, frozen=True, kw_only=True):
    """Load factor (confirmed seats over seats on sale) of the flights departing in the period."""

    period: AnalyticsPeriod
    freshness: Freshness
    totals: LoadFigures
    series: list[LoadPoint]
    by_airline: list[AirlineLoad]
    fullest: list[FlightLoad]
    growth: dict[str, float | None]
    previous_period: AnalyticsPeriod | None = None
    previous: LoadFigures | None = None


class Funnel(_Out, frozen=True, kw_only=True):
    searches: int
    bookings: int
    paid: int
    search_to_booking: float | None
    booking_to_payment: float | None


class Cancellations(_Out, frozen=True, kw_only=True):
    cancellations: int
    cancelled_seats: int
    refunds: int
    refunded: list[Money]


class SecurityCount(_Out, frozen=True, kw_only=True):
    event_type: str
    events: int


class DashboardReport(_Out, frozen=True, kw_only=True):
    """The KPIs of the period in one call, with growth against the previous period."""

    period: AnalyticsPeriod
    freshness: Freshness
    bookings: BookingCounts
    revenue: list[RevenueFigures]
    new_users: int
    load_factor: float
    funnel: Funnel
    cancellations: Cancellations
    security_events: list[SecurityCount]
    top_routes: list[RouteBookings]
    growth: dict[str, float | None]
    previous_period: AnalyticsPeriod | None = None


class RealtimeCounts(_Out, frozen=True, kw_only=True):
    bookings_created: int
    bookings_confirmed: int
    bookings_cancelled: int
    payments_succeeded: int
    searches: int


class RealtimePoint(RealtimeCounts, frozen=True, kw_only=True):
    minute: datetime


class RealtimeReport(_Out, frozen=True, kw_only=True):
    """The last ``minutes`` minutes, straight from PostgreSQL, per minute (times in ``tz``)."""

    at: datetime
    minutes: int
    tz: str
    totals: RealtimeCounts
    revenue: list[Money]
    active_holds: int
    series: list[RealtimePoint]
    growth: dict[str, float | None]
    previous: RealtimeCounts | None = None
