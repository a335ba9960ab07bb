"""The one job: refresh everything (replicate, rebuild the marts, check, publish), steps in one process because
they share the staging DuckDB file, which one process at a time may open read-write.
"""

from __future__ import annotations

import dagster as dg

__all__ = ["refresh_warehouse"]

refresh_warehouse = dg.define_asset_job(
    "refresh_warehouse",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Replicate PostgreSQL, rebuild the marts, check them and publish a new warehouse snapshot.",
)
