"""The login lockout through the API (SPEC §10), as an attacker meets it: parallel guesses, many addresses, no Redis.

Five failures for one email from one client address within the window, or twenty for one email from anywhere,
lock further attempts (the right password included) with 429 until the window ends. Attempts are reserved before
the password is checked, so however many arrive at once, at most the limit are evaluated. With Redis down the
counting moves to PostgreSQL. Password-reset requests and current-password checks are limited the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.app import create_app
from core_api.settings import Settings
from tests.auth.conftest import PASSWORD, Register, bearer
from tests.support.asgi import client_from, serve_in_loop
from tests.support.fault_proxy import FaultProxy

EMAIL = "ann@example.com"
WRONG = "not the password"


def login(client: httpx.AsyncClient, password: str, email: str = EMAIL) -> asyncio.Task[httpx.Response]:
    return asyncio.ensure_future(client.post("/api/v1/auth/login", json={"email": email, "password": password}))


async def statuses(*requests: asyncio.Future[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in await asyncio.gather(*requests))


async def count(pool: AsyncConnectionPool, query: str) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return int(next(iter(row.values())))


async def audit_count(pool: AsyncConnectionPool, event_type: str) -> int:
    return await count(pool, f"SELECT count(*) FROM audit_logs WHERE event_type = '{event_type}'")


@pytest.fixture
async def ann(register: Register) -> dict:
    return await register(EMAIL)


@contextlib.asynccontextmanager
async def served_without_redis(settings: Settings, redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Litestar]]:
    """A served app whose Redis refuses every connection (after a healthy start)."""
    async with FaultProxy.for_redis(redis_url) as proxy:
        app = create_app(settings, redis_url=proxy.rewrite_redis_url(redis_url))
        async with serve_in_loop(app) as client:
            proxy.refuse()
            yield client, app


@pytest.fixture
async def redis_down(settings: Settings, redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Litestar]]:
    async with served_without_redis(settings, redis_url) as served:
        yield served


@pytest.fixture(params=["redis up", "redis down"])
async def either_client(
    request: pytest.FixtureRequest, settings: Settings, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app with Redis up, then with Redis down."""
    if request.param == "redis up":
        async with serve_in_loop(create_app(settings)) as client:
            yield client
    else:
        async with served_without_redis(settings, redis_url) as (client, _):
            yield client


