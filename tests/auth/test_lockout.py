"""The login lockout's counters (SPEC §10), in Redis and in PostgreSQL (where they are kept while Redis is down).

Every behaviour is pinned for both stores: a ``redis`` throttle talks to the real Redis; a ``postgres`` throttle's
Redis refuses connections, so it counts in PostgreSQL exactly as the app does during an outage.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from core_api.auth.lockout import Attempt, LoginThrottle, counter_keys
from core_api.web.errors import RateLimited
from core_api.worker import forget_expired_auth_state
from tests.support.fault_proxy import FaultProxy

WINDOW = 900
ANN = "ann@example.com"
HOME, ELSEWHERE = "198.51.100.7", "203.0.113.66"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    """A Redis client nobody answers (connections refused), as during an outage."""
    dead = aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        yield dead
    finally:
        await dead.aclose()


@pytest.fixture(params=["redis", "postgres"])
def store(request: pytest.FixtureRequest, redis: aioredis.Redis, dead_redis: aioredis.Redis) -> aioredis.Redis:
    """The Redis the throttle is given: the real one, or a dead one (so PostgreSQL counts)."""
    return redis if request.param == "redis" else dead_redis


def make_throttle(
    redis: aioredis.Redis, pool: AsyncConnectionPool, *, per_client: int = 5, per_email: int = 20, window: int = WINDOW
) -> LoginThrottle:
    return LoginThrottle(
        redis, pool, max_failures_per_client=per_client, max_failures_per_email=per_email, window_seconds=window
    )


@pytest.fixture
def throttle(store: aioredis.Redis, pool: AsyncConnectionPool) -> LoginThrottle:
    return make_throttle(store, pool)


async def retry_after(throttle: LoginThrottle, email: str = ANN, ip: str = HOME, kind: str = "login") -> int | None:
    """Seconds an attempt is told to wait, or ``None`` when it would be let through (and is then taken back)."""
    try:
        attempt = await throttle.reserve(kind, email, ip)
    except RateLimited as locked:
        return int(locked.headers["Retry-After"])
    await throttle.release(attempt)
    return None


async def fail(
    throttle: LoginThrottle, times: int, email: str = ANN, ip: str = HOME, kind: str = "login"
) -> list[list[str]]:
    """Fail ``times`` attempts one after the other; what each failure locked."""
    return [await throttle.failed(await throttle.reserve(kind, email, ip)) for _ in range(times)]


async def test_five_failures_lock_the_email_from_that_address_for_the_rest_of_the_window(
    throttle: LoginThrottle,
) -> None:
    for _ in range(4):
        await fail(throttle, 1)
        assert await retry_after(throttle) is None
    assert await fail(throttle, 1) == [["email_and_client"]]
    waited = await retry_after(throttle)
    assert waited is not None
    assert WINDOW - 5 <= waited <= WINDOW
    # The same email from elsewhere, and other emails from here, are not locked.
    assert await retry_after(throttle, ip=ELSEWHERE) is None
    assert await retry_after(throttle, email="bob@example.com") is None


async def test_only_the_failure_filling_a_counter_reports_the_lockout(throttle: LoginThrottle) -> None:
    assert await fail(throttle, 5) == [[], [], [], [], ["email_and_client"]]
    with pytest.raises(RateLimited):
        await throttle.reserve("login", ANN, HOME)


async def test_twenty_failures_from_anywhere_lock_the_email_everywhere(throttle: LoginThrottle) -> None:
    reported = [scopes for host in range(1, 5) for scopes in await fail(throttle, 5, ip=f"203.0.113.{host}")]
    assert reported.count(["email_and_client"]) == 3
    assert reported[-1] == ["email_and_client", "email"]
    assert await retry_after(throttle, ip="192.0.2.1") is not None
    assert await retry_after(throttle, email="bob@example.com", ip="192.0.2.1") is None


async def test_parallel_attempts_are_reserved_up_to_the_limit_and_no_further(throttle: LoginThrottle) -> None:
    results = await asyncio.gather(*(throttle.reserve("login", ANN, HOME) for _ in range(30)), return_exceptions=True)
    attempts = [result for result in results if isinstance(result, Attempt)]
    assert len(attempts) == 5
    assert all(isinstance(result, RateLimited) for result in results if not isinstance(result, Attempt))
    locked = await asyncio.gather(*(throttle.failed(attempt) for attempt in attempts))
    assert sorted(locked) == [[], [], [], [], ["email_and_client"]]


async def test_attempts_in_flight_count_until_they_are_settled(throttle: LoginThrottle) -> None:
    # Five attempts being checked fill the counter; the next is told to come back in a second, not at the window's
    # end, since nothing has failed yet. Never settled (a crash), they keep counting until their window ends.
    attempts = [await throttle.reserve("login", ANN, HOME) for _ in range(5)]
    with pytest.raises(RateLimited) as busy:
        await throttle.reserve("login", ANN, HOME)
    assert busy.value.headers["Retry-After"] == "1"
    assert "being checked" in busy.value.detail
    await throttle.succeeded(attempts[0])
    await throttle.release(await throttle.reserve("login", ANN, HOME))
    for attempt in attempts[1:]:
        await throttle.failed(attempt)
    assert await throttle.failed(await throttle.reserve("login", ANN, HOME)) == ["email_and_client"]
    with pytest.raises(RateLimited) as locked:
        await throttle.reserve("login", ANN, HOME)
    assert int(locked.value.headers["Retry-After"]) > WINDOW - 10
    assert "failed attempts" in locked.value.detail


async def test_a_success_forgets_the_failures_of_its_address_but_not_of_the_email(throttle: LoginThrottle) -> None:
    await fail(throttle, 4)
    for host in range(1, 4):
        await fail(throttle, 4, ip=f"203.0.113.{host}")  # 12 from elsewhere: 16 for the email in all
    await throttle.succeeded(await throttle.reserve("login", ANN, HOME))
    # Home's own counter starts afresh (four more failures do not lock it)...
    assert await fail(throttle, 3) == [[], [], []]
    # ...but the email's kept its sixteen, so the fourth of these is its twentieth.
    assert await fail(throttle, 1) == [["email"]]
    assert await retry_after(throttle, ip="192.0.2.1") is not None


async def test_failures_while_locked_do_not_prolong_the_lockout(throttle: LoginThrottle) -> None:
    await fail(throttle, 5)
    first = await retry_after(throttle)
    for _ in range(5):
        assert await retry_after(throttle) is not None
    assert first is not None
    assert await retry_after(throttle) <= first  # type: ignore[operator]


async def test_emails_kinds_and_case_are_counted_as_people_expect(throttle: LoginThrottle) -> None:
    for email in ("Ann@Example.com", " ANN@EXAMPLE.COM", "aNn@example.COM ", "ann@EXAMPLE.com", ANN):
        await fail(throttle, 1, email=email)
    assert await retry_after(throttle, email="ANN@example.com") is not None
    assert await retry_after(throttle, kind="password_reset") is None
    await fail(throttle, 5, kind="password_reset", email="bob@example.com")
    assert await retry_after(throttle, kind="password_reset", email="bob@example.com") is not None
    assert await retry_after(throttle, email="bob@example.com") is None


async def test_the_lockout_ends_with_the_window_that_began_with_the_first_attempt(
    store: aioredis.Redis, pool: AsyncConnectionPool
) -> None:
    throttle = make_throttle(store, pool, per_client=3, window=1)
    await fail(throttle, 1)
    await asyncio.sleep(0.6)
    await fail(throttle, 1)
    await asyncio.sleep(0.6)
    # The first window closed with two failures; this attempt opens a new window rather than locking.
    assert await fail(throttle, 1) == [[]]
    assert await fail(throttle, 2) == [[], ["email_and_client"]]
    assert await retry_after(throttle) == 1
    await asyncio.sleep(1.1)
    assert await retry_after(throttle) is None


async def test_settling_after_the_window_ended_touches_nothing_of_the_next_window(
    store: aioredis.Redis, pool: AsyncConnectionPool
) -> None:
    throttle = make_throttle(store, pool, per_client=2, window=1)
    late = await throttle.reserve("login", ANN, HOME)
    await asyncio.sleep(1.1)
    await fail(throttle, 1)  # opens the next window
    await throttle.succeeded(late)  # must not forget the new window's failure
    assert await fail(throttle, 1) == [["email_and_client"]]


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown lockout kind 'signup'"):
        counter_keys("signup", ANN, HOME)


async def test_redis_holds_digests_only_and_its_counters_expire(
    redis: aioredis.Redis, pool: AsyncConnectionPool
) -> None:
    throttle = make_throttle(redis, pool)
    await fail(throttle, 2, email="Ann@Example.com")
    await fail(throttle, 1, kind="password_reset")
    keys = sorted(key.decode() for key in await redis.keys("*"))
    assert keys == sorted([*counter_keys("login", ANN, HOME), *counter_keys("password_reset", ANN, HOME)])
    assert all("example" not in key.lower() and HOME not in key for key in keys)
    assert all(0 < ttl <= WINDOW * 1000 for ttl in [await redis.pttl(key) for key in keys])


async def rows(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await (await conn.execute("SELECT * FROM login_throttle ORDER BY key")).fetchall()


async def test_postgres_keeps_one_row_per_counter_naming_nobody(
    dead_redis: aioredis.Redis, pool: AsyncConnectionPool
) -> None:
    throttle = make_throttle(dead_redis, pool)
    await fail(throttle, 3)
    await fail(throttle, 2, ip=ELSEWHERE)
    stored = await rows(pool)
    # Home and elsewhere for ann, and ann from anywhere: three counters, however many attempts.
    assert sorted((row["failures"], row["in_flight"]) for row in stored) == [(2, 0), (3, 0), (5, 0)]
    assert all(ANN.encode() not in bytes(row["key"]) and HOME.encode() not in bytes(row["key"]) for row in stored)


async def test_the_worker_forgets_ended_lockout_windows_and_expired_blacklist_entries(
    dead_redis: aioredis.Redis, pool: AsyncConnectionPool
) -> None:
    await fail(make_throttle(dead_redis, pool, window=1), 1)
    await fail(make_throttle(dead_redis, pool), 1, email="bob@example.com")
    assert len(await rows(pool)) == 4
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO blacklisted_tokens (jti, expires_at)
               VALUES (gen_random_uuid(), now() - interval '1 second'),
                      (gen_random_uuid(), now() + interval '1 hour')"""
        )
    await asyncio.sleep(1.1)
    assert await forget_expired_auth_state({"pool": pool}) == 3
    assert sorted(row["failures"] for row in await rows(pool)) == [1, 1]  # bob's two counters, still in window
    async with pool.connection() as conn:
        left = await (await conn.execute("SELECT count(*) AS n FROM blacklisted_tokens")).fetchone()
    assert left == {"n": 1}  # the token that has not expired yet stays refused


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_redis_down_moves_the_count_to_postgres_quickly(
    redis_url: str, pool: AsyncConnectionPool, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core_api.auth.lockout")
    async with FaultProxy.for_redis(redis_url) as proxy:
        client = aioredis.Redis.from_url(
            proxy.rewrite_redis_url(redis_url), socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            throttle = make_throttle(client, pool, per_client=2)
            assert await fail(throttle, 1) == [[]]
            getattr(proxy, fault)()
            started = time.perf_counter()
            # Counted afresh in PostgreSQL (the stores do not add up), and locked there.
            assert await fail(throttle, 2) == [[], ["email_and_client"]]
            assert await retry_after(throttle) is not None
            assert time.perf_counter() - started < 4 * 2.0
            proxy.heal()
            # Back in Redis, where the one failure from before the outage still counts.
            assert await fail(throttle, 1) == [["email_and_client"]]
        finally:
            await client.aclose()
    warnings = [record for record in caplog.records if record.name == "core_api.auth.lockout"]
    assert len(warnings) == 1
    assert "counted in PostgreSQL" in warnings[0].getMessage()
