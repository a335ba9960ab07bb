"""The Dagster definitions load, and the schedule and the sensor decide as they should."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from pipelines.definitions import defs
from pipelines.schedules import refresh_every_five_minutes
from pipelines.sensors import BACKLOG_THRESHOLD, refresh_decision


def test_the_definitions_load_with_every_asset_check_job_schedule_and_sensor() -> None:
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    expected_replicas = {
        "bookings",
        "passengers",
        "payments",
        "refunds",
        "users",
        "flights",
        "flight_prices",
        "audit_logs",
        "notifications",
    }
    assert {f"replica/{name}" for name in expected_replicas} <= keys
    assert {"marts/bookings_revenue", "marts/load_factor", "marts/funnel", "warehouse_snapshot"} <= keys
    job = defs.resolve_job_def("refresh_warehouse")
    assert job.executor_def.name == "in_process"
    assert defs.resolve_schedule_def("refresh_every_five_minutes").cron_schedule == "*/5 * * * *"
    assert defs.resolve_sensor_def("outbox_backlog")


def test_the_schedule_requests_a_run_unless_one_is_running() -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance)
        assert isinstance(refresh_every_five_minutes(context), dg.RunRequest)


def test_the_sensor_refreshes_on_a_backlog_or_when_stale() -> None:
    now = datetime.now(UTC)
    fresh = now - timedelta(minutes=1)
    stale = now - timedelta(hours=1)
    assert refresh_decision(100, 100, fresh, now) is None
    assert refresh_decision(100, 100, stale, now) is None  # nothing changed: nothing to do
    assert refresh_decision(100 + BACKLOG_THRESHOLD, 100, fresh, now)
    assert refresh_decision(101, 100, fresh, now) is None
    assert refresh_decision(101, 100, stale, now)
    assert refresh_decision(101, 100, None, now)
