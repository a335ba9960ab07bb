"""The worker's Prometheus endpoint: arq queue depth, outbox backlog, mails by state, sends by template and outcome.

The worker is no HTTP server, so with ``FLIGHTDESK_NOTIFICATIONS_METRICS_PORT`` set it serves the metrics of its own
process on that port (loopback only: they describe the infrastructure, as ``/metrics`` of the API does). The
gauges are refreshed by a worker cron every few seconds; ``flightdesk_notifications_total`` (in ``jobs``) counts
each attempt as it ends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from arq.constants import default_queue_name
from prometheus_client import Gauge, start_http_server

from core_api.notifications.service import QUERIES
from core_api.outbox.relay import backlog

if TYPE_CHECKING:
    from core_api.notifications.notifier import Notifier

__all__ = ["refresh_worker_gauges", "serve_worker_metrics"]

QUEUE_DEPTH = Gauge("flightdesk_worker_queue_depth", "Jobs in the arq queue (due, deferred and running).")
OUTBOX_BACKLOG = Gauge("flightdesk_outbox_backlog_events", "Outbox events not yet published by the relay.")
OUTBOX_OLDEST = Gauge("flightdesk_outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox event.")
MAILS = Gauge("flightdesk_notifications_mails", "Mails not cleared, by status.", ["status"])

_STATUSES = ("PENDING", "SENDING", "SENT", "FAILED")


def serve_worker_metrics(port: int) -> None:
    start_http_server(port, addr="127.0.0.1")


async def refresh_worker_gauges(ctx: dict[str, Any]) -> None:
    notifier: Notifier = ctx["notifier"]
    QUEUE_DEPTH.set(await notifier.redis.zcard(default_queue_name))
    async with notifier.pool.connection() as conn:
        pending = await backlog(conn)
        rows = await (await conn.execute(QUERIES["mails_by_status"])).fetchall()
    OUTBOX_BACKLOG.set(pending.pending)
    if pending.oldest_created_at is None:
        OUTBOX_OLDEST.set(0)
    else:
        OUTBOX_OLDEST.set((datetime.now(UTC) - pending.oldest_created_at).total_seconds())
    counts = {row["status"]: row["n"] for row in rows}
    for status in _STATUSES:
        MAILS.labels(status).set(counts.get(status, 0))
