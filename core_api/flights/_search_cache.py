"""The search's Redis cache (see ``core_api.flights.search`` for how searches use it) and its invalidation.

Entries are the answers as msgspec JSON under the query's digest, indexed by route and local departure day. Each
route and day has a generation: a search reads it with the entry on a miss (one ``MGET``), and its answer is stored
(one Lua script) only if no invalidation bumped it meanwhile, so a search that read flights just before a change
committed cannot cache what it read. Invalidation bumps the generation and drops the day's entries, also in one
script. :func:`changing_flights` is the one way flight changes (creating, re-timing, status) invalidate;
:func:`invalidate_flight` serves bookings, whose changes never move a flight to another day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from redis.exceptions import RedisError

from core_api.flights.schemas import Offer, SearchQuery, SearchResponse, SourceStatus
from core_api.storage.db import load_queries, struct_row, transaction
from core_api.web.ratelimit import OccasionalWarning

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from psycopg import AsyncConnection

    from core_api.storage.db import DbPool

__all__ = [
    "DEGRADED_TTL_SECONDS",
    "REDIS_BUDGET_SECONDS",
    "REDIS_COOLDOWN_SECONDS",
    "AffectedSearches",
    "CachedSearch",
    "Generation",
    "RedisUnavailable",
    "SearchCache",
    "SearchDay",
    "changing_flights",
    "forget_searches",
    "invalidate_flight",
    "invalidate_route_day",
    "search_days",
]

# The search's own logger: an operator filters one name for everything the search logs.
logger = logging.getLogger("core_api.flights.search")

QUERIES = load_queries("search")

DEGRADED_TTL_SECONDS = 30
"""Cache lifetime of an answer in which a provider failed or timed out."""
REDIS_BUDGET_SECONDS = 0.25
"""Longest a search waits on one Redis call (a healthy Redis answers in well under a millisecond)."""
REDIS_COOLDOWN_SECONDS = 3.0
"""How long the search leaves Redis alone after a failed call."""
_POLL_FIRST_SECONDS, _POLL_MAX_SECONDS = 0.005, 0.05
_PREFIX = "flightdesk:search:v2"  # v2: segments in UTC with their airports' zones

T = TypeVar("T")


class CachedSearch(msgspec.Struct, frozen=True, kw_only=True):
    offers: list[Offer]
    sources: list[SourceStatus]


_encode_entry = msgspec.json.Encoder().encode
_decode_entry = msgspec.json.Decoder(CachedSearch).decode

# Delete the lock only while it is still ours (it may have expired and been taken by another process).
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Store an answer only if its route and day were not invalidated since the search began (the generation it read
# then is still current), and index it under its route and day. KEYS: entry, day index, generation. ARGV: the
# generation read ('' for none), the entry, its TTL, the index's TTL.
_PUT = """
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# Invalidate a route and day: a new generation (searches begun before it will not store their answers), and every
# entry of the day index gone. KEYS: day index, generation. ARGV: the generation's TTL. Returns the entries dropped.
_FORGET = """
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local entries = redis.call('SMEMBERS', KEYS[1])
for first = 1, #entries, 500 do
    redis.call('DEL', unpack(entries, first, math.min(first + 499, #entries)))
end
redis.call('DEL', KEYS[1])
return #entries
"""
# A generation must outlive every search that read it (seconds); a day leaves no doubt and costs a few bytes.
_GENERATION_TTL_SECONDS = 86_400


class RedisUnavailable(Exception):
    """Redis failed or is being left alone after a failure; the search goes on uncached."""


def _route_day_key(origin: str, destination: str, day: date) -> str:
    return f"{_PREFIX}:day:{origin}:{destination}:{day.isoformat()}"


def _generation_key(origin: str, destination: str, day: date) -> str:
    return f"{_PREFIX}:generation:{origin}:{destination}:{day.isoformat()}"


Generation = bytes
"""How many times a route and day were invalidated, as Redis holds it (``b""``: never, or not recently)."""


