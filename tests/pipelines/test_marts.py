"""Marts built from known rows hold exactly the expected figures, bucketed in the zone asked for."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from core_api.settings import Settings
from pipelines.run import RefreshResult
from tests.support.warehouse_rows import KNOWN
from warehouse import read
from warehouse.read import Period, WarehouseReader

MARCH = (date(2026, 3, 1), date(2026, 3, 2))


@pytest.fixture
def warehouse(refreshed: tuple[Settings, RefreshResult]) -> duckdb.DuckDBPyConnection:
    settings, _ = refreshed
    cursor = WarehouseReader(settings.warehouse_path).cursor()
    assert cursor is not None
    return cursor


def by_day(cursor: duckdb.DuckDBPyConnection, tz: str, *measures: str) -> dict[str, tuple[int, ...]]:
    frame = read.series(cursor, "mart_bookings_revenue", measures, Period(*MARCH, tz))
    return {row["bucket"].isoformat(): tuple(row[name] for name in measures) for row in frame.to_dicts()}


def test_every_check_passes_and_every_asset_is_materialised(refreshed: tuple[Settings, RefreshResult]) -> None:
    _, result = refreshed
    assert all(result.checks.values()), result.checks
    assert "marts/bookings_revenue:totals_reconcile" in result.checks
    assert "marts/load_factor:no_negative_inventory" in result.checks
    assert result.materialized["replica/bookings"]["rows_total"] == 3
    assert result.materialized["warehouse_snapshot"]["snapshot"] == "warehouse-1.duckdb"


def test_revenue_is_net_of_the_partial_refund_on_the_days_it_happened(warehouse: duckdb.DuckDBPyConnection) -> None:
    days = by_day(warehouse, "UTC", "bookings", "gross_revenue", "refunded_amount", "net_revenue")
    # 1 March: B1 booked and paid 1000.00. 2 March: 300.00 of it refunded, B2 paid 500.00, B3 booked (cancelled).
    assert days == {"2026-03-01": (1, 100_000, 0, 100_000), "2026-03-02": (2, 50_000, 30_000, 20_000)}
    totals = read.totals(warehouse, "mart_bookings_revenue", ["net_revenue"], Period(*MARCH, "UTC"), ["currency"])
    assert totals.to_dicts() == [{"currency": "USD", "net_revenue": 120_000}]


def test_a_booking_near_midnight_counts_on_its_local_day(warehouse: duckdb.DuckDBPyConnection) -> None:
    # B1 at 23:30 UTC on 1 March is 18:30 on 1 March in New York and 08:30 on 2 March in Tokyo.
    assert by_day(warehouse, "America/New_York", "bookings") == {"2026-03-01": (1,), "2026-03-02": (2,)}
    assert by_day(warehouse, "Asia/Tokyo", "bookings") == {"2026-03-02": (3,)}
    # India is 5:30 ahead: the 15-minute slots bucket exactly in a half-hour zone too.
    assert by_day(warehouse, "Asia/Kolkata", "bookings") == {"2026-03-02": (3,)}


def test_weeks_and_months_bucket_the_same_rows(warehouse: duckdb.DuckDBPyConnection) -> None:
    # Sunday 1 March closes the week that began on Monday 23 February; Monday 2 March begins the next.
    expected = {"week": [("2026-02-23", 1), ("2026-03-02", 2)], "month": [("2026-03-01", 3)]}
    for interval, buckets in expected.items():
        frame = read.series(warehouse, "mart_bookings_revenue", ["bookings"], Period(*MARCH, "UTC", interval))
        assert [(row["bucket"].isoformat(), row["bookings"]) for row in frame.to_dicts()] == buckets


def test_the_cancelled_booking_is_counted_as_booked_and_as_cancelled(warehouse: duckdb.DuckDBPyConnection) -> None:
    period = Period(*MARCH, "UTC")
    counts = read.totals(warehouse, "mart_bookings_revenue", ["bookings", "confirmed", "cancelled"], period)
    assert counts.to_dicts() == [{"bookings": 3, "confirmed": 2, "cancelled": 1}]
    cancellations = read.totals(
        warehouse,
        "mart_cancellations_refunds",
        ["cancellations", "cancelled_seats", "refunds", "refunded_amount"],
        period,
    )
    assert cancellations.to_dicts() == [
        {"cancellations": 1, "cancelled_seats": 1, "refunds": 1, "refunded_amount": 30_000}
    ]


def test_the_agents_booking_is_the_agents(warehouse: duckdb.DuckDBPyConnection) -> None:
    frame = read.totals(
        warehouse,
        "mart_agent_performance",
        ["bookings", "net_revenue"],
        Period(*MARCH, "UTC"),
        ["agent_id", "agent_name"],
    )
    assert [
        (str(row["agent_id"]), row["agent_name"], row["bookings"], row["net_revenue"]) for row in frame.to_dicts()
    ] == [(KNOWN["agent"], "Arno Agent", 1, 50_000)]


def test_deleted_users_personal_data_is_not_copied(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = warehouse.execute(
        "SELECT id::VARCHAR, email, full_name, deleted_at IS NOT NULL FROM users ORDER BY id"
    ).fetchall()
    assert rows == [
        (KNOWN["customer"], "carla@example.com", "Carla Customer", False),
        (KNOWN["agent"], "arno@example.com", "Arno Agent", False),
        (KNOWN["deleted"], None, None, True),
    ]
    columns = {row[0] for row in warehouse.execute("SELECT column_name FROM information_schema.columns").fetchall()}
    assert not columns & {"password_hash", "contact_email", "first_name", "last_name", "date_of_birth", "document_enc"}


def test_user_growth_by_role(warehouse: duckdb.DuckDBPyConnection) -> None:
    frame = read.totals(
        warehouse,
        "mart_user_growth",
        ["new_users", "deleted_users"],
        Period(date(2026, 2, 1), date(2026, 3, 31), "UTC"),
        ["role"],
    )
    assert frame.to_dicts() == [
        {"role": "CUSTOMER", "new_users": 2, "deleted_users": 1},
        {"role": "TRAVEL_AGENT", "new_users": 1, "deleted_users": 0},
    ]


def test_load_factor_of_each_flight(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = warehouse.execute(
        "SELECT flight_number, seats_total, seats_sold, seats_taken, load_factor FROM mart_load_factor ORDER BY 1"
    ).fetchall()
    assert rows == [("FD100", 100, 3, 3, 0.03), ("FD200", 50, 0, 0, 0.0)]


def test_funnel_and_security_events(warehouse: duckdb.DuckDBPyConnection) -> None:
    period = Period(*MARCH, "UTC")
    funnel = read.totals(warehouse, "mart_funnel", ["searches", "bookings", "paid"], period)
    assert funnel.to_dicts() == [{"searches": 0, "bookings": 3, "paid": 2}]
    security = read.totals(warehouse, "mart_security_events", ["events"], period, ["event_type"])
    assert security.to_dicts() == [{"event_type": "auth.login_failed", "events": 1}]
