"""Round-trips to each dependency, each bounded by a timeout so a hung service reads as down, not as a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core_api.health.schemas import ServiceHealth, ServicesHealth
from core_api.worker import HEARTBEAT_KEY, HEARTBEAT_STALE_SECONDS

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from core_api.storage.db import DbPool

__all__ = ["check_services"]

CHECK_TIMEOUT_SECONDS = 2.0


async def _timed(name: str, probe: Callable[[], Awaitable[str | None]]) -> ServiceHealth:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            detail = await probe()
    except TimeoutError:
        return ServiceHealth(name, "down", detail=f"no answer within {CHECK_TIMEOUT_SECONDS:g}s")
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is reported, not raised
        return ServiceHealth(name, "down", detail=type(exc).__name__)
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ServiceHealth(name, "up", latency_ms=latency, detail=detail)


async def check_services(pool: DbPool, redis: aioredis.Redis) -> ServicesHealth:
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

    services = list(
        await asyncio.gather(_timed("postgres", postgres), _timed("redis", ping_redis), _timed("worker", worker))
    )
    healthy = all(service.status != "down" for service in services)
    return ServicesHealth("ok" if healthy else "degraded", services)