class SearchCache:
    """The search's Redis: entries, the cross-process lock, the index of entries by route and day, and each route
    and day's generation.
    """

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int, lock_seconds: float, budget_seconds: float):
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.lock_seconds = lock_seconds
        self.budget_seconds = budget_seconds
        self._down = False
        self._retry_at = 0.0
        self._unlock = redis.register_script(_UNLOCK)
        self._put = redis.register_script(_PUT)
        self._outage = OccasionalWarning(logger, interval_seconds=10.0)

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        if self._down:
            now = time.monotonic()
            if now < self._retry_at:
                raise RedisUnavailable
            self._retry_at = now + REDIS_COOLDOWN_SECONDS  # this call probes; the others keep going without Redis
        try:
            async with asyncio.timeout(self.budget_seconds):
                result = await command()
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            self._down, self._retry_at = True, time.monotonic() + REDIS_COOLDOWN_SECONDS
            self._outage.warn("search served uncached, Redis unavailable: %s: %s", type(exc).__name__, exc)
            raise RedisUnavailable from exc
        self._down = False
        return result

    @staticmethod
    def _decode(raw: bytes | None) -> CachedSearch | None:
        if raw is None:
            return None
        try:
            return _decode_entry(raw)
        except msgspec.DecodeError:  # written by another version: recompute
            logger.warning("unreadable search cache entry ignored")
            return None

    async def get(self, digest: str) -> CachedSearch | None:
        try:
            return self._decode(await self._call(lambda: self.redis.get(f"{_PREFIX}:offers:{digest}")))
        except RedisUnavailable:
            return None

    async def lookup(self, digest: str, query: SearchQuery) -> tuple[CachedSearch | None, Generation | None]:
        """The entry, and the generation of the query's route and day, in one round trip (``None, None`` with Redis
        unavailable). A computation that starts now stores its answer only under this generation.
        """
        keys = [f"{_PREFIX}:offers:{digest}", _generation_key(query.origin, query.destination, query.date)]
        try:
            raw, generation = await self._call(lambda: self.redis.mget(keys))
        except RedisUnavailable:
            return None, None
        return self._decode(raw), generation or b""

    @staticmethod
    def _lock_key(digest: str, generation: Generation) -> str:
        # Computations of one search under different generations are different computations: one started before an
        # invalidation must not hold back the one started after it.
        return f"{_PREFIX}:lock:{digest}:{generation.decode()}"

    async def lock(self, digest: str, generation: Generation, token: str) -> bool | None:
        """True: ours; False: another computation holds it; None: Redis unavailable."""
        lock_ms = int(self.lock_seconds * 1000)
        key = self._lock_key(digest, generation)
        try:
            taken = await self._call(lambda: self.redis.set(key, token, nx=True, px=lock_ms))
        except RedisUnavailable:
            return None
        return bool(taken)

    async def unlock(self, digest: str, generation: Generation, token: str) -> None:
        with contextlib.suppress(RedisUnavailable):  # the lock expires by itself
            await self._call(lambda: self._unlock(keys=[self._lock_key(digest, generation)], args=[token]))

    async def wait(self, digest: str, generation: Generation, deadline: float) -> CachedSearch | None:
        """Poll until the entry appears (returned), or the lock is gone, the deadline passes or Redis fails (None)."""
        loop = asyncio.get_running_loop()
        delay = _POLL_FIRST_SECONDS

        async def entry_and_lock() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(f"{_PREFIX}:offers:{digest}")
                pipe.exists(self._lock_key(digest, generation))
                return await pipe.execute()

        while loop.time() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, _POLL_MAX_SECONDS)
            try:
                raw, locked = await self._call(entry_and_lock)
            except RedisUnavailable:
                return None
            if raw is not None:
                return self._decode(raw)
            if not locked:
                return None
        return None

    async def put(self, digest: str, query: SearchQuery, response: SearchResponse, generation: Generation) -> bool:
        """Store the answer unless its route and day were invalidated since ``generation`` was read (the answer may
        predate that change); True when stored.
        """
        degraded = any(source.status in ("error", "timeout") for source in response.meta.sources)
        ttl = min(self.ttl_seconds, DEGRADED_TTL_SECONDS) if degraded else self.ttl_seconds
        entry = _encode_entry(CachedSearch(offers=response.offers, sources=response.meta.sources))
        keys = [
            f"{_PREFIX}:offers:{digest}",
            # The index lives as long as its newest entry; invalidate_route_day() reads it.
            _route_day_key(query.origin, query.destination, query.date),
            _generation_key(query.origin, query.destination, query.date),
        ]
        try:
            stored = await self._call(lambda: self._put(keys=keys, args=[generation, entry, ttl, self.ttl_seconds]))
        except RedisUnavailable:
            return False
        return bool(stored)


