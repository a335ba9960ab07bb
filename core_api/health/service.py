"""Round-trips to each dependency, each bounded by a timeout so a hung service reads as down, not as a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core_api.audit.sealer import SEAL_LAG_ALERT_SECONDS, read_backlog, update_backlog_gauges
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
    except LookupError as exc:  # a check that got its answer, and the answer is bad: say what it was
        return ServiceHealth(name, "down", detail=str(exc))
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

    async def audit_sealer() -> str | None:
        async with pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as conn:
            backlog = await read_backlog(conn)
        update_backlog_gauges(backlog)
        age = backlog.oldest_age_seconds
        summary = f"{backlog.unsealed} audit rows not sealed yet, the oldest {age:.1f}s old"
        if age > SEAL_LAG_ALERT_SECONDS:
            raise LookupError(summary)
        return summary

    services = list(
        await asyncio.gather(
            _timed("postgres", postgres),
            _timed("redis", ping_redis),
            _timed("worker", worker),
            _timed("audit_sealer", audit_sealer),
        )
    )
    healthy = all(service.status != "down" for service in services)
    return ServicesHealth("ok" if healthy else "degraded", services)
