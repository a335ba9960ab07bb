"""Materialise everything once, in this process (``flightdesk pipelines`` and the tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from core_api.settings import Settings
from pipelines.assets import MART_ASSETS, replicated_tables, warehouse_snapshot
from pipelines.checks import ASSET_CHECKS
from pipelines.resources import resources_from_settings

__all__ = ["STAGES", "RefreshResult", "refresh"]

ASSETS = [replicated_tables, *MART_ASSETS, warehouse_snapshot]
# What is materialised in turn, so that progress can be shown between stages.
STAGES: tuple[tuple[str, dg.AssetSelection], ...] = (
    ("replicate", dg.AssetSelection.groups("replication")),
    ("marts", dg.AssetSelection.groups("marts")),
    ("publish", dg.AssetSelection.groups("publish")),
)


@dataclass
class RefreshResult:
    success: bool
    materialized: dict[str, dict[str, object]] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)


def refresh(
    settings: Settings,
    database_url: str | None = None,
    *,
    on_stage: Callable[[str, RefreshResult], None] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> RefreshResult:
    """Replicate, rebuild, check and publish; stop at the first stage that fails (a blocking check included)."""
    resources = resources_from_settings(settings, database_url)
    result = RefreshResult(success=True)
    with instance or dg.DagsterInstance.ephemeral() as dagster_instance:
        for name, selection in STAGES:
            outcome = dg.materialize(
                [*ASSETS, *ASSET_CHECKS],
                selection=selection,
                resources=resources,
                instance=dagster_instance,
                raise_on_error=False,
            )
            for event in outcome.get_asset_materialization_events():
                materialization = event.step_materialization_data.materialization
                result.materialized[materialization.asset_key.to_user_string()] = {
                    key: value.value for key, value in materialization.metadata.items()
                }
            for evaluation in outcome.get_asset_check_evaluations():
                check = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                result.checks[check] = evaluation.passed
            blocked = any(
                not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
                for evaluation in outcome.get_asset_check_evaluations()
            )
            if not outcome.success or blocked:
                result.success = False
            if on_stage is not None:
                on_stage(name, result)
            if not result.success:
                break
    return result