class SearchDay(msgspec.Struct, frozen=True):
    """A route on a departure date, local at the origin: the searches that can list a flight."""

    origin: str
    destination: str
    day: date


async def invalidate_route_day(redis: aioredis.Redis, origin: str, destination: str, day: date) -> int:
    """Drop every cached search of ``origin`` → ``destination`` on ``day`` (local date at the origin), and keep the
    searches being computed right now from storing what they read (a new generation); returns the number of entries
    removed. Best effort: a Redis failure is logged and 0 returned (the re-check on cache hits still keeps seats
    right).
    """
    keys = [_route_day_key(origin, destination, day), _generation_key(origin, destination, day)]
    try:
        async with asyncio.timeout(REDIS_BUDGET_SECONDS * 2):
            return int(await redis.register_script(_FORGET)(keys=keys, args=[_GENERATION_TTL_SECONDS]))
    except (RedisError, OSError) as exc:
        logger.warning("cached searches of %s-%s on %s kept: %s: %s", origin, destination, day, type(exc).__name__, exc)
        return 0


async def search_days(conn: AsyncConnection[Any], flight_ids: Iterable[int]) -> set[SearchDay]:
    """The route and local departure day of each flight, as ``conn`` sees them (inside a transaction: as it left
    them so far).
    """
    async with conn.cursor(row_factory=struct_row(SearchDay)) as cursor:
        await cursor.execute(QUERIES["flight_search_days"], {"ids": sorted(set(flight_ids))})
        return set(await cursor.fetchall())


async def forget_searches(redis: aioredis.Redis, days: Iterable[SearchDay]) -> int:
    """Drop the cached searches of every route and day (:func:`invalidate_route_day`); entries removed."""
    dropped = 0
    for found in sorted(days, key=lambda found: (found.origin, found.destination, found.day)):
        dropped += await invalidate_route_day(redis, found.origin, found.destination, found.day)
    return dropped


async def invalidate_flight(redis: aioredis.Redis, pool: DbPool, flight_id: int) -> int:
    """Drop the cached searches that can list ``flight_id`` (its route on its local departure day).

    Call it after the transaction that changed the flight's seats commits (not inside it: a search between the
    invalidation and the commit would cache the old state again). A change that can move the flight to another day
    runs in :func:`changing_flights` instead, which drops the old day's searches as well.
    """
    async with pool.connection() as conn:
        days = await search_days(conn, [flight_id])
    return await forget_searches(redis, days)


class AffectedSearches:
    """The searches a transaction's changes to flights affect, noted inside it and dropped after it commits."""

    def __init__(self, tx: AsyncConnection[Any]) -> None:
        self.tx = tx
        self.days: set[SearchDay] = set()

    async def note(self, flight_id: int) -> None:
        """The searches that list ``flight_id`` as the transaction has it now: note a flight before a change that can
        move it (its old day) and after (its new day), or once after creating it.
        """
        self.days |= await search_days(self.tx, [flight_id])


@contextlib.asynccontextmanager
async def changing_flights(pool: DbPool, redis: aioredis.Redis) -> AsyncIterator[AffectedSearches]:
    """A transaction that changes what flights sell (a new flight, new times, a new status, fares): the searches it
    notes are dropped once it has committed, and searches computed meanwhile are kept from caching the old state.
    Every flight-changing path runs in one, so that no cached search outlives the flights it lists.
    """
    async with transaction(pool) as tx:
        affected = AffectedSearches(tx)
        yield affected
    try:
        await forget_searches(redis, affected.days)
    except Exception:  # the change is committed; a stale search expires by itself
        logger.warning("cached searches of %d route days kept", len(affected.days), exc_info=True)
