"""Login lockout per email (SPEC §10): counted in Redis, a fixed window from the first failure, failing open."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from core_api.auth.lockout import LoginThrottle
from tests.support.fault_proxy import FaultProxy

WINDOW = 900


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def throttle(redis: aioredis.Redis) -> LoginThrottle:
    return LoginThrottle(redis, max_failures=5, window_seconds=WINDOW)


async def fail(throttle: LoginThrottle, email: str, times: int, kind: str = "login") -> list[bool]:
    return [await throttle.record_failure(kind, email) for _ in range(times)]


async def test_five_failures_lock_the_email_for_the_rest_of_the_window(throttle: LoginThrottle) -> None:
    for _ in range(4):
        await throttle.record_failure("login", "ann@example.com")
        assert await throttle.retry_after("login", "ann@example.com") is None
    assert await throttle.record_failure("login", "ann@example.com") is True
    retry_after = await throttle.retry_after("login", "ann@example.com")
    assert retry_after is not None
    assert WINDOW - 5 <= retry_after <= WINDOW


async def test_only_the_failure_reaching_the_limit_reports_the_lockout(throttle: LoginThrottle) -> None:
    assert await fail(throttle, "ann@example.com", 8) == [False, False, False, False, True, False, False, False]


async def test_failures_while_locked_do_not_prolong_the_lockout(throttle: LoginThrottle, redis: aioredis.Redis) -> None:
    await fail(throttle, "ann@example.com", 5)
    before = await redis.pttl(LoginThrottle.key("login", "ann@example.com"))
    await fail(throttle, "ann@example.com", 3)
    assert await redis.pttl(LoginThrottle.key("login", "ann@example.com")) <= before


async def test_concurrent_failures_report_the_lockout_exactly_once(throttle: LoginThrottle) -> None:
    results = await asyncio.gather(*(throttle.record_failure("login", "ann@example.com") for _ in range(20)))
    assert results.count(True) == 1


async def test_clear_unlocks(throttle: LoginThrottle) -> None:
    await fail(throttle, "ann@example.com", 5)
    await throttle.clear("login", "ann@example.com")
    assert await throttle.retry_after("login", "ann@example.com") is None
    # Counting starts afresh.
    assert await fail(throttle, "ann@example.com", 5) == [False, False, False, False, True]


async def test_emails_and_kinds_are_counted_apart(throttle: LoginThrottle) -> None:
    await fail(throttle, "ann@example.com", 5)
    await fail(throttle, "bob@example.com", 4)
    assert await throttle.retry_after("login", "bob@example.com") is None
    assert await throttle.retry_after("password_reset", "ann@example.com") is None
    await fail(throttle, "ann@example.com", 5, kind="password_reset")
    assert await throttle.retry_after("password_reset", "ann@example.com") is not None
    await throttle.clear("login", "ann@example.com")
    assert await throttle.retry_after("password_reset", "ann@example.com") is not None


async def test_email_case_and_surrounding_spaces_do_not_matter(throttle: LoginThrottle) -> None:
    for email in ("Ann@Example.com", "ann@example.com", " ANN@EXAMPLE.COM", "aNn@example.COM ", "ann@EXAMPLE.com"):
        await throttle.record_failure("login", email)
    assert await throttle.retry_after("login", "ann@example.com") is not None
    assert await throttle.retry_after("login", "ANN@example.com") is not None


async def test_redis_holds_no_raw_email_and_keys_expire(throttle: LoginThrottle, redis: aioredis.Redis) -> None:
    await fail(throttle, "Ann@Example.com", 2)
    await fail(throttle, "ann@example.com", 1, kind="password_reset")
    digest = hashlib.sha256(b"ann@example.com").hexdigest()
    keys = sorted(key.decode() for key in await redis.keys("*"))
    assert keys == [f"flightdesk:lockout:login:{digest}", f"flightdesk:lockout:password_reset:{digest}"]
    assert all("example" not in key.lower() for key in keys)
    assert all(0 < ttl <= WINDOW * 1000 for ttl in [await redis.pttl(key) for key in keys])


async def test_the_lockout_ends_with_the_window(redis: aioredis.Redis) -> None:
    throttle = LoginThrottle(redis, max_failures=5, window_seconds=1)
    await fail(throttle, "ann@example.com", 5)
    assert await throttle.retry_after("login", "ann@example.com") == 1
    await asyncio.sleep(1.1)
    assert await throttle.retry_after("login", "ann@example.com") is None
    assert await fail(throttle, "ann@example.com", 5) == [False, False, False, False, True]


async def test_the_window_starts_at_the_first_failure(redis: aioredis.Redis) -> None:
    throttle = LoginThrottle(redis, max_failures=3, window_seconds=1)
    await throttle.record_failure("login", "ann@example.com")
    await asyncio.sleep(0.6)
    await fail(throttle, "ann@example.com", 1)
    await asyncio.sleep(0.6)
    # The first window closed with 2 failures; this one opens a new window rather than locking.
    assert await fail(throttle, "ann@example.com", 1) == [False]
    assert await throttle.retry_after("login", "ann@example.com") is None


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown lockout kind 'signup'"):
        LoginThrottle.key("signup", "ann@example.com")


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_redis_down_fails_open(redis_url: str, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core_api.auth.lockout")
    async with FaultProxy.for_redis(redis_url) as proxy:
        client = aioredis.Redis.from_url(
            proxy.rewrite_redis_url(redis_url), socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            throttle = LoginThrottle(client, max_failures=2, window_seconds=WINDOW)
            assert await fail(throttle, "ann@example.com", 2) == [False, True]
            assert await throttle.retry_after("login", "ann@example.com") is not None
            getattr(proxy, fault)()
            started = time.perf_counter()
            assert await throttle.retry_after("login", "ann@example.com") is None
            assert await throttle.record_failure("login", "ann@example.com") is False
            await throttle.clear("login", "ann@example.com")
            assert time.perf_counter() - started < 3 * 2.0
            proxy.heal()
            assert await throttle.retry_after("login", "ann@example.com") is not None
        finally:
            await client.aclose()
    warnings = [record for record in caplog.records if record.name == "core_api.auth.lockout"]
    assert len(warnings) == 1
    assert "Redis unavailable" in warnings[0].getMessage()
