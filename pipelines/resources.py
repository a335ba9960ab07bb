"""Resources: the PostgreSQL the pipelines read and the warehouse they write, configured from the API's settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from core_api.settings import Settings
from warehouse.snapshots import WarehouseFiles

__all__ = ["PostgresResource", "WarehouseResource", "resources_from_settings"]


class PostgresResource(dg.ConfigurableResource):
    """The transactional database replicated from (``FLIGHTDESK_DATABASE_URL``)."""

    conninfo: str

    def url(self) -> str:
        if not self.conninfo:
            raise RuntimeError(
                "no PostgreSQL to replicate from: set FLIGHTDESK_DATABASE_URL or run `flightdesk pipelines`"
            )
        return self.conninfo


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse (``FLIGHTDESK_WAREHOUSE_PATH``): its staging file and published snapshots."""

    path: str

    @property
    def files(self) -> WarehouseFiles:
        return WarehouseFiles(self.path)

    @contextmanager
    def staging(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The read-write working copy; closed (and so checkpointed) at the end of the block."""
        conn = self.files.open_staging()
        try:
            yield conn
        finally:
            conn.close()


def resources_from_settings(settings: Settings, database_url: str | None = None) -> dict[str, object]:
    """The resources for these settings; ``database_url`` when the CLI resolved an embedded server."""
    return {
        "postgres": PostgresResource(conninfo=database_url or settings.database.url or ""),
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
    }
