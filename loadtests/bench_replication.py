"""Replication benchmark: full replication rows/s and peak RSS against the raw ``COPY … TO STDOUT`` rate of the
same queries measured in the same run, an incremental refresh after 10 k new bookings, and the p95 of each
analytics report on the resulting marts.

    uv run python loadtests/bench_replication.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --source i14_data_dev            # an existing seeded database (left as it was: the bench works on a copy)
    uv run python loadtests/bench_replication.py --database-url … --scale large   # seeds a scratch database first

The scratch database (``bench_replication_<pid>``) and the warehouse directory are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.analytics import service
from core_api.settings import load_settings
from pipelines.replication import TABLES, replicate
from pipelines.run import refresh
from warehouse.marts import MARTS, build_mart
from warehouse.read import Period, WarehouseReader
from warehouse.snapshots import WarehouseFiles

NEW_BOOKINGS = 10_000


class PeakRss:
    """Samples this process's resident memory every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def raw_copy_rate(conninfo: str) -> tuple[int, float]:
    """Rows and seconds of COPY (the replication's own SELECTs) TO STDOUT (FORMAT csv), data thrown away."""
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for table in TABLES:
            query = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(table.select(None))
            with conn.cursor() as cursor, cursor.copy(query) as copy:
                for chunk in copy:
                    rows += bytes(chunk).count(b"\n")
    return rows, time.perf_counter() - started


def add_bookings(conninfo: str, count: int) -> int:
    """``count`` new bookings (copies of existing ones, new ids and PNRs, stamped now) with their passengers."""
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE fresh AS SELECT id AS old_id, gen_random_uuid() AS id, "
            "translate(upper(substr(md5(random()::text || id::text), 1, 6)), '01', 'XY') AS pnr "
            "FROM bookings ORDER BY created_at DESC LIMIT %s",
            (count,),
        )
        inserted = conn.execute(
            "INSERT INTO bookings (id, pnr, flight_id, fare_id, cabin, fare_class, customer_id, agent_id, created_by, "
            "status, seat_count, total_amount, currency, contact_email, hold_expires_at, created_at, updated_at) "
            "SELECT f.id, f.pnr, b.flight_id, b.fare_id, b.cabin, b.fare_class, b.customer_id, b.agent_id, "
            "b.created_by, 'CANCELLED', b.seat_count, b.total_amount, b.currency, b.contact_email, now(), now(), now() "
            "FROM fresh AS f JOIN bookings AS b ON b.id = f.old_id ON CONFLICT (pnr) DO NOTHING"
        ).rowcount
        conn.execute(
            "INSERT INTO passengers (booking_id, flight_id, first_name, last_name, date_of_birth, type) "
            "SELECT f.id, p.flight_id, p.first_name, p.last_name, p.date_of_birth, p.type "
            "FROM fresh AS f JOIN passengers AS p ON p.booking_id = f.old_id "
            "WHERE EXISTS (SELECT 1 FROM bookings WHERE id = f.id)"
        )
    return inserted


