"""Assets: the replicated tables (one multi-asset reading one PostgreSQL snapshot), one asset per mart, and the
published warehouse snapshot readers switch to.

Every asset works on the staging DuckDB file, which only the run opens; nothing a reader can see changes until
``warehouse_snapshot`` publishes a complete copy (see :mod:`warehouse.snapshots`).
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from pipelines.replication import TABLES, replicate
from pipelines.resources import PostgresResource, WarehouseResource
from warehouse.marts import MARTS, Mart, build_mart

__all__ = [
    "MART_ASSETS",
    "REPLICA_KEYS",
    "mart_key",
    "replica_key",
    "replicated_tables",
    "warehouse_snapshot",
]


def replica_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["replica", table])


def mart_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


REPLICA_KEYS = {table.name: replica_key(table.name) for table in TABLES}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            group_name="replication",
            description=f"PostgreSQL `{name}` replicated into the warehouse (incremental, personal data left out).",
            kinds={"postgres", "duckdb"},
        )
        for name, key in REPLICA_KEYS.items()
    ],
    can_subset=True,
)
def replicated_tables(
    context: dg.AssetExecutionContext, postgres: PostgresResource, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult]:
    """Copy the rows changed since the last run of every selected table, all from one PostgreSQL snapshot."""
    selected = [name for name, key in REPLICA_KEYS.items() if key in context.selected_asset_keys]
    with warehouse.staging() as conn:
        result = replicate(
            postgres.url(),
            conn,
            selected,
            on_table=lambda table: context.log.info(
                f"{table.name}: {table.rows_read:,} rows read, {table.rows_total:,} in the warehouse "
                f"({'full load' if table.full_load else 'incremental'}, {table.seconds:.2f}s)"
            ),
        )
    for table in result.tables:
        yield dg.MaterializeResult(
            asset_key=REPLICA_KEYS[table.name],
            metadata={
                "rows_read": table.rows_read,
                "rows_total": table.rows_total,
                "full_load": table.full_load,
                "seconds": round(table.seconds, 3),
                "high_water": table.high_water.isoformat() if table.high_water else "",
                "snapshot_at": result.snapshot_at.isoformat(),
            },
        )


def _mart_asset(mart: Mart) -> dg.AssetsDefinition:
    @dg.asset(
        key=mart_key(mart.name),
        group_name="marts",
        description=mart.description,
        deps=[replica_key(table) for table in mart.tables] + [mart_key(name) for name in mart.marts],
        kinds={"duckdb", "sql"},
    )
    def build(warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.staging() as conn:
            rows = build_mart(conn, mart)
        return dg.MaterializeResult(metadata={"rows": rows, "model": f"warehouse/marts/{mart.name}.sql"})

    return build


MART_ASSETS = [_mart_asset(mart) for mart in MARTS]


@dg.asset(
    key="warehouse_snapshot",
    group_name="publish",
    deps=[mart_key(mart.name) for mart in MARTS],
    kinds={"duckdb"},
)
def warehouse_snapshot(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Publish the staging warehouse as a complete new snapshot and switch readers to it atomically."""
    built_at = datetime.now(UTC)
    with warehouse.staging() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO _meta VALUES ('built_at', ?)", [built_at.isoformat()])
        conn.execute("CHECKPOINT")
    files = warehouse.files
    target = files.publish()
    return dg.MaterializeResult(
        metadata={"snapshot": target.name, "bytes": target.stat().st_size, "built_at": built_at.isoformat()}
    )
