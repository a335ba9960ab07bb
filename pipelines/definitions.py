"""The Dagster definitions of the data platform (``dagster dev -m pipelines.definitions``)."""

from __future__ import annotations

import dagster as dg

from core_api.settings import get_settings
from pipelines.assets import MART_ASSETS, replicated_tables, warehouse_snapshot
from pipelines.checks import ASSET_CHECKS
from pipelines.jobs import refresh_warehouse
from pipelines.resources import resources_from_settings
from pipelines.schedules import refresh_every_five_minutes
from pipelines.sensors import outbox_backlog

__all__ = ["ASSETS", "defs"]

ASSETS = [replicated_tables, *MART_ASSETS, warehouse_snapshot]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[refresh_warehouse],
    schedules=[refresh_every_five_minutes],
    sensors=[outbox_backlog],
    resources=resources_from_settings(get_settings()),
    executor=dg.in_process_executor,
)
