"""Flight search (SPEC §6): the query's rules, the providers run side by side, merging, and the Redis cache.

A search arrives as a validated :class:`SearchQuery` (``search_routes.parse_search_query``); its airports are
checked against the database, then it is answered from the cache or computed: every enabled provider (``local``
always, ``amadeus`` when configured, the ``sabre`` placeholder) runs concurrently under its own timeout and is
reported in ``meta.sources``; a provider that fails, times out or is unavailable only marks its entry. The offers
are filtered (max price, airline, cabin), de-duplicated (the same flights, cabin and fare class from two sources:
the cheaper is kept, ``local`` on a tie) and sorted.

Cache. The key is a hash of the normalised :class:`SearchQuery` (msgpack) and the providers' names; the value is
the response as msgspec JSON (times in UTC, each segment's airport zones beside them, as on the wire). It lives
``cache_ttl_seconds``, or at most :data:`DEGRADED_TTL_SECONDS` when a provider failed or timed out, so a passing
outage is not remembered for five minutes.

One computation per key, even under a stampede. Within a process, concurrent misses of one key share one task
(a map of in-flight futures). Across processes (granian workers, several hosts) the task takes a short Redis lock
(``SET NX PX``, the providers' budget plus a margin) and looks at the cache once more before computing; a process
that finds the lock taken polls for the result (5 ms, doubling to 50 ms) instead of computing, and takes over
only if the lock goes away with no result or the budget passes. Polling was chosen over pub/sub: each waiting
process polls with one round trip every few tens of milliseconds for at most a few seconds, where a subscription
would hold a dedicated connection per waiting request and still need a timeout and a final check.

Availability. Cached offers are not trusted for seats: on every cache hit the seats of the local offers are re-read
with one query by their flights' ids (primary key, then the buckets' unique index, a few rows per flight), which
also drops flights cancelled or departed since; ``seats_left`` is updated, or the offer dropped when the party no
longer fits. This catches every writer — bookings, hold expiry, agents' changes, even SQL by hand — for about
0.2 ms of database time per hit, where invalidation messages alone would leave a sold-out flight on offer for the
whole TTL whenever one writer forgot to send one.

Invalidation, for what the re-check cannot see: a new flight, new times, a bucket with seats again that the cached
answer had left out. Entries are indexed by route and local departure day (the day searched, local at the origin).
Every path that changes what a flight sells runs in :func:`changing_flights`: it notes the search days of the
flights it touches inside its transaction — before and after a re-time, which can move a flight to another day —
and drops them once the transaction has committed; cancellations and hold expiries call :func:`invalidate_flight`
after theirs. Dropping alone would race a search computed meanwhile: it reads the old rows before the commit and
stores them after the drop. So each route and day also has a generation in Redis, read with the entry (one
``MGET``, no extra round trip) when a search misses; invalidating increments it, and a computation stores its answer
only if the generation it read is still current (one Lua script), shares its in-flight task and its lock only with
searches that read the same generation. External offers stay as cached.

The Redis side — entries, locks, generations, invalidation — is ``_search_cache``; this module re-exports what
other packages use of it.

Redis down. Every Redis call of the search has a budget of :data:`REDIS_BUDGET_SECONDS`; after a failure Redis is
left alone for :data:`REDIS_COOLDOWN_SECONDS` (one request then probes it), so searches are served uncached
without waiting on Redis each time; the in-process single flight still merges concurrent identical searches.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import psycopg

from core_api.flights._search_cache import (
    DEGRADED_TTL_SECONDS,
    REDIS_BUDGET_SECONDS,
    REDIS_COOLDOWN_SECONDS,
    AffectedSearches,
    CachedSearch,
    Generation,
    SearchCache,
    SearchDay,
    changing_flights,
    forget_searches,
    invalidate_flight,
    invalidate_route_day,
    search_days,
)
from core_api.flights.providers import ProviderUnavailable, SearchProvider
from core_api.flights.providers.amadeus import AmadeusProvider
from core_api.flights.providers.local import SOURCE as LOCAL
from core_api.flights.providers.local import LocalProvider, refresh_local_offers
from core_api.flights.providers.sabre import SabreProvider
from core_api.flights.schemas import Money, Offer, SearchMeta, SearchQuery, SearchResponse, SourceStatus
from core_api.storage.db import load_queries
from core_api.web.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from core_api.settings import Settings
    from core_api.storage.db import DbPool

__all__ = [
    "DEGRADED_TTL_SECONDS",
    "MAX_DAYS_AHEAD",
    "MAX_SEATED",
    "REDIS_BUDGET_SECONDS",
    "REDIS_COOLDOWN_SECONDS",
    "AffectedSearches",
    "SearchDay",
    "SearchService",
    "changing_flights",
    "forget_searches",
    "invalidate_flight",
    "invalidate_route_day",
    "merge_offers",
    "search_days",
]

logger = logging.getLogger(__name__)

QUERIES = load_queries("search")

MAX_DAYS_AHEAD = 361
"""Furthest departure date searched, in days after today (airlines open sales about a year ahead)."""
MAX_SEATED = 9
"""Adults and children together: the seats one booking may take."""
_LOCK_MARGIN_SECONDS = 2.0
_encode_key = msgspec.msgpack.Encoder().encode

ProviderState = Literal["ok", "error", "timeout", "unavailable"]


# -- merging ---------------------------------------------------------------------------------------------------------

# Rough units of a currency per US dollar, only to ORDER offers priced in different currencies (JFK-LHR mixes GBP and
# USD fares); every offer keeps its own price. Currencies not listed sort after all listed ones, by amount.
_UNITS_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "SGD": 1.35,
                  "AED": 3.67, "JPY": 150.0, "KRW": 1350.0}  # fmt: skip
_NO_MINOR_UNITS = frozenset({"JPY", "KRW"})


def _price_rank(price: Money) -> tuple[int, float]:
    per_usd = _UNITS_PER_USD.get(price.currency)
    if per_usd is None:
        return (1, float(price.amount))
    major = price.amount if price.currency in _NO_MINOR_UNITS else price.amount / 100
    return (0, major / per_usd)


def _departure(offer: Offer) -> datetime:
    return offer.segments[0].departure_at


def _journey(offer: Offer) -> timedelta:
    return offer.segments[-1].arrival_at - offer.segments[0].departure_at


_SORT_KEYS: dict[str, Callable[[Offer], Any]] = {
    "price": lambda offer: (_price_rank(offer.price), _journey(offer), _departure(offer), offer.offer_id),
    "duration": lambda offer: (_journey(offer), _price_rank(offer.price), _departure(offer), offer.offer_id),
    "departure": lambda offer: (_departure(offer), _price_rank(offer.price), _journey(offer), offer.offer_id),
}


def _wanted(offer: Offer, query: SearchQuery) -> bool:
    if not offer.segments:
        return False
    if query.max_price is not None and offer.price.amount > query.max_price:
        return False
    if query.cabin is not None and offer.cabin != query.cabin:
        return False
    return query.airline is None or all(segment.airline == query.airline for segment in offer.segments)


def _preference(offer: Offer) -> tuple[tuple[int, float], bool]:
    """Of two offers for the same seats: the cheaper, and ours (bookable here) when they cost the same."""
    return _price_rank(offer.price), offer.source != LOCAL


def merge_offers(offers: Iterable[Offer], query: SearchQuery) -> list[Offer]:
    """Filter by the query (max price in the offer's own currency, airline of every segment, cabin), keep one offer
    per flights + cabin + fare class (the cheaper; ``local`` on a tie), and sort by the query's key with the other
    two keys and the offer id as tie-breaks, so equal queries always list equal offers in the same order.
    """
    best: dict[tuple[Any, ...], Offer] = {}
    for offer in offers:
        if not _wanted(offer, query):
            continue
        same = (tuple((s.flight_number, s.departure_at) for s in offer.segments), offer.cabin, offer.fare_class)
        kept = best.get(same)
        if kept is None or _preference(offer) < _preference(kept):
            best[same] = offer
    return sorted(best.values(), key=_SORT_KEYS[query.sort])


# -- the service -----------------------------------------------------------------------------------------------------


class _AirportCodes:
    """The known airport codes, read at first use and again (at most once a minute) when a code is not among them."""

    def __init__(self, refresh_seconds: float = 60.0) -> None:
        self._codes: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._refresh_seconds = refresh_seconds
        self._lock = asyncio.Lock()

    def _stale(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at >= self._refresh_seconds

    async def unknown(self, pool: DbPool, codes: Iterable[str]) -> list[str]:
        missing = [code for code in codes if code not in self._codes]
        if missing and self._stale():
            async with self._lock:
                if self._stale():
                    async with pool.connection() as conn:
                        rows = await (await conn.execute(QUERIES["airport_codes"])).fetchall()
                    self._codes = frozenset(row["code"] for row in rows)
                    self._loaded_at = time.monotonic()
            missing = [code for code in missing if code not in self._codes]
        return missing


class SearchService:
    """Answers searches: validation against known airports, the cache, single flight, the providers, merging."""

    def __init__(
        self,
        *,
        pool: DbPool,
        redis: aioredis.Redis,
        providers: Sequence[SearchProvider],
        cache_ttl_seconds: int,
        redis_budget_seconds: float = REDIS_BUDGET_SECONDS,
    ) -> None:
        self.pool = pool
        self.providers = list(providers)
        budget = max((provider.timeout_seconds for provider in self.providers), default=0.0)
        self.cache = SearchCache(
            redis,
            ttl_seconds=cache_ttl_seconds,
            lock_seconds=budget + _LOCK_MARGIN_SECONDS,
            budget_seconds=redis_budget_seconds,
        )
        self._airports = _AirportCodes()
        self._in_flight: dict[tuple[str, Generation | None], asyncio.Future[SearchResponse]] = {}
        self._key_prefix = _encode_key(sorted(provider.name for provider in self.providers))

    @classmethod
    def from_settings(cls, settings: Settings, pool: DbPool, redis: aioredis.Redis) -> SearchService:
        """``local``, then ``amadeus`` when its key is configured, then the ``sabre`` placeholder."""
        timeout = settings.search.provider_timeout_seconds
        providers: list[SearchProvider] = [LocalProvider(pool, timeout_seconds=timeout)]
        amadeus = AmadeusProvider.from_settings(settings)
        if amadeus is not None:
            providers.append(amadeus)
        providers.append(SabreProvider(timeout_seconds=timeout))
        return cls(
            pool=pool,
            redis=redis,
            providers=providers,
            cache_ttl_seconds=settings.search.cache_ttl_seconds,
            redis_budget_seconds=min(REDIS_BUDGET_SECONDS, settings.redis.timeout_seconds),
        )

    def close(self) -> None:
        """Release the providers' resources (Amadeus' thread pool)."""
        for provider in self.providers:
            close = getattr(provider, "close", None)
            if callable(close):
                close()

    async def search(self, query: SearchQuery) -> SearchResponse:
        """The offers for ``query``, from the cache (seats re-checked) or computed once however many ask at once.

        Raises :class:`ValidationFailed` naming ``origin`` / ``destination`` when no airport has that code.
        """
        unknown = await self._airports.unknown(self.pool, [query.origin, query.destination])
        if unknown:
            fields = [field for field in ("origin", "destination") if getattr(query, field) in unknown]
            errors = [FieldError(field, "unknown airport") for field in fields]
            raise ValidationFailed.of(errors)
        digest = hashlib.sha256(self._key_prefix + _encode_key(query)).hexdigest()[:40]
        entry, generation = await self.cache.lookup(digest, query)
        if entry is not None:
            return await self._from_cache(entry, query)
        # Searches asked after an invalidation do not join a computation begun before it (it may list the old state).
        flight = (digest, generation)
        shared = self._in_flight.get(flight)
        if shared is None:
            shared = asyncio.ensure_future(self._compute_once(digest, generation, query))
            self._in_flight[flight] = shared
            shared.add_done_callback(functools.partial(self._landed, flight))
        # Shielded: a caller that goes away does not cancel the computation the others wait for.
        return await asyncio.shield(shared)

    def _landed(self, flight: tuple[str, Generation | None], future: asyncio.Future[SearchResponse]) -> None:
        if self._in_flight.get(flight) is future:
            del self._in_flight[flight]
        if not future.cancelled():
            future.exception()  # retrieved here, so that a failure nobody awaited any more is not reported as lost

    async def _compute_once(self, digest: str, generation: Generation | None, query: SearchQuery) -> SearchResponse:
        if generation is None:  # Redis unavailable: nothing to share the work with, nowhere to keep the answer
            return await self._compute(query)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cache.lock_seconds
        token = secrets.token_hex(16)
        locked = await self.cache.lock(digest, generation, token)
        while locked is False:
            # Another process is computing this search: take its answer rather than repeat the work.
            entry = await self.cache.wait(digest, generation, deadline)
            if entry is not None:
                return await self._from_cache(entry, query)
            # Its lock went away without an answer, or it takes too long, or Redis failed: compute here.
            locked = await self.cache.lock(digest, generation, token) if loop.time() < deadline else None
        try:
            if locked:
                # The answer may have been stored between our miss and our lock.
                entry = await self.cache.get(digest)
                if entry is not None:
                    return await self._from_cache(entry, query)
            response = await self._compute(query)
            await self.cache.put(digest, query, response, generation)
            return response
        finally:
            if locked:
                await self.cache.unlock(digest, generation, token)

    async def _compute(self, query: SearchQuery) -> SearchResponse:
        outcomes = await asyncio.gather(*(self._ask(provider, query) for provider in self.providers))
        offers = merge_offers((offer for _, found in outcomes for offer in found), query)
        return SearchResponse(offers=offers, meta=SearchMeta(sources=[status for status, _ in outcomes], cached=False))

    @staticmethod
    async def _ask(provider: SearchProvider, query: SearchQuery) -> tuple[SourceStatus, list[Offer]]:
        started = time.perf_counter()
        offers: list[Offer] = []
        state: ProviderState = "ok"
        try:
            async with asyncio.timeout(provider.timeout_seconds):
                offers = await provider.search(query)
        except ProviderUnavailable:
            state = "unavailable"
        except TimeoutError:
            state = "timeout"
            logger.warning("search provider %s timed out after %.1f s", provider.name, provider.timeout_seconds)
        except Exception:  # whatever a provider raises is its own failure: reported, never the search's
            state = "error"
            logger.warning("search provider %s failed", provider.name, exc_info=True)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        return SourceStatus(name=provider.name, status=state, count=len(offers), ms=elapsed_ms), offers

    async def _from_cache(self, entry: CachedSearch, query: SearchQuery) -> SearchResponse:
        sources = entry.sources
        try:
            offers = await refresh_local_offers(self.pool, entry.offers, query.seats_needed)
        except psycopg.Error as exc:  # the pool's timeout is an OperationalError too
            # Local offers that cannot be checked cannot be booked either: answered as if the provider had failed.
            logger.warning("cached local offers dropped, availability unreadable: %s", type(exc).__name__)
            offers = [offer for offer in entry.offers if offer.source != LOCAL]
            sources = [
                msgspec.structs.replace(source, status="error", count=0) if source.name == LOCAL else source
                for source in sources
            ]
        return SearchResponse(offers=offers, meta=SearchMeta(sources=sources, cached=True))
