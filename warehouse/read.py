"""The read API of the marts: small functions returning Polars frames, for ``/analytics`` and the dashboards.

Marts hold 15-minute UTC slots; a :class:`Period` names local days in an IANA zone, and every function buckets the
slots by day, week (from Monday) or month of that zone. Readers open the newest published snapshot read-only
(:class:`WarehouseReader`); a publish while a query runs does not disturb it, and the next query sees the new
snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from warehouse.snapshots import WarehouseFiles

__all__ = [
    "Freshness",
    "Interval",
    "Period",
    "WarehouseReader",
    "empty_warehouse",
    "flights_ranked",
    "freshness",
    "load_factor",
    "load_factor_series",
    "series",
    "top",
    "totals",
    "users_before",
]

Interval = Literal["day", "week", "month"]

# Marts and the columns a caller may ask for: identifiers never come from a request.
MEASURES: dict[str, frozenset[str]] = {
    "mart_bookings_revenue": frozenset(
        {
            "bookings",
            "seats",
            "booked_amount",
            "confirmed",
            "cancelled",
            "expired",
            "payments",
            "gross_revenue",
            "refunds",
            "refunded_amount",
            "net_revenue",
        }
    ),
    "mart_user_growth": frozenset({"new_users", "deleted_users"}),
    "mart_funnel": frozenset({"searches", "bookings", "paid"}),
    "mart_popular_routes": frozenset({"searches", "bookings", "seats"}),
    "mart_agent_performance": frozenset(
        {
            "bookings",
            "seats",
            "confirmed",
            "cancelled",
            "booked_amount",
            "gross_revenue",
            "refunded_amount",
            "net_revenue",
        }
    ),
    "mart_cancellations_refunds": frozenset(
        {"cancellations", "cancelled_seats", "refunds", "refunded_amount", "refunds_pending", "refunds_failed"}
    ),
    "mart_security_events": frozenset({"events"}),
}
DIMENSIONS = frozenset(
    {
        "origin",
        "destination",
        "airline_code",
        "agent_id",
        "agent_name",
        "currency",
        "role",
        "event_type",
        "actor_role",
    }
)


@dataclass(frozen=True)
class Period:
    """Local days ``start`` to ``end`` (both included) in ``tz``, bucketed by ``interval``."""

    start: date
    end: date
    tz: str
    interval: Interval = "day"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def start_utc(self) -> datetime:
        return datetime.combine(self.start, time(0), self.zone).astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        """Exclusive: the start of the day after ``end``."""
        return datetime.combine(self.end + timedelta(days=1), time(0), self.zone).astimezone(UTC)

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        days = (self.end - self.start).days + 1
        return Period(self.start - timedelta(days=days), self.start - timedelta(days=1), self.tz, self.interval)


@dataclass(frozen=True)
class Freshness:
    snapshot: str | None
    as_of: datetime | None
    built_at: datetime | None


class WarehouseReader:
    """Read-only connections to the newest published snapshot, reopened when a new one is published."""

    def __init__(self, path: Path | str) -> None:
        self.files = WarehouseFiles(path)
        self._lock = threading.Lock()
        self._target: Path | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None
        # Connections to superseded snapshots stay open a while: a query may still be running on them.
        self._retired: list[duckdb.DuckDBPyConnection] = []

    def cursor(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor on the newest snapshot (one per query and thread), or None before the first publish."""
        target = self.files.current()
        if target is None:
            return None
        with self._lock:
            if target != self._target or self._conn is None:
                conn = duckdb.connect(str(target), read_only=True)
                conn.execute("SET TimeZone = 'UTC'")
                if self._conn is not None:
                    self._retired.append(self._conn)
                    while len(self._retired) > 2:
                        self._retired.pop(0).close()
                self._conn, self._target = conn, target
            return self._conn.cursor()

    def close(self) -> None:
        with self._lock:
            for conn in [*self._retired, *([self._conn] if self._conn is not None else [])]:
                conn.close()
            self._retired, self._conn, self._target = [], None, None


def _frame(cursor: duckdb.DuckDBPyConnection, query: str, params: list[object]) -> pl.DataFrame:
    return cursor.sql(query, params=params).pl()


