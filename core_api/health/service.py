"""Round-trips to each dependency, each bounded by a timeout so a hung service reads as down, not as a hang.

PostgreSQL, Redis, the worker and the audit sealer are what the API needs to do its work: one of them down makes the
report ``degraded`` (503, so a load balancer stops sending traffic). The SMTP server, the payment and search
providers and the warehouse are reported the same way but never turn the answer into a 503: without them the API
still serves (mail waits in its queue, a search provider is skipped, analytics read the last snapshot).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core_api.audit.sealer import SEAL_LAG_ALERT_SECONDS, read_backlog, update_backlog_gauges
from core_api.health.schemas import ServiceHealth, ServicesHealth
from core_api.worker import HEARTBEAT_KEY, HEARTBEAT_STALE_SECONDS

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from core_api.settings import Settings
    from core_api.storage.db import DbPool

__all__ = ["check_services"]

CHECK_TIMEOUT_SECONDS = 2.0
# Reported, never a reason for a 503 (see the module's docstring).
ADVISORY = frozenset({"smtp", "payments", "amadeus", "warehouse"})
# The pipelines' freshness check allows the same (pipelines/checks.py, MAX_LAG).
WAREHOUSE_STALE_SECONDS = 15 * 60


async def _reach(host: str, port: int) -> None:
    """Open a TCP connection and close it: the service listens."""
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()


async def _timed(name: str, probe: Callable[[], Awaitable[str | None]]) -> ServiceHealth:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            detail = await probe()
    except TimeoutError:
        return ServiceHealth(name, "down", detail=f"no answer within {CHECK_TIMEOUT_SECONDS:g}s")
    except LookupError as exc:  # a check that got its answer, and the answer is bad: say what it was
        return ServiceHealth(name, "down", detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is reported, not raised
        return ServiceHealth(name, "down", detail=type(exc).__name__)
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ServiceHealth(name, "up", latency_ms=latency, detail=detail)


async def check_services(pool: DbPool, redis: aioredis.Redis, settings: Settings) -> ServicesHealth:
    async def postgres() -> str | None:
        async with pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as conn:
            await conn.execute("SELECT 1")
        return None

    async def ping_redis() -> str | None:
        await redis.ping()
        return None

    async def worker() -> str | None:
        raw: Any = await redis.get(HEARTBEAT_KEY)
        if raw is None:
            raise LookupError("no worker heartbeat")
        beat = datetime.fromisoformat(raw.decode())
        age = (datetime.now(UTC) - beat).total_seconds()
        if age > HEARTBEAT_STALE_SECONDS:
            raise LookupError("worker heartbeat is stale")
        return f"last heartbeat {age:.0f}s ago"

    async def audit_sealer() -> str | None:
        async with pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as conn:
            backlog = await read_backlog(conn)
        update_backlog_gauges(backlog)
        age = backlog.oldest_age_seconds
        summary = f"{backlog.unsealed} audit rows not sealed yet, the oldest {age:.1f}s old"
        if age > SEAL_LAG_ALERT_SECONDS:
            raise LookupError(summary)
        return summary

    amadeus_enabled = bool(settings.amadeus.client_id and settings.amadeus.client_secret)
    services = list(
        await asyncio.gather(
            _timed("postgres", postgres),
            _timed("redis", ping_redis),
            _timed("worker", worker),
            _timed("audit_sealer", audit_sealer),
            _timed("smtp", functools.partial(_smtp, settings)),
            _timed("payments", functools.partial(_payments, settings)),
            _timed("amadeus", functools.partial(_amadeus, settings))
            if amadeus_enabled
            else _disabled("amadeus", "no Amadeus credentials set"),
            _timed("warehouse", functools.partial(_warehouse, settings)),
        )
    )
    healthy = all(service.status != "down" for service in services if service.name not in ADVISORY)
    return ServicesHealth("ok" if healthy else "degraded", services)


async def _disabled(name: str, detail: str) -> ServiceHealth:
    return ServiceHealth(name, "disabled", detail=detail)


async def _smtp(settings: Settings) -> str | None:
    """The server's greeting (``220``), then QUIT: what the worker's first step of every send needs."""
    host = settings.smtp.host or "127.0.0.1"
    where = f"{host}:{settings.smtp.port}" + ("" if settings.smtp.host else " (local catcher)")
    if settings.smtp.security == "tls":  # implicit TLS: a listening port is as far as this probe goes
        await _reach(host, settings.smtp.port)
        return where
    reader, writer = await asyncio.open_connection(host, settings.smtp.port)
    try:
        greeting = await reader.readline()
        if not greeting.startswith(b"220"):
            raise LookupError(f"{where} greeted with {greeting[:60].decode(errors='replace').strip()!r}")
        writer.write(b"QUIT\r\n")
    finally:
        writer.close()
    return where


async def _payments(settings: Settings) -> str | None:
    if settings.payment.provider == "sandbox":
        return "sandbox (in our database)"
    url = urlsplit(settings.stripe.api_base)
    host = url.hostname or ""
    await _reach(host, url.port or (443 if url.scheme == "https" else 80))
    return f"stripe at {host}"


async def _amadeus(settings: Settings) -> str | None:
    await _reach(settings.amadeus.host, settings.amadeus.port)
    return f"{settings.amadeus.host}:{settings.amadeus.port}"


async def _warehouse(settings: Settings) -> str | None:
    from core_api.analytics.service import reader_for
    from warehouse.read import freshness

    def read() -> tuple[str | None, datetime | None] | None:
        cursor = reader_for(str(settings.warehouse_path)).cursor()
        if cursor is None:
            return None
        try:
            fresh = freshness(cursor)
        finally:
            cursor.close()
        return fresh.snapshot, fresh.as_of

    published = await asyncio.to_thread(read)
    if published is None:
        raise LookupError("no warehouse snapshot published yet (flightdesk pipelines, or Dagster's schedule)")
    snapshot, as_of = published
    age = (datetime.now(UTC) - as_of).total_seconds() if as_of else None
    summary = f"{snapshot}: data {age:.0f}s old" if age is not None else f"{snapshot}: no replication time"
    if age is None or age > WAREHOUSE_STALE_SECONDS:
        raise LookupError(summary)
    return summary
