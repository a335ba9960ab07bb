"""Rate limits per client (SPEC §10): tiers parsed from settings, enforced in Redis, failing open without it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis.asyncio as aioredis
from litestar import Litestar, Router, get, head
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from core_api.web.errors import exception_handlers
from core_api.web.ratelimit import RateLimiter, RateLimitMiddleware, Tier, parse_rate_limits
from tests.support.asgi import serve_in_loop
from tests.support.fault_proxy import FaultProxy

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

# ---------------------------------------------------------------------------------------------------------------
# parsing


def test_parses_the_default_tiers() -> None:
    assert parse_rate_limits("10/second;100/minute;1000/hour") == (Tier(10, 1), Tier(100, 60), Tier(1000, 3600))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("5/s", (Tier(5, 1),)),
        (" 1000/hours ; 10/seconds;100/minutes ", (Tier(10, 1), Tier(100, 60), Tier(1000, 3600))),
        ("3/m;2/h;1/d;", (Tier(3, 60), Tier(2, 3600), Tier(1, 86400))),
        ("7/Day", (Tier(7, 86400),)),
    ],
)
def test_parses_units_plurals_and_abbreviations(spec: str, expected: tuple[Tier, ...]) -> None:
    assert parse_rate_limits(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "at least one tier"),
        (" ; ", "at least one tier"),
        ("10", "'10': expected N/unit"),
        ("10/fortnight", "'10/fortnight': expected N/unit"),
        ("ten/second", "expected N/unit"),
        ("-1/second", "expected N/unit"),
        ("1.5/second", "expected N/unit"),
        ("0/minute", "at least 1"),
        ("10/second,100/minute", "expected N/unit"),
        ("10/second;20/s", "two tiers per second"),
    ],
)
def test_rejects_malformed_specs_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_rate_limits(spec)


def test_tiers_print_as_they_are_written() -> None:
    assert [str(tier) for tier in parse_rate_limits("10/s;100/m;1000/h;5000/d")] == [
        "10/second",
        "100/minute",
        "1000/hour",
        "5000/day",
    ]


# ---------------------------------------------------------------------------------------------------------------
# a small app wired as the real one: authentication first, then rate limits


class HeaderAuthentication(ASGIMiddleware):
    """Stands in for the bearer-token middleware: ``X-Test-User: <uuid>`` becomes ``scope["user"]``."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user = next((value.decode() for name, value in scope["headers"] if name == b"x-test-user"), None)
        scope["user"] = SimpleNamespace(id=uuid.UUID(user)) if user else None
        await next_app(scope, receive, send)


class Calls:
    def __init__(self) -> None:
        self.count = 0


def build_app(redis_url: str, tiers: str, calls: Calls) -> Litestar:
    @get("/ping", sync_to_thread=False)
    def ping() -> dict[str, bool]:
        calls.count += 1
        return {"pong": True}

    @head("/ping", sync_to_thread=False)
    def ping_head() -> None:
        calls.count += 1

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/services", sync_to_thread=False)
    def services() -> dict[str, str]:
        return {"status": "ok"}

    @get("/metrics", sync_to_thread=False)
    def metrics() -> str:
        return "up 1"

    @get(["/api/docs", "/api/docs-assets/app.js", "/api/openapi.json"], sync_to_thread=False)
    def docs() -> str:
        return "docs"

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False
        )
        try:
            yield
        finally:
            await app.state.redis.aclose()

    # App-wide here, so that the exempt paths outside /api/v1 go through the middleware too.
    return Litestar(
        route_handlers=[Router(path="/api/v1", route_handlers=[ping, ping_head, health, services]), metrics, docs],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        middleware=[HeaderAuthentication(), RateLimitMiddleware(parse_rate_limits(tiers))],
        logging_config=None,
    )


Serve = Callable[..., Any]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def serve(redis_url: str, calls: Calls) -> Serve:
    """``async with serve("3/second") as client``: the small app over the test Redis, driven in the test's loop."""

    def make(tiers: str, *, url: str | None = None, client_ip: str = "127.0.0.1") -> Any:
        return serve_in_loop(build_app(url or redis_url, tiers, calls), client_ip=client_ip)

    return make


