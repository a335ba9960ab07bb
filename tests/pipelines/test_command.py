"""``flightdesk pipelines`` as a user runs it: a separate process that materialises everything once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.support.warehouse_rows import insert_known_rows


def test_flightdesk_pipelines_materialises_everything_and_publishes(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    insert_known_rows(database_url)
    warehouse = tmp_path / "warehouse.duckdb"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLIGHTDESK_")},
        "FLIGHTDESK_DATABASE_URL": database_url,
        "FLIGHTDESK_REDIS_URL": redis_url,
        "FLIGHTDESK_WAREHOUSE_PATH": str(warehouse),
    }
    result = subprocess.run(
        [sys.executable, "-m", "core_api.cli", "pipelines"], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replica/bookings: 3 read, 3 rows (full)" in result.stderr
    assert "marts/bookings_revenue:" in result.stderr
    assert "publish done (3/3)" in result.stderr
    with duckdb.connect(str(warehouse.resolve()), read_only=True) as conn:
        assert conn.execute("SELECT sum(net_revenue) FROM mart_bookings_revenue").fetchone() == (120_000,)
