"""Migrations apply in order, once, even from two processes at once, and refuse edited history."""

import asyncio
from pathlib import Path

import psycopg
import pytest

from core_api.storage.migrations import MigrationError, discover, migrate
from tests.conftest import cloned_database


@pytest.fixture
async def empty_database_url(postgres_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("DROP DATABASE IF EXISTS fd_empty_template WITH (FORCE)")
        await conn.execute("CREATE DATABASE fd_empty_template")
    async with cloned_database(postgres_url, "fd_empty_template") as url:
        yield url
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("DROP DATABASE IF EXISTS fd_empty_template WITH (FORCE)")


async def applied_versions(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in await cursor.fetchall()]


async def test_all_migrations_apply_then_rerun_is_a_no_op(empty_database_url: str) -> None:
    applied = await migrate(empty_database_url)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert await migrate(empty_database_url) == []
    assert await applied_versions(empty_database_url) == [m.version for m in discover()]


async def test_concurrent_runs_apply_each_migration_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(discover())]
    assert await applied_versions(empty_database_url) == [m.version for m in discover()]


async def test_a_failing_migration_leaves_nothing_behind(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        await migrate(empty_database_url, tmp_path)
    async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
        cursor = await conn.execute("SELECT to_regclass('good') IS NOT NULL, to_regclass('half') IS NOT NULL")
        assert await cursor.fetchone() == (True, False)
    assert await applied_versions(empty_database_url) == [1]


async def test_an_edited_applied_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_first.sql"
    migration.write_text("CREATE TABLE first (id int);")
    await migrate(empty_database_url, tmp_path)
    migration.write_text("CREATE TABLE first (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_database_url, tmp_path)


async def test_a_run_that_applies_migrations_analyzes_the_tables_holding_rows(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_load.sql").write_text(
        "CREATE TABLE loaded AS SELECT n FROM generate_series(1, 1000) AS n; CREATE TABLE empty (n int);"
    )
    await migrate(empty_database_url, tmp_path)
    async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
        cursor = await conn.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname IN ('loaded', 'empty') ORDER BY relname"
        )
        # -1: never analysed, so the planner keeps its guess for a table that is still to be loaded.
        assert await cursor.fetchall() == [("empty", -1), ("loaded", 1000)]


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(tmp_path)


async def test_database_enforces_inventory_invariants(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');"
            "INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES"
            " ('LHR', 'Heathrow', 'London', 'GB', 'Europe/London', 51.47, -0.45),"
            " ('JFK', 'John F Kennedy', 'New York', 'US', 'America/New_York', 40.64, -73.78);"
        )
        cursor = await conn.execute(
            "INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)"
            " VALUES ('BA', 'BA117', 'LHR', 'JFK', '2030-01-01 10:00Z', '2030-01-01 18:00Z', 'B777') RETURNING id"
        )
        (flight_id,) = await cursor.fetchone()
        insert_fare = (
            "INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,"
            " seats_available) VALUES (%s, 'ECONOMY', 'Y', 50000, 'GBP', 10, %s)"
        )
        with pytest.raises(psycopg.errors.CheckViolation, match="flight_prices_seats_in_range"):
            await conn.execute(insert_fare, (flight_id, 11))
        with pytest.raises(psycopg.errors.CheckViolation, match="flight_prices_seats_in_range"):
            await conn.execute(insert_fare, (flight_id, -1))
        await conn.execute(insert_fare, (flight_id, 10))
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                "INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at,"
                " aircraft) VALUES ('BA', 'BA118', 'JFK', 'LHR', '2030-01-02 10:00Z', '2030-01-02 09:00Z', 'B777')"
            )


async def test_nothing_references_the_fare_buckets_counter_row_yet_bookings_need_a_real_bucket(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # A foreign key to flight_prices would make every booking take FOR KEY SHARE on the row buyers queue for.
        cursor = await conn.execute("SELECT conname FROM pg_constraint WHERE confrelid = 'flight_prices'::regclass")
        assert await cursor.fetchall() == []
        await conn.execute(
            "INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');"
            "INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES"
            " ('LHR', 'Heathrow', 'London', 'GB', 'Europe/London', 51.47, -0.45),"
            " ('JFK', 'John F Kennedy', 'New York', 'US', 'America/New_York', 40.64, -73.78);"
            "INSERT INTO users (email, password_hash, full_name) VALUES ('ann@example.com', 'x', 'Ann');"
        )
        cursor = await conn.execute(
            "WITH flight AS (INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at,"
            " arrival_at, aircraft) VALUES ('BA', 'BA117', 'LHR', 'JFK', '2030-01-01 10:00Z', '2030-01-01 18:00Z',"
            " 'B777') RETURNING id)"
            " INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,"
            " seats_available) SELECT id, 'ECONOMY', 'Y', 50000, 'GBP', 10, 10 FROM flight RETURNING id, flight_id"
        )
        fare_id, flight_id = await cursor.fetchone()
        cursor = await conn.execute("SELECT id FROM fare_keys")
        assert await cursor.fetchall() == [(fare_id,)]  # written with the bucket
        insert_booking = (
            "INSERT INTO bookings (pnr, flight_id, fare_id, cabin, fare_class, customer_id, seat_count, total_amount,"
            " currency, contact_email, hold_expires_at)"
            " SELECT %s, %s, %s, 'ECONOMY', 'Y', id, 1, 50000, 'GBP', email, now() + interval '15 minutes' FROM users"
        )
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="bookings_fare_id_fkey"):
            await conn.execute(insert_booking, ("ABCDEF", flight_id, fare_id + 1))
        await conn.execute(insert_booking, ("ABCDEF", flight_id, fare_id))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="bookings_fare_id_fkey"):
            await conn.execute("DELETE FROM flight_prices WHERE id = %s", (fare_id,))
        await conn.execute("DELETE FROM bookings")
        await conn.execute("DELETE FROM flight_prices WHERE id = %s", (fare_id,))
        cursor = await conn.execute("SELECT count(*) FROM fare_keys")
        assert await cursor.fetchone() == (0,)  # and gone with it
