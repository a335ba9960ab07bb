"""Dependencies handlers ask for by name: the pool and the Redis client opened in the app's lifespan."""

from __future__ import annotations

from typing import TypeAlias

import redis.asyncio as aioredis
from litestar.datastructures import State
from litestar.di import NamedDependency

from core_api.storage.db import DbPool

__all__ = ["Pool", "Redis", "provide_pool", "provide_redis"]

Pool: TypeAlias = NamedDependency[DbPool]
Redis: TypeAlias = NamedDependency[aioredis.Redis]


def provide_pool(state: State) -> DbPool:
    return state.pool


def provide_redis(state: State) -> aioredis.Redis:
    return state.redis