def _columns(mart: str, measures: Sequence[str], group_by: Sequence[str]) -> tuple[str, str]:
    allowed = MEASURES[mart]
    unknown = [name for name in measures if name not in allowed] + [name for name in group_by if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown columns for {mart}: {unknown}")
    sums = ", ".join(f"coalesce(sum({name}), 0)::BIGINT AS {name}" for name in measures)
    groups = "".join(f"{name}, " for name in group_by)
    return sums, groups


def series(
    cursor: duckdb.DuckDBPyConnection,
    mart: str,
    measures: Sequence[str],
    period: Period,
    group_by: Sequence[str] = (),
) -> pl.DataFrame:
    """One row per local bucket (and group) with the sums of ``measures``; buckets without rows are absent."""
    sums, groups = _columns(mart, measures, group_by)
    resums = ", ".join(f"sum({name})::BIGINT AS {name}" for name in measures)
    # Summed per slot first, so that the zone conversion (ICU, per row) runs once per slot, not once per mart row.
    query = (
        f"WITH per_slot AS (SELECT slot, {groups}{sums} FROM {mart} WHERE slot >= ? AND slot < ? GROUP BY ALL) "  # noqa: S608 - checked names
        f"SELECT date_trunc(?, timezone(?, slot))::DATE AS bucket, {groups}{resums} FROM per_slot "
        "GROUP BY ALL ORDER BY ALL"
    )
    return _frame(cursor, query, [period.start_utc, period.end_utc, period.interval, period.tz])


def totals(
    cursor: duckdb.DuckDBPyConnection,
    mart: str,
    measures: Sequence[str],
    period: Period,
    group_by: Sequence[str] = (),
) -> pl.DataFrame:
    """The sums of ``measures`` over the period (one row, or one per group)."""
    sums, groups = _columns(mart, measures, group_by)
    group_clause = f" GROUP BY {groups.rstrip(', ')} ORDER BY {groups.rstrip(', ')}" if group_by else ""
    query = f"SELECT {groups}{sums} FROM {mart} WHERE slot >= ? AND slot < ?{group_clause}"  # noqa: S608 - checked names
    return _frame(cursor, query, [period.start_utc, period.end_utc])


def top(
    cursor: duckdb.DuckDBPyConnection,
    mart: str,
    measures: Sequence[str],
    period: Period,
    group_by: Sequence[str],
    limit: int = 10,
) -> pl.DataFrame:
    """The groups with the largest first measure over the period."""
    frame = totals(cursor, mart, measures, period, group_by)
    return frame.sort([measures[0], *group_by], descending=[True, *([False] * len(group_by))]).head(limit)


def users_before(cursor: duckdb.DuckDBPyConnection, at: datetime) -> pl.DataFrame:
    """Accounts by role existing (created and not deleted) before ``at``."""
    query = (
        "SELECT role, (coalesce(sum(new_users), 0) - coalesce(sum(deleted_users), 0))::BIGINT AS users "
        "FROM mart_user_growth WHERE slot < ? GROUP BY role ORDER BY role"
    )
    return _frame(cursor, query, [at])


def load_factor(cursor: duckdb.DuckDBPyConnection, period: Period, group_by: Sequence[str] = ()) -> pl.DataFrame:
    """Flights departing in the period: count, seats on sale, sold and taken, and the load factor (sold / seats)."""
    _, groups = _columns("mart_funnel", (), group_by)
    group_clause = f" GROUP BY {groups.rstrip(', ')} ORDER BY {groups.rstrip(', ')}" if group_by else ""
    query = (
        f"SELECT {groups}count(*)::BIGINT AS flights, coalesce(sum(seats_total), 0)::BIGINT AS seats_total, "  # noqa: S608 - checked names
        "coalesce(sum(seats_sold), 0)::BIGINT AS seats_sold, coalesce(sum(seats_taken), 0)::BIGINT AS seats_taken, "
        "CASE WHEN sum(seats_total) > 0 THEN sum(seats_sold) / sum(seats_total) ELSE 0 END AS load_factor "
        f"FROM mart_load_factor WHERE departure_at >= ? AND departure_at < ?{group_clause}"
    )
    return _frame(cursor, query, [period.start_utc, period.end_utc])


def load_factor_series(cursor: duckdb.DuckDBPyConnection, period: Period) -> pl.DataFrame:
    """Load factor of the flights departing in each local bucket."""
    query = (
        "SELECT date_trunc(?, timezone(?, departure_at))::DATE AS bucket, count(*)::BIGINT AS flights, "
        "coalesce(sum(seats_total), 0)::BIGINT AS seats_total, coalesce(sum(seats_sold), 0)::BIGINT AS seats_sold, "
        "CASE WHEN sum(seats_total) > 0 THEN sum(seats_sold) / sum(seats_total) ELSE 0 END AS load_factor "
        "FROM mart_load_factor WHERE departure_at >= ? AND departure_at < ? GROUP BY ALL ORDER BY ALL"
    )
    return _frame(cursor, query, [period.interval, period.tz, period.start_utc, period.end_utc])


def flights_ranked(cursor: duckdb.DuckDBPyConnection, period: Period, limit: int = 10) -> pl.DataFrame:
    """The fullest flights departing in the period."""
    query = (
        "SELECT flight_id, airline_code, flight_number, origin, destination, departure_at, status, seats_total, "
        "seats_sold, seats_taken, coalesce(load_factor, 0) AS load_factor FROM mart_load_factor "
        "WHERE departure_at >= ? AND departure_at < ? ORDER BY load_factor DESC, departure_at, flight_id LIMIT ?"
    )
    return _frame(cursor, query, [period.start_utc, period.end_utc, limit])


def freshness(cursor: duckdb.DuckDBPyConnection | None) -> Freshness:
    """Which snapshot is read and how old its data is."""
    if cursor is None:
        return Freshness(None, None, None)
    values = dict(cursor.execute("SELECT key, value FROM _meta").fetchall())
    paths = cursor.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    snapshot = paths[0] if paths else None
    as_of, built_at = values.get("snapshot_at"), values.get("built_at")
    return Freshness(
        snapshot=Path(snapshot[0]).name if snapshot and snapshot[0] else None,
        as_of=datetime.fromisoformat(as_of) if as_of else None,
        built_at=datetime.fromisoformat(built_at) if built_at else None,
    )


_empty_lock = threading.Lock()
_empty: duckdb.DuckDBPyConnection | None = None


def empty_warehouse() -> duckdb.DuckDBPyConnection:
    """A cursor on an in-memory warehouse with every mart and no rows: what readers see before the first refresh."""
    global _empty
    with _empty_lock:
        if _empty is None:
            from pipelines.replication import TABLES
            from warehouse.marts import MARTS

            conn = duckdb.connect(":memory:")
            conn.execute("SET TimeZone = 'UTC'")
            for table in TABLES:
                columns = ", ".join(f'"{column.name}" {column.duck_type}' for column in table.columns)
                conn.execute(f'CREATE TABLE "{table.name}" ({columns})')
            for mart in MARTS:
                conn.execute(mart.sql)
            conn.execute("CREATE TABLE _meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
            _empty = conn
        return _empty.cursor()
