"""Incremental replication: only new and changed rows are read again, merges are idempotent, deletions reload,
a broken mart is never published, and readers always see a complete snapshot."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psycopg
import pytest

from pipelines.replication import replicate
from pipelines.run import refresh
from tests.pipelines.conftest import pipeline_settings, publish_without_dagster
from tests.support.warehouse_rows import KNOWN, add_booking, at
from warehouse import marts
from warehouse.read import WarehouseReader
from warehouse.snapshots import WarehouseFiles

NEW_BOOKING = "00000000-0000-4000-8000-0000000000b4"


def rows_read(result_tables: list, name: str) -> int:
    return next(table.rows_read for table in result_tables if table.name == name)


def change_source(database_url: str, ids: dict[str, int]) -> None:
    """One new booking, an old booking cancelled, a user deleted (all stamped now, as the API would)."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_booking(conn, NEW_BOOKING, "AAAAA5", fare_id=ids["fare1"], flight_id=ids["f1"], created=now)
        conn.execute(
            "UPDATE bookings SET status = 'CANCELLED', cancelled_at = now(), updated_at = now() WHERE id = %s",
            (KNOWN["b2"],),
        )
        conn.execute(
            "UPDATE users SET deleted_at = now(), is_active = false, full_name = 'Deleted user', "
            "email = 'deleted-' || id || '@deleted.invalid', updated_at = now() WHERE id = %s",
            (KNOWN["agent"],),
        )


def test_an_incremental_run_reads_only_new_and_changed_rows(
    database_url: str, known_rows_database: dict[str, int], tmp_path: Path
) -> None:
    duck = duckdb.connect(str(tmp_path / "staging.duckdb"))
    first = replicate(database_url, duck)
    assert all(table.full_load for table in first.tables)
    assert rows_read(first.tables, "bookings") == 3

    unchanged = replicate(database_url, duck)
    assert not any(table.full_load for table in unchanged.tables if table.name not in ("airlines", "airports"))
    assert rows_read(unchanged.tables, "bookings") == 0
    assert rows_read(unchanged.tables, "payments") == 0

    change_source(database_url, known_rows_database)
    second = replicate(database_url, duck)
    # B4 (new) and B2 (an old row, changed), with their passengers; the agent, deleted.
    assert rows_read(second.tables, "bookings") == 2
    assert rows_read(second.tables, "passengers") == 2
    assert rows_read(second.tables, "users") == 1
    assert not any(table.full_load for table in second.tables if table.name not in ("airlines", "airports"))
    statuses = dict(duck.execute("SELECT id::VARCHAR, status FROM bookings").fetchall())
    assert statuses == {
        KNOWN["b1"]: "CONFIRMED",
        KNOWN["b2"]: "CANCELLED",
        KNOWN["b3"]: "CANCELLED",
        NEW_BOOKING: "CONFIRMED",
    }
    # The passengers of the changed bookings were replaced, not duplicated.
    assert duck.execute("SELECT count(*) FROM passengers").fetchone() == (5,)
    assert duck.execute("SELECT email, full_name FROM users WHERE id = ?", [KNOWN["agent"]]).fetchone() == (None, None)

    # Rows changed within the look-back are read again, and merge to the same table.
    again = replicate(database_url, duck)
    assert rows_read(again.tables, "bookings") == 2
    assert duck.execute("SELECT count(*) FROM bookings").fetchone() == (4,)
    assert duck.execute("SELECT count(*) FROM passengers").fetchone() == (5,)
    duck.close()


def test_rows_deleted_at_the_source_reload_the_table(
    database_url: str, known_rows_database: dict[str, int], tmp_path: Path
) -> None:
    duck = duckdb.connect(str(tmp_path / "staging.duckdb"))
    replicate(database_url, duck)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Retention deletes the oldest audit rows.
        conn.execute("DELETE FROM audit_logs WHERE occurred_at < %s", (at("2026-03-02 00:00"),))
    result = replicate(database_url, duck, ["audit_logs"])
    assert result.tables[0].full_load
    assert duck.execute("SELECT event_type FROM audit_logs").fetchall() == [("auth.login_failed",)]
    duck.close()


