"""Asset checks: the warehouse agrees exactly with PostgreSQL at the run's snapshot, inventory is never negative,
and the published snapshot is fresh.

The replication run stores PostgreSQL's figures (row counts, revenue totals) read in its own snapshot in
``_reconcile``; the checks compare the replicated tables and the marts with them. Reconciliation and inventory
checks block: a mart that disagrees is not published.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb

from pipelines.assets import REPLICA_KEYS, mart_key
from pipelines.resources import WarehouseResource

__all__ = [
    "ASSET_CHECKS",
    "MAX_LAG",
    "check_bookings_revenue",
    "check_freshness",
    "check_inventory",
    "check_replica_rows",
]

# Oldest published data still called fresh (the schedule refreshes every 5 minutes).
MAX_LAG = timedelta(minutes=15)


def _figures(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {name: int(value) for name, value in conn.execute("SELECT name, value FROM _reconcile").fetchall()}


def _scalar(conn: duckdb.DuckDBPyConnection, query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def check_replica_rows(conn: duckdb.DuckDBPyConnection, table: str) -> dg.AssetCheckResult:
    """The replicated table has exactly the rows PostgreSQL had at the snapshot."""
    expected = _figures(conn).get(f"rows.{table}")
    actual = _scalar(conn, f'SELECT count(*) FROM "{table}"')  # noqa: S608 - a table of TABLES
    return dg.AssetCheckResult(
        passed=expected == actual, metadata={"warehouse_rows": actual, "postgres_rows": expected or 0}
    )


def check_bookings_revenue(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    """Bookings, seats, booked amounts, gross revenue and refunds of the mart add up to PostgreSQL's totals."""
    figures = _figures(conn)
    row = conn.execute(
        "SELECT coalesce(sum(bookings), 0), coalesce(sum(seats), 0), coalesce(sum(booked_amount), 0), "
        "coalesce(sum(gross_revenue), 0), coalesce(sum(refunded_amount), 0), "
        "coalesce(sum(net_revenue), 0) FROM mart_bookings_revenue"
    ).fetchone()
    assert row is not None
    bookings, seats, booked, gross, refunded, net = (int(value) for value in row)
    pairs = {
        "bookings": (bookings, figures["rows.bookings"]),
        "seats": (seats, figures["bookings.seats"]),
        "booked_amount": (booked, figures["bookings.amount"]),
        "gross_revenue": (gross, figures["revenue.gross"]),
        "refunded_amount": (refunded, figures["revenue.refunded"]),
        "net_revenue": (net, figures["revenue.gross"] - figures["revenue.refunded"]),
    }
    mismatched = [name for name, (mart, source) in pairs.items() if mart != source]
    return dg.AssetCheckResult(
        passed=not mismatched,
        description="mart totals equal PostgreSQL's" if not mismatched else f"differ: {', '.join(mismatched)}",
        metadata={f"{name}_mart": mart for name, (mart, _) in pairs.items()}
        | {f"{name}_postgres": source for name, (_, source) in pairs.items()},
    )


def check_inventory(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    """No flight has negative or over-full inventory, and no fare bucket either."""
    flights = _scalar(
        conn,
        "SELECT count(*) FROM mart_load_factor WHERE seats_available < 0 OR seats_taken < 0 "
        "OR min_bucket_available < 0 OR seats_available > seats_total OR seats_sold > seats_total",
    )
    buckets = _scalar(
        conn, "SELECT count(*) FROM flight_prices WHERE seats_available < 0 OR seats_available > seats_total"
    )
    return dg.AssetCheckResult(
        passed=flights == 0 and buckets == 0, metadata={"bad_flights": flights, "bad_fare_buckets": buckets}
    )


def check_freshness(
    conn: duckdb.DuckDBPyConnection | None, *, now: datetime | None = None, max_lag: timedelta = MAX_LAG
) -> dg.AssetCheckResult:
    """The published snapshot holds PostgreSQL data no older than ``max_lag``."""
    if conn is None:
        return dg.AssetCheckResult(passed=False, description="nothing published yet")
    row = conn.execute("SELECT value FROM _meta WHERE key = 'snapshot_at'").fetchone()
    if row is None:
        return dg.AssetCheckResult(passed=False, description="the snapshot has no replication time")
    snapshot_at = datetime.fromisoformat(row[0])
    lag = (now or datetime.now(UTC)) - snapshot_at
    return dg.AssetCheckResult(
        passed=lag <= max_lag,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"snapshot_at": snapshot_at.isoformat(), "lag_seconds": round(lag.total_seconds(), 1)},
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "rows_reconcile", asset=key, blocking=True, description=f"{table}: rows equal PostgreSQL's at the snapshot"
        )
        for table, key in REPLICA_KEYS.items()
    ],
    can_subset=True,
)
def replicas_reconcile(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """Each replicated table has exactly the rows PostgreSQL had at the replication snapshot."""
    selected = {check.asset_key for check in context.selected_asset_check_keys}
    with warehouse.staging() as conn:
        for table, key in REPLICA_KEYS.items():
            if key in selected:
                result = check_replica_rows(conn, table)
                yield dg.AssetCheckResult(
                    asset_key=key, check_name="rows_reconcile", passed=result.passed, metadata=result.metadata
                )


@dg.asset_check(asset=mart_key("bookings_revenue"), name="totals_reconcile", blocking=True)
def bookings_revenue_reconciles(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Bookings and revenue totals of the mart equal PostgreSQL's at the snapshot."""
    with warehouse.staging() as conn:
        return check_bookings_revenue(conn)


@dg.asset_check(asset=mart_key("load_factor"), name="no_negative_inventory", blocking=True)
def no_negative_inventory(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """No flight or fare bucket with negative or over-full inventory."""
    with warehouse.staging() as conn:
        return check_inventory(conn)


@dg.asset_check(asset="warehouse_snapshot", name="fresh")
def snapshot_is_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """The published snapshot is at most 15 minutes behind PostgreSQL."""
    conn = warehouse.files.open_current()
    try:
        return check_freshness(conn)
    finally:
        if conn is not None:
            conn.close()


ASSET_CHECKS = [
    replicas_reconcile,
    bookings_revenue_reconciles,
    no_negative_inventory,
    snapshot_is_fresh,
]
