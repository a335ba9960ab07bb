"""The search service: providers side by side under their budgets, merging, the Redis cache, one computation per
key under a stampede (in a process and across processes), fresh seats on cache hits, and Redis outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.app import create_app
from core_api.flights.providers import SearchProvider
from core_api.flights.providers.local import LocalProvider
from core_api.flights.schemas import Cabin, Money, Offer, SearchQuery, Segment
from core_api.flights.search import (
    DEGRADED_TTL_SECONDS,
    REDIS_COOLDOWN_SECONDS,
    SearchService,
    invalidate_flight,
    merge_offers,
)
from core_api.settings import Settings
from tests.support.asgi import serve_in_loop
from tests.support.fault_proxy import FaultProxy

SEARCH = "/api/v1/flights/search"


class CountingProvider:
    """Another provider's offers, counting the searches it is asked for (and optionally slower)."""

    def __init__(self, inner: SearchProvider, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.timeout_seconds = inner.timeout_seconds
        self.delay = delay
        self.calls = 0

    async def search(self, query: SearchQuery) -> list[Offer]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return await self.inner.search(query)


class SleepyProvider:
    name = "sleepy"

    def __init__(self, *, timeout_seconds: float, sleeps: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.sleeps = sleeps

    async def search(self, query: SearchQuery) -> list[Offer]:
        await asyncio.sleep(self.sleeps)
        return []


class BrokenProvider:
    name = "broken"
    timeout_seconds = 3.0

    async def search(self, query: SearchQuery) -> list[Offer]:
        raise RuntimeError("supplier answered 502")


class FixedProvider:
    """A supplier answering every search with the same offers."""

    timeout_seconds = 3.0

    def __init__(self, name: str, offers: Sequence[Offer]) -> None:
        self.name = name
        self.offers = list(offers)

    async def search(self, query: SearchQuery) -> list[Offer]:
        return self.offers


@pytest.fixture
def day(seed_start: date) -> date:
    return seed_start + timedelta(days=1)


def route(day: date, **extra: Any) -> dict[str, str]:
    return {"origin": "JFK", "destination": "LHR", "date": day.isoformat(), **{k: str(v) for k, v in extra.items()}}


async def search(client: httpx.AsyncClient, params: dict[str, str]) -> dict[str, Any]:
    response = await client.get(SEARCH, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def local_provider(app: Litestar, *, timeout_seconds: float = 3.0) -> LocalProvider:
    return LocalProvider(app.state.pool, timeout_seconds=timeout_seconds)


def install(app: Litestar, *providers: SearchProvider) -> SearchService:
    """Serve the app's searches with these providers (the app's pool and Redis, the default cache lifetime)."""
    service = SearchService(
        pool=app.state.pool, redis=app.state.redis, providers=list(providers), cache_ttl_seconds=300
    )
    app.state.search = service
    return service


def sources(body: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {source["name"]: (source["status"], source["count"]) for source in body["meta"]["sources"]}


async def execute(pool: AsyncConnectionPool, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall() if cursor.description else []


# -- providers ------------------------------------------------------------------------------------------------------


async def test_by_default_local_answers_and_sabre_is_unavailable(client: httpx.AsyncClient, day: date) -> None:
    body = await search(client, route(day))
    assert [source["name"] for source in body["meta"]["sources"]] == ["local", "sabre"]
    assert sources(body) == {"local": ("ok", len(body["offers"])), "sabre": ("unavailable", 0)}
    assert body["offers"]


async def test_a_slow_provider_times_out_and_the_search_answers_within_its_budget(
    client: httpx.AsyncClient, app: Litestar, day: date
) -> None:
    install(app, local_provider(app), SleepyProvider(timeout_seconds=0.3, sleeps=10.0))

    started = time.perf_counter()
    body = await search(client, route(day))
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert sources(body)["sleepy"] == ("timeout", 0)
    assert sources(body)["local"][0] == "ok"
    assert body["offers"]
    slow = next(source for source in body["meta"]["sources"] if source["name"] == "sleepy")
    assert 300 <= slow["ms"] < 1000
    # A degraded answer is cached only briefly, so the supplier's results come back soon.
    keys = [key async for key in app.state.redis.scan_iter("flightdesk:search:v2:offers:*")]
    assert len(keys) == 1
    assert 0 < await app.state.redis.ttl(keys[0]) <= DEGRADED_TTL_SECONDS


async def test_a_failing_provider_is_reported_and_the_others_still_answer(
    client: httpx.AsyncClient, app: Litestar, day: date
) -> None:
    install(app, local_provider(app), BrokenProvider())
    body = await search(client, route(day))
    assert sources(body)["broken"] == ("error", 0)
    assert sources(body)["local"] == ("ok", len(body["offers"]))
    assert body["offers"]


async def test_one_fare_from_two_sources_is_listed_once_cheaper_first_local_on_a_tie(
    client: httpx.AsyncClient, app: Litestar, day: date
) -> None:
    local = await local_provider(app).search(SearchQuery(origin="JFK", destination="LHR", date=day))
    economy = [offer for offer in local if offer.cabin is Cabin.ECONOMY][:3]
    assert len(economy) == 3

    def resold(offer: Offer, amount: int) -> Offer:
        return msgspec.structs.replace(
            offer,
            offer_id=f"amadeus:{offer.offer_id}",
            source="amadeus",
            flight_id=None,
            price=Money(amount=amount, currency=offer.price.currency),
        )

    dearer, cheaper, same = economy
    other_flight = msgspec.structs.replace(
        resold(dearer, 100),
        offer_id="amadeus:elsewhere",
        segments=[msgspec.structs.replace(dearer.segments[0], flight_number="VS3")],
    )
    external = [
        resold(dearer, dearer.price.amount + 100),
        resold(cheaper, cheaper.price.amount - 100),
        resold(same, same.price.amount),
        other_flight,
    ]
    install(app, local_provider(app), FixedProvider("amadeus", external))

    body = await search(client, route(day))

    by_id = {offer["offer_id"]: offer for offer in body["offers"]}
    assert dearer.offer_id in by_id
    assert f"amadeus:{dearer.offer_id}" not in by_id
    assert cheaper.offer_id not in by_id
    assert by_id[f"amadeus:{cheaper.offer_id}"]["price"]["amount"] == cheaper.price.amount - 100
    assert same.offer_id in by_id
    assert f"amadeus:{same.offer_id}" not in by_id
    assert "amadeus:elsewhere" in by_id
    assert len(body["offers"]) == len(local) + 1
    assert sources(body)["amadeus"] == ("ok", 4)


def _offer(offer_id: str, amount: int, currency: str, departs: int, minutes: int) -> Offer:
    departure = datetime(2026, 6, 1, departs, 0, tzinfo=UTC)
    segment = Segment(
        flight_number=f"XX{1000 + sum(map(ord, offer_id))}",  # one flight per offer: nothing to de-duplicate
        airline="XX",
        origin="JFK",
        destination="LHR",
        departure_at=departure,
        arrival_at=departure + timedelta(minutes=minutes),
        duration_minutes=minutes,
        origin_tz="America/New_York",
        destination_tz="Europe/London",
    )
    return Offer(
        offer_id=offer_id,
        source="local",
        flight_id=1,
        segments=[segment],
        cabin=Cabin.ECONOMY,
        fare_class="Y",
        price=Money(amount=amount, currency=currency),
        seats_left=9,
    )


def test_offers_in_different_currencies_sort_by_their_rough_dollar_value() -> None:
    query = SearchQuery(origin="JFK", destination="LHR", date=date(2026, 6, 1))
    offers = [
        _offer("gbp", 40000, "GBP", 10, 400),  # about $506
        _offer("usd", 45000, "USD", 11, 400),  # $450
        _offer("jpy", 60000, "JPY", 12, 400),  # about $400
        _offer("aed", 170000, "AED", 13, 400),  # about $463
        _offer("xts", 1, "XTS", 14, 400),  # no rate known: after every priced one
    ]
    assert [offer.offer_id for offer in merge_offers(offers, query)] == ["jpy", "usd", "aed", "gbp", "xts"]


def test_each_sort_breaks_ties_with_the_other_keys() -> None:
    offers = [
        _offer("a", 500, "USD", 9, 300),
        _offer("b", 400, "USD", 9, 300),
        _offer("c", 400, "USD", 8, 300),
        _offer("d", 400, "USD", 8, 200),
        _offer("e", 900, "USD", 7, 200),
    ]

    def order(sort: str) -> list[str]:
        query = SearchQuery(origin="JFK", destination="LHR", date=date(2026, 6, 1), sort=sort)  # type: ignore[arg-type]
        return [offer.offer_id for offer in merge_offers(reversed(offers), query)]

    assert order("price") == ["d", "c", "b", "a", "e"]
    assert order("duration") == ["d", "e", "c", "b", "a"]
    assert order("departure") == ["e", "d", "c", "b", "a"]


# -- the cache -------------------------------------------------------------------------------------------------------


async def test_a_repeated_search_is_served_from_the_cache(client: httpx.AsyncClient, app: Litestar, day: date) -> None:
    counting = CountingProvider(local_provider(app))
    install(app, counting)

    first = await search(client, route(day))
    again = await search(client, route(day))
    # Same query, spelled differently: the key is built from the normalised query.
    lower = await search(client, {"origin": "jfk", "destination": "lhr", "date": day.isoformat(), "adults": "1"})
    party = await search(client, route(day, adults=2))

    assert (first["meta"]["cached"], again["meta"]["cached"], lower["meta"]["cached"]) == (False, True, True)
    assert again["offers"] == first["offers"]
    assert lower["offers"] == first["offers"]
    assert party["meta"]["cached"] is False
    assert [o["price"]["amount"] for o in party["offers"]] == [2 * o["price"]["amount"] for o in first["offers"]]
    assert counting.calls == 2
    assert [key async for key in app.state.redis.scan_iter("flightdesk:search:v2:lock:*")] == []


async def test_a_bucket_sold_out_after_caching_is_not_offered_from_the_cache(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, day: date
) -> None:
    first = await search(client, route(day))
    sold_out, nearly, cancelled_flight = first["offers"][0], first["offers"][1], first["offers"][-1]
    assert len({sold_out["flight_id"], nearly["flight_id"], cancelled_flight["flight_id"]}) >= 2
    update = (
        "UPDATE flight_prices SET seats_available = %(seats)s"
        " WHERE flight_id = %(flight)s AND cabin = %(cabin)s AND fare_class = %(fare_class)s"
    )
    for offer, seats in ((sold_out, 0), (nearly, 1)):
        await execute(
            pool,
            update,
            {"seats": seats, "flight": offer["flight_id"], "cabin": offer["cabin"], "fare_class": offer["fare_class"]},
        )

    again = await search(client, route(day))

    assert again["meta"]["cached"] is True
    by_id = {offer["offer_id"]: offer for offer in again["offers"]}
    assert sold_out["offer_id"] not in by_id
    assert by_id[nearly["offer_id"]]["seats_left"] == 1
    assert len(again["offers"]) == len(first["offers"]) - 1

    # A flight cancelled since is dropped from the cached answer as well.
    await execute(
        pool, "UPDATE flights SET status = 'CANCELLED' WHERE id = %(id)s", {"id": cancelled_flight["flight_id"]}
    )
    after_cancel = await search(client, route(day))
    assert after_cancel["meta"]["cached"] is True
    assert cancelled_flight["flight_id"] not in {offer["flight_id"] for offer in after_cancel["offers"]}


async def test_invalidating_a_flight_recomputes_the_searches_that_list_it(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, day: date
) -> None:
    offer = (await search(client, route(day, adults=2)))["offers"][0]
    bucket = {"flight": offer["flight_id"], "cabin": offer["cabin"], "fare_class": offer["fare_class"]}
    set_seats = (
        "UPDATE flight_prices SET seats_available = %(seats)s"
        " WHERE flight_id = %(flight)s AND cabin = %(cabin)s AND fare_class = %(fare_class)s"
    )
    # Sold out when the search is first computed and cached ...
    await execute(pool, set_seats, {**bucket, "seats": 0})
    assert offer["offer_id"] not in {o["offer_id"] for o in (await search(client, route(day)))["offers"]}
    await search(client, {**route(day), "destination": "LAX"})

    # ... then seats come back (a hold expired): the cached answer never listed the bucket, the re-check cannot add
    # it, so the cache has to be told.
    await execute(pool, set_seats, {**bucket, "seats": 5})
    cached = await search(client, route(day))
    assert cached["meta"]["cached"] is True
    assert offer["offer_id"] not in {o["offer_id"] for o in cached["offers"]}

    assert await invalidate_flight(app.state.redis, pool, offer["flight_id"]) == 2  # 1 and 2 adults

    fresh = await search(client, route(day))
    assert fresh["meta"]["cached"] is False
    assert {o["offer_id"]: o["seats_left"] for o in fresh["offers"]}[offer["offer_id"]] == 5
    # Other routes keep their cached answers.
    assert (await search(client, {**route(day), "destination": "LAX"}))["meta"]["cached"] is True
    assert await invalidate_flight(app.state.redis, pool, 10**12) == 0


# -- stampedes ---------------------------------------------------------------------------------------------------


async def test_a_hundred_concurrent_identical_searches_compute_once(
    client: httpx.AsyncClient, app: Litestar, day: date
) -> None:
    counting = CountingProvider(local_provider(app), delay=0.05)
    install(app, counting)

    responses = await asyncio.gather(*(client.get(SEARCH, params=route(day)) for _ in range(100)))

    assert [response.status_code for response in responses] == [200] * 100
    assert counting.calls == 1
    bodies = [response.json() for response in responses]
    assert all(body["offers"] == bodies[0]["offers"] for body in bodies)
    assert bodies[0]["offers"]


async def test_concurrent_identical_searches_in_two_processes_compute_once(
    app: Litestar, client: httpx.AsyncClient, redis_url: str, day: date
) -> None:
    # Two services with their own in-process state and Redis connections, as two API workers would have.
    workers: list[tuple[SearchService, CountingProvider]] = []
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        for redis in clients:
            counting = CountingProvider(local_provider(app), delay=0.2)
            service = SearchService(pool=app.state.pool, redis=redis, providers=[counting], cache_ttl_seconds=300)
            workers.append((service, counting))
        query = SearchQuery(origin="JFK", destination="LHR", date=day)

        answers = await asyncio.gather(*(service.search(query) for service, _ in workers for _ in range(50)))
    finally:
        for redis in clients:
            await redis.aclose()

    assert sum(counting.calls for _, counting in workers) == 1
    assert all(answer.offers == answers[0].offers for answer in answers)
    assert answers[0].offers
    # The worker that did not compute took the other's answer from Redis.
    assert sorted({answer.meta.cached for answer in answers}) == [False, True]


# -- Redis down -------------------------------------------------------------------------------------------------------


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_redis(redis_url) as proxy:
        yield proxy


@pytest.fixture
async def client_via_proxy(
    settings: Settings, redis_url: str, redis_proxy: FaultProxy
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, redis_url=redis_proxy.rewrite_redis_url(redis_url))
    async with serve_in_loop(app) as http:
        yield http


async def timed(client: httpx.AsyncClient, params: dict[str, str]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    body = await search(client, params)
    return body, time.perf_counter() - started


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_searches_are_answered_uncached_and_quickly_while_redis_is_down(
    client_via_proxy: httpx.AsyncClient, redis_proxy: FaultProxy, day: date, fault: str
) -> None:
    assert (await search(client_via_proxy, route(day)))["meta"]["cached"] is False
    assert (await search(client_via_proxy, route(day)))["meta"]["cached"] is True

    getattr(redis_proxy, fault)()
    answers = [await timed(client_via_proxy, route(day)) for _ in range(4)]

    assert [body["meta"]["cached"] for body, _ in answers] == [False] * 4
    assert all(body["offers"] for body, _ in answers)
    # Each stays well under a second. (A blackholed Redis still costs the rate limiter its 0.5 s socket timeout on
    # every request; the search adds at most its own 0.25 s budget, once per cool-down.)
    assert max(elapsed for _, elapsed in answers) < 1.0

    redis_proxy.heal()
    await asyncio.sleep(REDIS_COOLDOWN_SECONDS + 0.1)
    await search(client_via_proxy, route(day, adults=3))
    assert (await search(client_via_proxy, route(day, adults=3)))["meta"]["cached"] is True


async def test_with_redis_blackholed_the_search_waits_on_it_once_per_cooldown(
    app: Litestar, client: httpx.AsyncClient, redis_url: str, redis_proxy: FaultProxy, day: date
) -> None:
    redis = aioredis.Redis.from_url(
        redis_proxy.rewrite_redis_url(redis_url), socket_timeout=0.5, socket_connect_timeout=0.5
    )
    service = SearchService(pool=app.state.pool, redis=redis, providers=[local_provider(app)], cache_ttl_seconds=300)
    try:
        await service.search(SearchQuery(origin="JFK", destination="LHR", date=day))
        redis_proxy.blackhole()
        timings = []
        for adults in (1, 2, 3, 4):
            started = time.perf_counter()
            answer = await service.search(SearchQuery(origin="JFK", destination="LHR", date=day, adults=adults))
            timings.append(time.perf_counter() - started)
            assert answer.offers
            assert answer.meta.cached is False
    finally:
        await redis.aclose()

    first, *rest = timings
    assert first < 0.25 + 0.2  # one Redis budget, then the search itself
    assert max(rest) < 0.1  # Redis left alone