def other_client(client: httpx.AsyncClient, ip: str) -> httpx.AsyncClient:
    """A second client on the same running app, from another address."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=transport.app, raise_app_exceptions=False, client=(ip, 50000)),
        base_url="http://testserver",
    )


def user(user_id: uuid.UUID) -> dict[str, str]:
    return {"X-Test-User": str(user_id)}


# ---------------------------------------------------------------------------------------------------------------
# enforcement


async def test_the_eleventh_request_in_a_second_is_refused_with_a_problem(serve: Serve, calls: Calls) -> None:
    async with serve("10/second;100/minute;1000/hour") as client:
        allowed = [await client.get("/api/v1/ping") for _ in range(10)]
        refused = await client.get("/api/v1/ping")

    assert [response.status_code for response in allowed] == [200] * 10
    assert [response.headers["ratelimit-limit"] for response in allowed] == ["10"] * 10
    assert [int(response.headers["ratelimit-remaining"]) for response in allowed] == list(range(9, -1, -1))
    assert all(1 <= int(response.headers["ratelimit-reset"]) <= 2 for response in allowed)
    assert "retry-after" not in allowed[0].headers

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["code"] == "RATE_LIMITED"
    assert body["status"] == 429
    assert body["title"] == "Too many requests"
    assert "10/second" in body["detail"]
    # Rounded up, and counting the sub-second slice the window is measured in: 1 s, at most 2.
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert refused.headers["ratelimit-limit"] == "10"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == refused.headers["retry-after"]
    assert calls.count == 10  # the handler never ran for the refused request


async def test_head_requests_are_counted_and_refused_without_a_body(serve: Serve) -> None:
    async with serve("1/second") as client:
        assert (await client.head("/api/v1/ping")).status_code == 200
        refused = await client.head("/api/v1/ping")
    assert refused.status_code == 429
    assert refused.content == b""
    assert refused.headers["retry-after"]


async def test_users_and_addresses_have_budgets_of_their_own(serve: Serve) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    async with serve("2/second", client_ip="10.0.0.1") as client, other_client(client, "10.0.0.2") as second_ip:
        for _ in range(2):
            assert (await client.get("/api/v1/ping")).status_code == 200
            assert (await client.get("/api/v1/ping", headers=user(ann))).status_code == 200
            assert (await client.get("/api/v1/ping", headers=user(bob))).status_code == 200
            assert (await second_ip.get("/api/v1/ping")).status_code == 200
        assert (await client.get("/api/v1/ping")).status_code == 429
        assert (await client.get("/api/v1/ping", headers=user(ann))).status_code == 429
        assert (await client.get("/api/v1/ping", headers=user(bob))).status_code == 429
        assert (await second_ip.get("/api/v1/ping")).status_code == 429
        # A user is limited as that user wherever they come from, not by the address they share.
        assert (await second_ip.get("/api/v1/ping", headers=user(uuid.uuid4()))).status_code == 200


async def test_the_budget_comes_back_once_the_window_has_passed(serve: Serve) -> None:
    async with serve("3/second") as client:
        assert [(await client.get("/api/v1/ping")).status_code for _ in range(4)] == [200, 200, 200, 429]
        await asyncio.sleep(1.1)
        assert [(await client.get("/api/v1/ping")).status_code for _ in range(4)] == [200, 200, 200, 429]


async def test_the_window_slides_rather_than_resetting_at_an_edge(redis_url: str) -> None:
    limiter = RateLimiter(parse_rate_limits("4/second"))
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert all([(await limiter.hit(redis, "ip:a")).allowed for _ in range(2)])
        await asyncio.sleep(0.6)
        assert all([(await limiter.hit(redis, "ip:a")).allowed for _ in range(2)])
        assert not (await limiter.hit(redis, "ip:a")).allowed
        # 0.5 s later the first two have left the window (a fixed window would have allowed 4 more already at 1 s).
        await asyncio.sleep(0.5)
        decisions = [await limiter.hit(redis, "ip:a") for _ in range(3)]
        assert [decision.allowed for decision in decisions] == [True, True, False]
    finally:
        await redis.aclose()


async def test_a_refused_request_uses_no_quota_of_the_other_tiers(serve: Serve, calls: Calls) -> None:
    async with serve("3/second;5/minute") as client:
        assert [(await client.get("/api/v1/ping")).status_code for _ in range(3)] == [200] * 3
        refused = [await client.get("/api/v1/ping") for _ in range(10)]
        assert {response.status_code for response in refused} == {429}
        assert {response.headers["ratelimit-limit"] for response in refused} == {"3"}
        await asyncio.sleep(1.1)
        # Had the ten refusals counted against the minute, these two would be refused as well.
        again = [await client.get("/api/v1/ping") for _ in range(2)]
        assert [response.status_code for response in again] == [200, 200]
        assert again[-1].headers["ratelimit-limit"] == "5"
        assert again[-1].headers["ratelimit-remaining"] == "0"
        by_minute = await client.get("/api/v1/ping")
    assert by_minute.status_code == 429
    assert by_minute.headers["ratelimit-limit"] == "5"
    assert 55 <= int(by_minute.headers["retry-after"]) <= 62
    assert calls.count == 5


async def test_concurrent_requests_get_exactly_the_limit(serve: Serve, calls: Calls) -> None:
    async with serve("20/minute") as client:
        responses = await asyncio.gather(*(client.get("/api/v1/ping") for _ in range(50)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 20
    assert statuses.count(429) == 30
    assert calls.count == 20
    assert sorted(int(r.headers["ratelimit-remaining"]) for r in responses if r.status_code == 200) == list(range(20))


async def test_exempt_paths_are_never_limited(serve: Serve) -> None:
    exempt = [
        "/metrics",
        "/api/v1/health",
        "/api/v1/health/services",
        "/api/docs",
        "/api/docs-assets/app.js",
        "/api/openapi.json",
    ]
    async with serve("1/minute") as client:
        for path in exempt:
            responses = [await client.get(path) for _ in range(5)]
            assert {response.status_code for response in responses} == {200}, path
            assert all("ratelimit-limit" not in response.headers for response in responses), path
        preflights = [await client.options("/api/v1/ping") for _ in range(5)]
        assert all(response.status_code < 400 for response in preflights)
        # The budget is untouched by all of the above.
        assert (await client.get("/api/v1/ping")).status_code == 200
        assert (await client.get("/api/v1/ping")).status_code == 429


async def test_keys_name_the_client_and_expire_on_their_own(serve: Serve, redis_url: str) -> None:
    ann = uuid.uuid4()
    async with serve("10/second;100/minute;1000/hour", client_ip="10.1.2.3") as client:
        await client.get("/api/v1/ping", headers=user(ann))
        await client.get("/api/v1/ping")
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = sorted(await redis.keys("flightdesk:rl:*"))
        assert keys == sorted(
            f"flightdesk:rl:{{{client}}}:{period}"
            for client in (f"user:{ann}", "ip:10.1.2.3")
            for period in ("1s", "60s", "3600s")
        )
        ttls = {key: await redis.pttl(key) for key in keys}
        assert all(0 < ttls[key] <= 1_020 for key in keys if key.endswith(":1s"))
        assert all(0 < ttls[key] <= 3_672_000 for key in keys)
    finally:
        await redis.aclose()


# ---------------------------------------------------------------------------------------------------------------
# Redis down: fail open


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.get(path)
    return response, time.perf_counter() - started


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_requests_pass_quickly_when_redis_is_down(
    serve: Serve, redis_url: str, calls: Calls, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core_api.web.ratelimit")
    async with (
        FaultProxy.for_redis(redis_url) as proxy,
        serve("1/minute", url=proxy.rewrite_redis_url(redis_url)) as client,
    ):
        assert (await client.get("/api/v1/ping")).status_code == 200
        assert (await client.get("/api/v1/ping")).status_code == 429
        getattr(proxy, fault)()
        timings = [await timed_get(client, "/api/v1/ping") for _ in range(4)]
        assert [response.status_code for response, _ in timings] == [200] * 4
        assert all("ratelimit-limit" not in response.headers for response, _ in timings)
        assert max(elapsed for _, elapsed in timings) < 2.0
        proxy.heal()
        # Back to enforcing once Redis answers again (the minute's budget was spent before the outage).
        assert (await client.get("/api/v1/ping")).status_code == 429
    assert calls.count == 5
    warnings = [record for record in caplog.records if record.name == "core_api.web.ratelimit"]
    assert len(warnings) == 1
    assert "Redis unavailable" in warnings[0].getMessage()