def test_a_mart_that_disagrees_with_postgresql_fails_its_check_and_is_not_published(
    database_url: str, known_rows_database: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings(database_url, tmp_path / "warehouse.duckdb")
    publish_without_dagster(settings)
    published = WarehouseFiles(settings.warehouse_path).current()

    broken = marts.MARTS_BY_NAME["bookings_revenue"]
    # A model that counts every refund twice.
    sql = broken.sql.replace(
        "FROM events AS e", "FROM (SELECT * FROM events UNION ALL SELECT * FROM events WHERE refunded > 0) AS e"
    )
    assert sql != broken.sql

    def model(mart: marts.Mart) -> str:
        return sql if mart.name == "bookings_revenue" else (marts.MARTS_DIR / f"{mart.name}.sql").read_text()

    monkeypatch.setattr(marts.Mart, "sql", property(model))
    result = refresh(settings)
    assert not result.success
    assert result.checks["marts/bookings_revenue:totals_reconcile"] is False
    assert "warehouse_snapshot" not in result.materialized
    assert WarehouseFiles(settings.warehouse_path).current() == published


def test_a_read_during_a_materialisation_gets_the_previous_complete_snapshot(
    database_url: str, known_rows_database: dict[str, int], tmp_path: Path
) -> None:
    settings = pipeline_settings(database_url, tmp_path / "warehouse.duckdb")
    publish_without_dagster(settings)
    reader = WarehouseReader(settings.warehouse_path)
    held = reader.cursor()
    assert held is not None
    change_source(database_url, known_rows_database)

    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=refresh(settings)))
    worker.start()
    seen: list[int] = []
    while worker.is_alive():
        cursor = reader.cursor()
        assert cursor is not None
        row = cursor.execute("SELECT sum(bookings) FROM mart_bookings_revenue").fetchone()
        seen.append(int(row[0]))
        cursor.close()
    worker.join()
    assert outcome["result"].success  # type: ignore[attr-defined]
    assert seen
    assert set(seen) <= {3, 4}
    assert seen[0] == 3
    # A cursor opened before the publish keeps its snapshot; a new one sees the new data.
    assert held.execute("SELECT sum(bookings) FROM mart_bookings_revenue").fetchone() == (3,)
    latest = reader.cursor()
    assert latest is not None
    assert latest.execute("SELECT sum(bookings) FROM mart_bookings_revenue").fetchone() == (4,)
    reader.close()


def test_a_striped_bucket_replicates_its_whole_count_and_every_take_from_a_stripe(
    database_url: str, known_rows_database: dict[str, int], tmp_path: Path
) -> None:
    fare = known_rows_database["fare1"]
    counted = "SELECT seats_available FROM flight_prices WHERE id = %s"
    with psycopg.connect(database_url, autocommit=True) as conn:
        [(seats,)] = conn.execute(counted, (fare,)).fetchall()
        conn.execute("SELECT split_fare_seats(ARRAY[%s::bigint], 4, 1)", (fare,))
        assert conn.execute(counted, (fare,)).fetchone() == (0,)  # the count is the stripes' now
    duck = duckdb.connect(str(tmp_path / "staging.duckdb"))
    replicate(database_url, duck)
    replicated = "SELECT seats_available FROM flight_prices WHERE id = ?"
    assert duck.execute(replicated, [fare]).fetchone() == (seats,)

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT take_fare_seats(%s, 3)", (fare,))  # a stripe moves; the bucket's row does not
    changed = replicate(database_url, duck)

    assert rows_read(changed.tables, "flight_prices") >= 1
    assert duck.execute(replicated, [fare]).fetchone() == (seats - 3,)
