"""The background worker (``flightdesk worker``): an arq worker whose jobs and crons the domains contribute.

It publishes a heartbeat that ``/health/services`` reads, runs the outbox relay beside the jobs (started in
:func:`on_startup`, stopped in :func:`on_shutdown`), runs ``dispatch_event``, the job the relay enqueues for each
event, the booking crons (releasing lapsed holds every few seconds, forgetting expired idempotency keys) and the
auth cleanup (expired blacklist entries, ended lockout windows), and the notification jobs (``send_notification``,
the reminder cron, the stalled-mail sweep; the outbox handlers that queue mails are registered by importing
``core_api.notifications.handlers``). The audit sealer runs beside them on a thread of its
own (chaining committed audit rows within a second or so), and audit retention nightly.
Later domains add their jobs and crons (notifications) to :class:`WorkerSettings`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

from arq import cron, func
from arq.connections import RedisSettings

from core_api.audit._chain import cleanup
from core_api.audit.sealer import Sealer
from core_api.audit.service import SYSTEM
from core_api.auth.service import forget_expired_state
from core_api.bookings.idempotency import delete_expired_keys
from core_api.bookings.service import BookingService, release_lapsed_holds
from core_api.notifications import handlers as _notification_handlers  # noqa: F401 - registers the handlers
from core_api.notifications.jobs import Notifier, requeue_stalled_mail, send_notification, send_reminders
from core_api.notifications.metrics import refresh_worker_gauges, serve_worker_metrics
from core_api.outbox.dispatch import dispatch_event
from core_api.outbox.relay import OutboxRelay
from core_api.payments.service import PaymentService, reconcile_pending_refunds
from core_api.security.crypto import load_cipher
from core_api.settings import get_settings
from core_api.storage.db import create_pool

__all__ = [
    "HEARTBEAT_KEY",
    "HEARTBEAT_STALE_SECONDS",
    "WorkerSettings",
    "audit_retention",
    "expire_holds",
    "forget_expired_auth_state",
    "forget_idempotency_keys",
    "heartbeat",
    "reconcile_refunds",
]

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "flightdesk:worker:heartbeat"
HEARTBEAT_INTERVAL_SECONDS = 10
HEARTBEAT_STALE_SECONDS = 3 * HEARTBEAT_INTERVAL_SECONDS
HOLD_SWEEP_INTERVAL_SECONDS = 15
"""How often lapsed holds are released: a seat is back on sale at most this long after its hold ends."""


async def heartbeat(ctx: dict[str, Any]) -> None:
    """Record that a worker is alive; the key expires if every worker stops."""
    await ctx["redis"].set(HEARTBEAT_KEY, datetime.now(UTC).isoformat(), ex=HEARTBEAT_STALE_SECONDS * 2)


async def expire_holds(ctx: dict[str, Any]) -> int:
    """Release the seats of bookings whose hold lapsed unpaid (status EXPIRED)."""
    return await release_lapsed_holds(ctx["bookings"])


async def forget_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Delete idempotency keys past their 24 hours."""
    return await delete_expired_keys(ctx["bookings"].pool)


async def audit_retention(ctx: dict[str, Any]) -> int:
    """Delete sealed audit rows past ``FLIGHTDESK_AUDIT_RETENTION_DAYS`` (the chain stays verifiable)."""
    result = await cleanup(ctx["bookings"].pool, SYSTEM, get_settings().audit.retention_days)
    return result.deleted


async def forget_expired_auth_state(ctx: dict[str, Any]) -> int:
    """Delete expired access-token blacklist entries and lockout counters whose window has ended."""
    return await forget_expired_state(ctx["pool"])


async def reconcile_refunds(ctx: dict[str, Any]) -> int:
    """Ask the provider again for refunds it did not answer (or that a crash left between our commit and its answer)."""
    return await reconcile_pending_refunds(ctx["payments"])


async def on_startup(ctx: dict[str, Any]) -> None:
    """Open the worker's shared clients; ``ctx`` carries ``redis`` (arq's pool) and ``database_url`` (:func:`run`)."""
    await heartbeat(ctx)
    settings = get_settings()
    pool = create_pool(settings, ctx["database_url"], name="flightdesk-worker")
    await pool.open(wait=True)
    ctx["pool"] = pool
    cipher = load_cipher(settings)
    ctx["bookings"] = BookingService(pool, ctx["redis"], settings, cipher)
    ctx["payments"] = PaymentService(pool, settings, cipher)
    ctx["bookings"].settle_refund = ctx["payments"].settle_refund
    ctx["notifier"] = Notifier.from_settings(settings, pool, ctx["redis"], cipher)
    if settings.notifications.metrics_port and not ctx.get("metrics_served"):
        serve_worker_metrics(settings.notifications.metrics_port)
        ctx["metrics_served"] = True
    relay = OutboxRelay(ctx["database_url"], ctx["redis"], poll_interval=settings.outbox.poll_seconds)
    await relay.start()
    ctx["outbox_relay"] = relay
    sealer = Sealer(ctx["database_url"], interval=settings.audit.seal_interval_seconds)
    sealer.start()
    ctx["audit_sealer"] = sealer
    logger.info("worker started")


async def on_shutdown(ctx: dict[str, Any]) -> None:
    sealer: Sealer | None = ctx.pop("audit_sealer", None)
    if sealer is not None:
        await asyncio.to_thread(sealer.stop)
    relay: OutboxRelay | None = ctx.pop("outbox_relay", None)
    if relay is not None:
        await relay.stop()
    bookings: BookingService | None = ctx.pop("bookings", None)
    if bookings is not None:
        await bookings.pool.close()
    logger.info("worker stopped")


def run(database_url: str, redis_url: str) -> None:
    """Run the worker until SIGINT/SIGTERM (arq finishes or re-queues the jobs in flight)."""
    from arq.worker import run_worker

    run_worker(
        WorkerSettings,  # type: ignore[arg-type]
        redis_settings=RedisSettings.from_dsn(redis_url),
        ctx={"database_url": database_url},
    )


class WorkerSettings:
    functions: ClassVar[list[Any]] = [
        dispatch_event,
        # No result kept, so retry-failed can enqueue the same job id again at once; the row's attempts count the
        # tries (3), arq's max_tries only bounds re-runs after crashes.
        func(send_notification, keep_result=0, max_tries=20, timeout=60),
    ]
    cron_jobs: ClassVar[list[Any]] = [
        cron(heartbeat, second=set(range(0, 60, HEARTBEAT_INTERVAL_SECONDS)), run_at_startup=False, unique=False),
        cron(expire_holds, second=set(range(0, 60, HOLD_SWEEP_INTERVAL_SECONDS)), run_at_startup=True),
        cron(forget_idempotency_keys, minute=set(range(0, 60, 10)), second={30}),
        cron(audit_retention, hour={3}, minute={17}, second={0}),
        cron(forget_expired_auth_state, minute=set(range(5, 60, 10)), second={30}),
        cron(reconcile_refunds, second={45}, run_at_startup=True),
        cron(send_reminders, minute=set(range(0, 60, 5)), second={45}, run_at_startup=True),
        cron(requeue_stalled_mail, second={20}),
        cron(refresh_worker_gauges, second=set(range(2, 60, 5)), run_at_startup=True),
    ]
    on_startup = on_startup
    on_shutdown = on_shutdown
    health_check_interval = 30