async def test_parallel_wrong_guesses_cannot_outrun_the_lockout(
    client: httpx.AsyncClient, ann: dict, pool: AsyncConnectionPool
) -> None:
    assert await statuses(*(login(client, WRONG) for _ in range(40))) == {401: 5, 429: 35}
    assert await audit_count(pool, "auth.login_failed") == 5
    assert await audit_count(pool, "auth.lockout") == 1
    locked = await login(client, PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["code"] == "RATE_LIMITED"
    assert 0 < int(locked.headers["retry-after"]) <= 900


async def test_a_right_password_among_parallel_guesses_is_evaluated_only_within_the_limit(
    client: httpx.AsyncClient, ann: dict, pool: AsyncConnectionPool
) -> None:
    requests = [login(client, WRONG) for _ in range(39)]
    right = login(client, PASSWORD)
    outcome = await statuses(*requests, right)
    # Five attempts were evaluated, whatever they were; the right password logs in only if it was one of them.
    assert outcome[429] == 35
    assert outcome[200] + outcome[401] == 5
    assert outcome[200] == (right.result().status_code == 200)
    assert await count(pool, "SELECT count(*) FROM sessions") == 1 + outcome[200]  # the registration's own + this


async def test_a_lockout_is_per_client_address_so_it_cannot_lock_the_owner_out(
    client: httpx.AsyncClient, app: Litestar, ann: dict
) -> None:
    async with client_from(app, "203.0.113.66") as attacker, client_from(app, "198.51.100.7") as owner:
        assert await statuses(*(login(attacker, WRONG) for _ in range(8))) == {401: 5, 429: 3}
        assert (await login(attacker, PASSWORD)).status_code == 429
        signed_in = await login(owner, PASSWORD)
        assert signed_in.status_code == 200
        assert (await owner.get("/api/v1/auth/me", headers=bearer(signed_in.json()["access_token"]))).is_success
        # The owner's own slips are counted for the owner's address only.
        assert await statuses(*(login(owner, WRONG) for _ in range(2))) == {401: 2}


async def test_twenty_failures_from_anywhere_lock_the_email(
    client: httpx.AsyncClient, app: Litestar, register: Register, ann: dict
) -> None:
    await register("bob@example.com")
    clients = [client_from(app, f"203.0.113.{host}") for host in range(1, 6)]
    try:
        # Five addresses, five guesses each, all at once: 20 are evaluated in all, then the email is locked.
        outcome = await statuses(*(login(c, WRONG) for c in clients for _ in range(5)))
        assert outcome == {401: 20, 429: 5}
        async with client_from(app, "198.51.100.7") as fresh:
            assert (await login(fresh, PASSWORD)).status_code == 429
            assert (await login(fresh, PASSWORD, email="bob@example.com")).status_code == 200
    finally:
        for c in clients:
            await c.aclose()


async def test_a_success_forgets_the_failures_of_its_own_address(client: httpx.AsyncClient, ann: dict) -> None:
    assert await statuses(*(login(client, WRONG) for _ in range(4))) == {401: 4}
    assert (await login(client, PASSWORD)).status_code == 200
    assert await statuses(*(login(client, WRONG) for _ in range(4))) == {401: 4}
    assert (await login(client, PASSWORD)).status_code == 200


async def test_the_lockout_is_counted_in_postgres_while_redis_is_down(
    redis_down: tuple[httpx.AsyncClient, Litestar], pool: AsyncConnectionPool
) -> None:
    client, app = redis_down
    body = {"email": EMAIL, "password": PASSWORD, "full_name": "Ann Example"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    assert await statuses(*(login(client, WRONG) for _ in range(40))) == {401: 5, 429: 35}
    assert (await login(client, PASSWORD)).status_code == 429
    async with client_from(app, "198.51.100.7") as owner:
        assert (await login(owner, PASSWORD)).status_code == 200
    # One row per counter (this email from each address, and this email from anywhere), none naming the email.
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT * FROM login_throttle")).fetchall()
    assert len(rows) == 3
    assert EMAIL.encode() not in b"".join(bytes(row["key"]) for row in rows)
    assert all(EMAIL not in str(row) for row in rows)


async def test_parallel_password_reset_requests_are_limited_like_logins(
    either_client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    client = either_client
    body = {"email": EMAIL, "password": PASSWORD, "full_name": "Ann Example"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    ask = {"email": EMAIL}
    outcome = await statuses(
        *(asyncio.ensure_future(client.post("/api/v1/auth/password-reset/request", json=ask)) for _ in range(40))
    )
    # Every request counts (so nobody can flood a mailbox), and parallel ones cannot slip past the count.
    assert outcome == {202: 5, 429: 35}
    assert await count(pool, "SELECT count(*) FROM password_reset_tokens") == 5


async def test_guessing_the_current_password_counts_toward_the_lockout(client: httpx.AsyncClient, ann: dict) -> None:
    # A stolen access token must not turn the password-change form into an unlimited password oracle.
    url = f"/api/v1/users/{ann['user']['id']}"
    headers = bearer(ann["access_token"])

    def change(current: str) -> asyncio.Future[httpx.Response]:
        body = {"current_password": current, "new_password": "a brand new passphrase"}
        return asyncio.ensure_future(client.put(url, json=body, headers=headers))

    assert await statuses(*(change(WRONG) for _ in range(20))) == {403: 5, 429: 15}
    assert (await change(PASSWORD)).status_code == 429
    assert (await login(client, PASSWORD)).status_code == 429


def test_email_digests_are_what_the_counters_are_keyed_by() -> None:
    # Documented in the README: the keys hold SHA-256 digests, so neither Redis nor PostgreSQL holds the address.
    from core_api.auth.lockout import counter_keys

    keys = counter_keys("login", " Ann@Example.COM ", "203.0.113.9")
    digest = hashlib.sha256(EMAIL.encode()).hexdigest()
    assert all(digest in key for key in keys)
    assert all("example" not in key.lower() and "203.0.113.9" not in key for key in keys)
