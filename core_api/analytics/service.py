"""The analytics reports: warehouse marts through :mod:`warehouse.read` (DuckDB, blocking, so run in a thread),
and the realtime window from PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import anyio.to_thread
import duckdb
import polars as pl

from core_api.analytics.schemas import (
    AgentBookings,
    AirlineBookings,
    AirlineLoad,
    AnalyticsPeriod,
    BookingCounts,
    BookingPoint,
    BookingsReport,
    Cancellations,
    DashboardReport,
    FlightLoad,
    FlightsReport,
    Freshness,
    Funnel,
    LoadFigures,
    LoadPoint,
    RealtimeCounts,
    RealtimePoint,
    RealtimeReport,
    ReportInterval,
    RevenueByAirline,
    RevenueByRoute,
    RevenueFigures,
    RevenuePoint,
    RevenueReport,
    RoleUsers,
    RouteBookings,
    SecurityCount,
    UserCounts,
    UserPoint,
    UsersReport,
)
from core_api.flights.schemas import Money
from core_api.storage.db import DbPool, load_queries
from warehouse import read
from warehouse.read import Period, WarehouseReader

__all__ = [
    "bookings_report",
    "dashboard_report",
    "flights_report",
    "reader_for",
    "realtime_report",
    "revenue_report",
    "run_report",
    "users_report",
]

Q = load_queries("analytics")
T = TypeVar("T")

_BOOKING_COUNTS = ("bookings", "seats", "confirmed", "cancelled", "expired")
_REVENUE = ("gross_revenue", "refunded_amount", "net_revenue", "payments", "refunds")
_TOP = 10


@functools.cache
def reader_for(path: str) -> WarehouseReader:
    """One reader per warehouse path and process (it keeps the snapshot's connection open)."""
    return WarehouseReader(path)


async def run_report(path: str, build: Any, period: Period, compare: bool) -> Any:
    """Run a report builder on a cursor of the newest snapshot, in a worker thread."""

    def work() -> Any:
        cursor = reader_for(path).cursor() or read.empty_warehouse()
        try:
            return build(cursor, period, compare)
        finally:
            cursor.close()

    return await anyio.to_thread.run_sync(work)


def _period(period: Period) -> AnalyticsPeriod:
    return AnalyticsPeriod(from_=period.start, to=period.end, tz=period.tz, interval=ReportInterval(period.interval))


def _freshness(cursor: duckdb.DuckDBPyConnection) -> Freshness:
    fresh = read.freshness(cursor)
    age = (datetime.now(UTC) - fresh.as_of).total_seconds() if fresh.as_of else None
    return Freshness(
        snapshot=fresh.snapshot,
        as_of=fresh.as_of,
        built_at=fresh.built_at,
        age_seconds=round(age, 1) if age is not None else None,
    )


def growth_rate(current: float, previous: float) -> float | None:
    """Relative change; None when there is nothing to compare with."""
    if previous == 0:
        return None
    return round((current - previous) / previous, 4)


def _growth(current: Mapping[str, float], previous: Mapping[str, float]) -> dict[str, float | None]:
    return {name: growth_rate(value, previous.get(name, 0)) for name, value in current.items()}


def _one(frame: pl.DataFrame, columns: Iterable[str]) -> dict[str, int]:
    row = frame.row(0, named=True) if frame.height else {}
    return {name: int(row.get(name) or 0) for name in columns}


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def _make(cls: type[T], rows: Iterable[Mapping[str, Any]], **renames: str) -> list[T]:
    return [cls(**{renames.get(key, key): value for key, value in row.items()}) for row in rows]


# Bookings ---------------------------------------------------------------------------------------------------------


def _booking_counts(cursor: duckdb.DuckDBPyConnection, period: Period) -> BookingCounts:
    return BookingCounts(**_one(read.totals(cursor, "mart_bookings_revenue", _BOOKING_COUNTS, period), _BOOKING_COUNTS))


def _booking_series(cursor: duckdb.DuckDBPyConnection, period: Period) -> list[BookingPoint]:
    return _make(BookingPoint, _rows(read.series(cursor, "mart_bookings_revenue", _BOOKING_COUNTS, period)))


def bookings_report(cursor: duckdb.DuckDBPyConnection, period: Period, compare: bool) -> BookingsReport:
    totals = _booking_counts(cursor, period)
    previous_period = period.previous()
    previous = _booking_counts(cursor, previous_period)
    booked = read.totals(cursor, "mart_bookings_revenue", ["booked_amount"], period, ["currency"])
    routes = read.top(cursor, "mart_bookings_revenue", ["bookings", "seats"], period, ["origin", "destination"], _TOP)
    airlines = read.top(cursor, "mart_bookings_revenue", ["bookings", "seats"], period, ["airline_code"], _TOP)
    agents = read.top(
        cursor,
        "mart_agent_performance",
        ["bookings", "seats", "confirmed", "cancelled"],
        period,
        ["agent_id", "agent_name"],
        _TOP,
    )
    return BookingsReport(
        period=_period(period),
        freshness=_freshness(cursor),
        totals=totals,
        booked=[Money(amount=row["booked_amount"], currency=row["currency"]) for row in _rows(booked)],
        series=_booking_series(cursor, period),
        growth=_growth(msgspec_dict(totals), msgspec_dict(previous)),
        top_routes=_make(RouteBookings, _rows(routes)),
        by_airline=_make(AirlineBookings, _rows(airlines)),
        by_agent=[AgentBookings(**{**row, "agent_id": str(row["agent_id"])}) for row in _rows(agents)],
        previous_period=_period(previous_period) if compare else None,
        previous=previous if compare else None,
        previous_series=_booking_series(cursor, previous_period) if compare else None,
    )


def msgspec_dict(value: Any) -> dict[str, float]:
    return {name: getattr(value, name) for name in value.__struct_fields__}


# Revenue ----------------------------------------------------------------------------------------------------------

_REVENUE_NAMES = {"gross_revenue": "gross", "refunded_amount": "refunded", "net_revenue": "net"}


def _revenue_totals(cursor: duckdb.DuckDBPyConnection, period: Period) -> list[RevenueFigures]:
    frame = read.totals(cursor, "mart_bookings_revenue", _REVENUE, period, ["currency"])
    return [
        figure
        for figure in _make(RevenueFigures, _rows(frame), **_REVENUE_NAMES)
        if figure.payments or figure.refunds or figure.gross or figure.refunded
    ]


def _revenue_series(cursor: duckdb.DuckDBPyConnection, period: Period) -> list[RevenuePoint]:
    frame = read.series(cursor, "mart_bookings_revenue", _REVENUE, period, ["currency"])
    frame = frame.filter((pl.col("payments") > 0) | (pl.col("refunds") > 0))
    return _make(RevenuePoint, _rows(frame), **_REVENUE_NAMES)


def revenue_report(cursor: duckdb.DuckDBPyConnection, period: Period, compare: bool) -> RevenueReport:
    totals = _revenue_totals(cursor, period)
    previous_period = period.previous()
    previous = _revenue_totals(cursor, previous_period)
    previous_net = {figure.currency: figure.net for figure in previous}
    routes = read.top(cursor, "mart_bookings_revenue", ["net_revenue"], period, ["origin", "destination", "currency"])
    airlines = read.totals(
        cursor,
        "mart_bookings_revenue",
        ["gross_revenue", "refunded_amount", "net_revenue"],
        period,
        ["airline_code", "currency"],
    ).filter((pl.col("gross_revenue") != 0) | (pl.col("refunded_amount") != 0))
    return RevenueReport(
        period=_period(period),
        freshness=_freshness(cursor),
        totals=totals,
        series=_revenue_series(cursor, period),
        growth={figure.currency: growth_rate(figure.net, previous_net.get(figure.currency, 0)) for figure in totals},
        by_route=_make(RevenueByRoute, _rows(routes.filter(pl.col("net_revenue") != 0)), net_revenue="net"),
        by_airline=_make(RevenueByAirline, _rows(airlines), **_REVENUE_NAMES),
        previous_period=_period(previous_period) if compare else None,
        previous=previous if compare else None,
        previous_series=_revenue_series(cursor, previous_period) if compare else None,
    )


# Users ------------------------------------------------------------------------------------------------------------


def _user_counts(cursor: duckdb.DuckDBPyConnection, period: Period) -> UserCounts:
    frame = read.totals(cursor, "mart_user_growth", ["new_users", "deleted_users"], period)
    return UserCounts(**_one(frame, ("new_users", "deleted_users")))


def users_report(cursor: duckdb.DuckDBPyConnection, period: Period, compare: bool) -> UsersReport:
    totals = _user_counts(cursor, period)
    previous_period = period.previous()
    previous = _user_counts(cursor, previous_period)
    before = {row["role"]: row["users"] for row in _rows(read.users_before(cursor, period.start_utc))}
    in_period = _rows(read.totals(cursor, "mart_user_growth", ["new_users", "deleted_users"], period, ["role"]))
    roles = {row["role"]: row for row in in_period}
    by_role = [
        RoleUsers(
            role=role,
            new_users=int(roles.get(role, {}).get("new_users", 0)),
            deleted_users=int(roles.get(role, {}).get("deleted_users", 0)),
            total_users=int(before.get(role, 0))
            + int(roles.get(role, {}).get("new_users", 0))
            - int(roles.get(role, {}).get("deleted_users", 0)),
        )
        for role in sorted(set(before) | set(roles))
    ]
    series = read.series(cursor, "mart_user_growth", ["new_users", "deleted_users"], period, ["role"])
    return UsersReport(
        period=_period(period),
        freshness=_freshness(cursor),
        totals=totals,
        total_users=sum(role.total_users for role in by_role),
        by_role=by_role,
        series=_make(UserPoint, _rows(series)),
        growth=_growth(msgspec_dict(totals), msgspec_dict(previous)),
        previous_period=_period(previous_period) if compare else None,
        previous=previous if compare else None,
    )


# Flights ----------------------------------------------------------------------------------------------------------

_LOAD = ("flights", "seats_total", "seats_sold", "seats_taken")


def _load(cursor: duckdb.DuckDBPyConnection, period: Period) -> LoadFigures:
    frame = read.load_factor(cursor, period)
    row = frame.row(0, named=True) if frame.height else {}
    return LoadFigures(**_one(frame, _LOAD), load_factor=round(float(row.get("load_factor") or 0), 4))


def flights_report(cursor: duckdb.DuckDBPyConnection, period: Period, compare: bool) -> FlightsReport:
    totals = _load(cursor, period)
    previous_period = period.previous()
    previous = _load(cursor, previous_period)
    series = [
        LoadPoint(**{**row, "load_factor": round(float(row["load_factor"] or 0), 4)})
        for row in _rows(read.load_factor_series(cursor, period))
    ]
    by_airline = [
        AirlineLoad(**{**row, "load_factor": round(float(row["load_factor"] or 0), 4)})
        for row in _rows(read.load_factor(cursor, period, ["airline_code"]))
    ]
    fullest = [
        FlightLoad(**{**row, "load_factor": round(float(row["load_factor"] or 0), 4)})
        for row in _rows(read.flights_ranked(cursor, period, _TOP).drop("seats_taken"))
    ]
    return FlightsReport(
        period=_period(period),
        freshness=_freshness(cursor),
        totals=totals,
        series=series,
        by_airline=by_airline,
        fullest=fullest,
        growth=_growth(msgspec_dict(totals), msgspec_dict(previous)),
        previous_period=_period(previous_period) if compare else None,
        previous=previous if compare else None,
    )


# Dashboard --------------------------------------------------------------------------------------------------------


def _funnel(cursor: duckdb.DuckDBPyConnection, period: Period) -> Funnel:
    counts = _one(
        read.totals(cursor, "mart_funnel", ["searches", "bookings", "paid"], period), ("searches", "bookings", "paid")
    )
    return Funnel(
        **counts,
        search_to_booking=round(counts["bookings"] / counts["searches"], 4) if counts["searches"] else None,
        booking_to_payment=round(counts["paid"] / counts["bookings"], 4) if counts["bookings"] else None,
    )


def dashboard_report(cursor: duckdb.DuckDBPyConnection, period: Period, compare: bool) -> DashboardReport:
    previous_period = period.previous()
    bookings, previous_bookings = _booking_counts(cursor, period), _booking_counts(cursor, previous_period)
    revenue, previous_revenue = _revenue_totals(cursor, period), _revenue_totals(cursor, previous_period)
    users, previous_users = _user_counts(cursor, period), _user_counts(cursor, previous_period)
    load, previous_load = _load(cursor, period), _load(cursor, previous_period)
    funnel, previous_funnel = _funnel(cursor, period), _funnel(cursor, previous_period)
    cancellations = read.totals(
        cursor,
        "mart_cancellations_refunds",
        ["cancellations", "cancelled_seats", "refunds", "refunded_amount"],
        period,
        ["currency"],
    )
    cancel_rows = _rows(cancellations)
    security = read.totals(cursor, "mart_security_events", ["events"], period, ["event_type"])
    routes = read.top(cursor, "mart_bookings_revenue", ["bookings", "seats"], period, ["origin", "destination"], 5)
    previous_net = {figure.currency: figure.net for figure in previous_revenue}
    growth: dict[str, float | None] = {
        "bookings": growth_rate(bookings.bookings, previous_bookings.bookings),
        "seats": growth_rate(bookings.seats, previous_bookings.seats),
        "new_users": growth_rate(users.new_users, previous_users.new_users),
        "load_factor": growth_rate(load.load_factor, previous_load.load_factor),
        "searches": growth_rate(funnel.searches, previous_funnel.searches),
        **{f"net_revenue.{f.currency}": growth_rate(f.net, previous_net.get(f.currency, 0)) for f in revenue},
    }
    return DashboardReport(
        period=_period(period),
        freshness=_freshness(cursor),
        bookings=bookings,
        revenue=revenue,
        new_users=users.new_users,
        load_factor=load.load_factor,
        funnel=funnel,
        cancellations=Cancellations(
            cancellations=sum(int(row["cancellations"]) for row in cancel_rows),
            cancelled_seats=sum(int(row["cancelled_seats"]) for row in cancel_rows),
            refunds=sum(int(row["refunds"]) for row in cancel_rows),
            refunded=[
                Money(amount=int(row["refunded_amount"]), currency=row["currency"])
                for row in cancel_rows
                if row["refunded_amount"]
            ],
        ),
        security_events=[SecurityCount(**row) for row in _rows(security.filter(pl.col("events") > 0))],
        top_routes=_make(RouteBookings, _rows(routes)),
        growth=growth,
        previous_period=_period(previous_period) if compare else None,
    )


# Realtime ---------------------------------------------------------------------------------------------------------

_REALTIME = ("bookings_created", "bookings_confirmed", "bookings_cancelled", "payments_succeeded", "searches")


async def _window(pool: DbPool, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], list[Money]]:
    async with pool.connection() as conn:
        series = await (await conn.execute(Q["realtime_series"], {"start": start, "end": end})).fetchall()
        revenue = await (await conn.execute(Q["realtime_revenue"], {"start": start, "end": end})).fetchall()
    return list(series), [Money(amount=int(row["amount"]), currency=row["currency"]) for row in revenue]


async def realtime_report(pool: DbPool, minutes: int, tz: str, compare: bool) -> RealtimeReport:
    zone = ZoneInfo(tz)
    now = datetime.now(UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    series, revenue = await _window(pool, start, end)
    previous_series, _ = await _window(pool, start - timedelta(minutes=minutes), start)
    async with pool.connection() as conn:
        holds = await (await conn.execute(Q["active_holds"])).fetchone()
    totals = RealtimeCounts(**{name: sum(int(row[name]) for row in series) for name in _REALTIME})
    previous = RealtimeCounts(**{name: sum(int(row[name]) for row in previous_series) for name in _REALTIME})
    return RealtimeReport(
        at=now.astimezone(zone),
        minutes=minutes,
        tz=tz,
        totals=totals,
        revenue=revenue,
        active_holds=int(holds["holds"]) if holds else 0,
        series=[
            RealtimePoint(minute=row["minute"].astimezone(zone), **{name: int(row[name]) for name in _REALTIME})
            for row in series
        ],
        growth=_growth(msgspec_dict(totals), msgspec_dict(previous)),
        previous=previous if compare else None,
    )