def report_p95(path: Path, rounds: int) -> dict[str, tuple[float, float]]:
    """p50 and p95 (ms) of each warehouse report, as /analytics builds it, over the last 30 days."""
    reader = WarehouseReader(path)
    today = datetime.now(UTC).date()
    period = Period(today - timedelta(days=29), today, "Europe/Paris", "day")
    builders = {
        "dashboard": service.dashboard_report,
        "bookings": service.bookings_report,
        "revenue": service.revenue_report,
        "users": service.users_report,
        "flights": service.flights_report,
    }
    results = {}
    for name, build in builders.items():
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            cursor = reader.cursor()
            assert cursor is not None
            build(cursor, period, True)
            cursor.close()
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        results[name] = (statistics.median(timings), timings[int(len(timings) * 0.95) - 1])
    reader.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="PostgreSQL server (its maintenance database)")
    parser.add_argument("--source", help="existing seeded database to copy (default: seed a scratch one)")
    parser.add_argument("--scale", choices=["small", "large"], default="small")
    parser.add_argument("--rounds", type=int, default=40, help="runs of each report for its p95")
    args = parser.parse_args()

    scratch = f"bench_replication_{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    conninfo = make_conninfo(args.database_url, dbname=scratch)
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        if args.source:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(scratch), sql.Identifier(args.source)
                )
            )
        else:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        if not args.source:
            from core_api.cli import HISTORY_DAYS
            from core_api.seed import seed_reference_and_flights
            from core_api.seed.history import LARGE_HISTORY, SMALL_HISTORY
            from core_api.storage.migrations import migrate

            asyncio.run(migrate(conninfo))
            days, history = (60, SMALL_HISTORY) if args.scale == "small" else (365, LARGE_HISTORY)
            print(f"seeding ({args.scale}) …", flush=True)
            asyncio.run(seed_reference_and_flights(conninfo, days=days, history_days=HISTORY_DAYS, history=history))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # autovacuum is off on the bench machine
            counts = {t.name: conn.execute(f"SELECT count(*) FROM {t.name}").fetchall()[0][0] for t in TABLES}  # noqa: S608
        print("source rows:", ", ".join(f"{name} {count:,}" for name, count in counts.items()))

        raw_rows, raw_seconds = raw_copy_rate(conninfo)
        print(
            f"raw COPY TO STDOUT (csv, same SELECTs): {raw_rows:,} rows in {raw_seconds:.2f}s = "
            f"{raw_rows / raw_seconds:,.0f} rows/s"
        )

        files = WarehouseFiles(workdir / "warehouse.duckdb")
        files.directory.mkdir(parents=True, exist_ok=True)
        rss_before = psutil.Process().memory_info().rss
        with PeakRss() as rss:
            duck = files.open_staging()
            started = time.perf_counter()
            result = replicate(conninfo, duck)
            replication_seconds = time.perf_counter() - started
            marts_started = time.perf_counter()
            for mart in MARTS:
                build_mart(duck, mart)
            marts_seconds = time.perf_counter() - marts_started
            duck.execute("CHECKPOINT")
            duck.close()
            publish_started = time.perf_counter()
            files.publish()
            publish_seconds = time.perf_counter() - publish_started
        rows = result.rows_read
        print(
            f"full replication: {rows:,} rows in {replication_seconds:.2f}s = {rows / replication_seconds:,.0f} rows/s "
            f"({rows / replication_seconds / (raw_rows / raw_seconds):.0%} of raw COPY); marts {marts_seconds:.2f}s, "
            f"publish {publish_seconds:.2f}s ({files.staging.stat().st_size / 1e6:.0f} MB); "
            f"peak RSS {rss.peak / 1e6:.0f} MB (+{(rss.peak - rss_before) / 1e6:.0f} MB over the process at start)"
        )
        for table in sorted(result.tables, key=lambda t: -t.rows_read)[:5]:
            print(f"  {table.name}: {table.rows_read:,} rows in {table.seconds:.2f}s")

        inserted = add_bookings(conninfo, NEW_BOOKINGS)
        settings = load_settings(
            {
                "FLIGHTDESK_ENV": "test",
                "FLIGHTDESK_DATABASE_URL": conninfo,
                "FLIGHTDESK_WAREHOUSE_PATH": str(files.path),
            },
            dotenv=None,
        )
        duck = files.open_staging()
        started = time.perf_counter()
        incremental = replicate(conninfo, duck)
        incremental_seconds = time.perf_counter() - started
        for mart in MARTS:
            build_mart(duck, mart)
        duck.execute("CHECKPOINT")
        duck.close()
        files.publish()
        total_incremental = time.perf_counter() - started
        print(
            f"incremental after {inserted:,} new bookings: replication {incremental_seconds:.2f}s "
            f"({incremental.rows_read:,} rows read), with marts and publish {total_incremental:.2f}s"
        )
        add_bookings(conninfo, NEW_BOOKINGS)
        started = time.perf_counter()
        outcome = refresh(settings)
        print(
            f"the same through Dagster (flightdesk pipelines, checks included): {time.perf_counter() - started:.2f}s, "
            f"success={outcome.success}"
        )

        for name, (p50, p95) in report_p95(files.path, args.rounds).items():
            print(f"/analytics/{name} report on the marts: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({args.rounds} runs)")
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
