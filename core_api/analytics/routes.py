"""``/analytics``: dashboard, bookings, revenue, users and flights from the warehouse marts, realtime from
PostgreSQL (BUSINESS_OWNER, ADMIN).

Every report takes ``from`` and ``to`` (local dates in ``tz``, both included; default the last 30 days up to
today), ``tz`` (an IANA zone, default UTC), ``interval`` (``day``, ``week`` from Monday, ``month``) and
``compare=previous_period``; growth rates are against the period of the same length just before.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

from litestar import Request, get
from litestar.params import QueryParameter

from core_api.analytics import service
from core_api.analytics.schemas import (
    BookingsReport,
    DashboardReport,
    FlightsReport,
    RealtimeReport,
    ReportCompare,
    ReportInterval,
    RevenueReport,
    UsersReport,
)
from core_api.auth.guards import roles
from core_api.users.schemas import Role
from core_api.web.deps import Pool
from core_api.web.errors import ValidationFailed
from warehouse.read import Period

__all__ = ["route_handlers"]

_READERS = roles(Role.ADMIN, Role.BUSINESS_OWNER)
_DEFAULT_DAYS = 30
# Longest period one report covers (about three years of daily points).
MAX_DAYS = 1100

From = Annotated[
    date | None,
    QueryParameter(name="from", description="First local day (YYYY-MM-DD) in `tz`; default 29 days before `to`."),
]
To = Annotated[date | None, QueryParameter(description="Last local day (YYYY-MM-DD, included); default today in `tz`.")]
Tz = Annotated[str, QueryParameter(max_length=64, description="IANA time zone the days are counted in (Europe/Paris).")]
IntervalParam = Annotated[
    ReportInterval, QueryParameter(description="Bucket of the series: day, week (from Monday), month.")
]
CompareParam = Annotated[
    ReportCompare | None, QueryParameter(description="`previous_period`: also return the previous period's figures.")
]


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(tz: str) -> str:
    if tz not in _zones():
        raise ValidationFailed.for_field("tz", "must be an IANA time zone such as UTC, Europe/Paris or Asia/Tokyo")
    return tz


def period_of(from_: date | None, to: date | None, tz: str, interval: ReportInterval) -> Period:
    """The requested period, validated: 422 names the parameter at fault."""
    zone = _zone(tz)
    end = to or datetime.now(UTC).astimezone(ZoneInfo(zone)).date()
    start = from_ or end - timedelta(days=_DEFAULT_DAYS - 1)
    if start > end:
        raise ValidationFailed.for_field("from", "must be on or before `to`")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailed.for_field("to", f"the period may span at most {MAX_DAYS} days")
    if start.year < 2000 or end.year > 2100:
        raise ValidationFailed.for_field("from" if start.year < 2000 else "to", "must be between 2000 and 2100")
    return Period(start, end, zone, interval.value)


async def _report(request: Request[Any, Any, Any], build: Any, period: Period, compare: ReportCompare | None) -> Any:
    path = str(request.app.state.auth.settings.warehouse_path)
    return await service.run_report(path, build, period, compare is ReportCompare.PREVIOUS_PERIOD)


@get("/analytics/dashboard", operation_id="getAnalyticsDashboard", tags=["analytics"], opt=_READERS)
async def dashboard(
    request: Request[Any, Any, Any],
    from_: From = None,
    to: To = None,
    tz: Tz = "UTC",
    interval: IntervalParam = ReportInterval.DAY,
    compare: CompareParam = None,
) -> DashboardReport:
    """KPIs of the period: bookings, revenue net of refunds per currency, new users, load factor, the funnel
    search → booking → payment, cancellations and refunds, security events and top routes, each with its growth
    against the previous period; `freshness` tells how old the warehouse data is (ADMIN, BUSINESS_OWNER).
    """
    result: DashboardReport = await _report(
        request, service.dashboard_report, period_of(from_, to, tz, interval), compare
    )
    return result


@get("/analytics/bookings", operation_id="getAnalyticsBookings", tags=["analytics"], opt=_READERS)
async def bookings(
    request: Request[Any, Any, Any],
    from_: From = None,
    to: To = None,
    tz: Tz = "UTC",
    interval: IntervalParam = ReportInterval.DAY,
    compare: CompareParam = None,
) -> BookingsReport:
    """Bookings by the local day (week, month) they were made: counts, seats, statuses now, booked amounts per
    currency, top routes, airlines and agents, growth (ADMIN, BUSINESS_OWNER).
    """
    result: BookingsReport = await _report(
        request, service.bookings_report, period_of(from_, to, tz, interval), compare
    )
    return result


@get("/analytics/revenue", operation_id="getAnalyticsRevenue", tags=["analytics"], opt=_READERS)
async def revenue(
    request: Request[Any, Any, Any],
    from_: From = None,
    to: To = None,
    tz: Tz = "UTC",
    interval: IntervalParam = ReportInterval.DAY,
    compare: CompareParam = None,
) -> RevenueReport:
    """Revenue net of refunds per currency (payments when they succeeded, refunds when requested), by route and
    airline, with the net revenue's growth per currency (ADMIN, BUSINESS_OWNER).
    """
    result: RevenueReport = await _report(request, service.revenue_report, period_of(from_, to, tz, interval), compare)
    return result


@get("/analytics/users", operation_id="getAnalyticsUsers", tags=["analytics"], opt=_READERS)
async def users(
    request: Request[Any, Any, Any],
    from_: From = None,
    to: To = None,
    tz: Tz = "UTC",
    interval: IntervalParam = ReportInterval.DAY,
    compare: CompareParam = None,
) -> UsersReport:
    """User growth by role: accounts created and deleted in the period and the accounts at its end
    (ADMIN, BUSINESS_OWNER).
    """
    result: UsersReport = await _report(request, service.users_report, period_of(from_, to, tz, interval), compare)
    return result


@get("/analytics/flights", operation_id="getAnalyticsFlights", tags=["analytics"], opt=_READERS)
async def flights(
    request: Request[Any, Any, Any],
    from_: From = None,
    to: To = None,
    tz: Tz = "UTC",
    interval: IntervalParam = ReportInterval.DAY,
    compare: CompareParam = None,
) -> FlightsReport:
    """Load factor (confirmed seats over seats on sale) of the flights departing in the period, per bucket and
    airline, and the fullest flights (ADMIN, BUSINESS_OWNER).
    """
    result: FlightsReport = await _report(request, service.flights_report, period_of(from_, to, tz, interval), compare)
    return result


@get("/analytics/realtime", operation_id="getAnalyticsRealtime", tags=["analytics"], opt=_READERS)
async def realtime(
    pool: Pool,
    minutes: Annotated[int, QueryParameter(ge=1, le=1440, description="Length of the window (1-1440).")] = 60,
    tz: Tz = "UTC",
    compare: CompareParam = None,
) -> RealtimeReport:
    """The last `minutes` minutes straight from PostgreSQL, per minute: bookings created, confirmed and cancelled,
    payments succeeded, searches, revenue per currency and live holds, with growth against the window before
    (ADMIN, BUSINESS_OWNER).
    """
    return await service.realtime_report(pool, minutes, _zone(tz), compare is ReportCompare.PREVIOUS_PERIOD)


route_handlers = [dashboard, bookings, revenue, users, flights, realtime]
