"""The shared Redis client: short timeouts, because Redis is optional on every request path."""

from __future__ import annotations

import redis.asyncio as aioredis

from core_api.settings import Settings

__all__ = ["create_redis"]


def create_redis(settings: Settings, url: str) -> aioredis.Redis:
    timeout = settings.redis.timeout_seconds
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry_on_timeout=False,
    )
