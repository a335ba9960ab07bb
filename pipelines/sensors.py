"""The outbox sensor: refresh early when many state changes piled up since the last refresh, or when the
published data is older than the freshness bound and anything changed at all.

Every state change of the core writes an ``outbox_events`` row (SPEC §5), so the outbox sequence is a cheap
measure of how far the warehouse is behind; the cursor is the last sequence number a refresh was requested for.
"""

from datetime import UTC, datetime

import dagster as dg
import psycopg

from pipelines.checks import MAX_LAG
from pipelines.jobs import refresh_warehouse
from pipelines.resources import PostgresResource, WarehouseResource
from pipelines.schedules import refresh_in_progress

__all__ = ["BACKLOG_THRESHOLD", "outbox_backlog", "refresh_decision"]

# New outbox events that trigger a refresh before the schedule's next tick.
BACKLOG_THRESHOLD = 500


def refresh_decision(
    latest_seq: int, cursor_seq: int, published_at: datetime | None, now: datetime, threshold: int = BACKLOG_THRESHOLD
) -> str | None:
    """Why a refresh is due (None: not due)."""
    backlog = latest_seq - cursor_seq
    if backlog <= 0:
        return None
    if backlog >= threshold:
        return f"{backlog} outbox events since the last refresh"
    if published_at is None or now - published_at > MAX_LAG:
        return f"{backlog} outbox events and the warehouse is older than {MAX_LAG}"
    return None


def _published_at(warehouse: WarehouseResource) -> datetime | None:
    conn = warehouse.files.open_current()
    if conn is None:
        return None
    try:
        row = conn.execute("SELECT value FROM _meta WHERE key = 'snapshot_at'").fetchone()
    finally:
        conn.close()
    return datetime.fromisoformat(row[0]) if row else None


@dg.sensor(
    job=refresh_warehouse,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def outbox_backlog(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    """Request a refresh when the outbox grew by many events, or the warehouse is stale and anything changed."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox_events").fetchone()
    latest = int(row[0]) if row else 0
    cursor = int(context.cursor) if context.cursor else 0
    reason = refresh_decision(latest, cursor, _published_at(warehouse), datetime.now(UTC))
    if reason is None:
        return dg.SkipReason("the warehouse is close enough behind the outbox")
    if refresh_in_progress(context.instance):
        return dg.SkipReason("a refresh is running")
    context.update_cursor(str(latest))
    return dg.RunRequest(run_key=f"outbox-{latest}", tags={"reason": reason})
