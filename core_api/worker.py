"""The background worker (``flightdesk worker``): an arq worker whose jobs and crons the domains contribute.

For now it publishes a heartbeat that ``/health/services`` reads; later domains add their jobs (outbox relay,
hold expiry, notifications) to :class:`WorkerSettings`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

from arq import cron
from arq.connections import RedisSettings

__all__ = ["HEARTBEAT_KEY", "HEARTBEAT_STALE_SECONDS", "WorkerSettings", "heartbeat"]

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "flightdesk:worker:heartbeat"
HEARTBEAT_INTERVAL_SECONDS = 10
HEARTBEAT_STALE_SECONDS = 3 * HEARTBEAT_INTERVAL_SECONDS


async def heartbeat(ctx: dict[str, Any]) -> None:
    """Record that a worker is alive; the key expires if every worker stops."""
    await ctx["redis"].set(HEARTBEAT_KEY, datetime.now(UTC).isoformat(), ex=HEARTBEAT_STALE_SECONDS * 2)


async def on_startup(ctx: dict[str, Any]) -> None:
    logger.info("worker started")
    await heartbeat(ctx)


async def on_shutdown(ctx: dict[str, Any]) -> None:
    logger.info("worker stopped")


def run(redis_url: str) -> None:
    """Run the worker until SIGINT/SIGTERM (arq finishes or re-queues the jobs in flight)."""
    from arq.worker import run_worker

    run_worker(WorkerSettings, redis_settings=RedisSettings.from_dsn(redis_url))  # type: ignore[arg-type]


class WorkerSettings:
    functions: ClassVar[list[Any]] = []
    cron_jobs: ClassVar[list[Any]] = [
        cron(heartbeat, second=set(range(0, 60, HEARTBEAT_INTERVAL_SECONDS)), run_at_startup=False, unique=False),
    ]
    on_startup = on_startup
    on_shutdown = on_shutdown
    health_check_interval = 30
