"""Fixtures of the data platform's tests: a database with the known rows, and a warehouse refreshed from it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core_api.settings import Settings, load_settings
from pipelines.replication import replicate
from pipelines.run import RefreshResult, refresh
from tests.conftest import cloned_database
from tests.support.warehouse_rows import insert_known_rows
from warehouse.marts import MARTS, build_mart
from warehouse.snapshots import WarehouseFiles


def publish_without_dagster(settings: Settings) -> None:
    """Replicate, build the marts and publish with the plain functions the assets call (faster than a Dagster run,
    for tests whose subject is not the Dagster run itself)."""
    files = WarehouseFiles(settings.warehouse_path)
    conn = files.open_staging()
    try:
        replicate(settings.database.url or "", conn)
        for mart in MARTS:
            build_mart(conn, mart)
        conn.execute("INSERT OR REPLACE INTO _meta VALUES ('built_at', ?)", [datetime.now(UTC).isoformat()])
    finally:
        conn.close()
    files.publish()


def pipeline_settings(database_url: str, warehouse: Path) -> Settings:
    return load_settings(
        {
            "FLIGHTDESK_ENV": "test",
            "FLIGHTDESK_DATABASE_URL": database_url,
            "FLIGHTDESK_WAREHOUSE_PATH": str(warehouse),
        },
        dotenv=None,
    )


@pytest.fixture(scope="module")
async def known_database(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """A database of this module's own holding the known rows (tests of the module only read it)."""
    async with cloned_database(postgres_url, template_database) as url:
        insert_known_rows(url)
        yield url


@pytest.fixture(scope="module")
def refreshed(known_database: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, RefreshResult]:
    """The known rows materialised once through Dagster (replicate, marts, checks, publish)."""
    settings = pipeline_settings(known_database, tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    result = refresh(settings)
    assert result.success, result.checks
    return settings, result


@pytest.fixture
async def known_rows_database(database_url: str) -> dict[str, int]:
    """The known rows in this test's own database (for tests that change them)."""
    return insert_known_rows(database_url)
