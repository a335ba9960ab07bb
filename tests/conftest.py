"""Shared fixtures: real PostgreSQL and Redis, one migrated template database, one database per test.

The servers are the ones named by ``FLIGHTDESK_TEST_DATABASE_URL`` / ``FLIGHTDESK_TEST_REDIS_URL`` when set
(the URL's database is only used to connect; tests create their own), else embedded ones started once for the
session under ``.flightdesk/test``. Each test that asks for ``database_url`` gets a fresh database cloned from a
template migrated once per session; each test that asks for ``redis_url`` gets a flushed Redis database.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from core_api.app import create_app
from core_api.settings import Settings, load_settings
from core_api.storage.db import create_pool
from core_api.storage.migrations import migrate
from tests.support.asgi import serve_in_loop

REPO_ROOT = Path(__file__).resolve().parent.parent
# Redis database the tests use (and flush) on the test server, unless the test Redis URL names one.
TEST_REDIS_DB = 3
TEST_JWT_KEYS = "test-2026:0123456789abcdef0123456789abcdef-test-signing-key"
TEST_CRYPTO_KEYS = "1:dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="  # 32 bytes: "test-key-0123456789abcdef0123456"
# Days of demo flights in the seeded template (from tomorrow, so every seeded flight is in the future).
SEED_DAYS = 3


def with_database(conninfo: str, dbname: str) -> str:
    return make_conninfo(conninfo, dbname=dbname)


def _trade_durability_for_speed(conninfo: str) -> None:
    """Turn off fsync and full-page writes on the suite's own embedded cluster (never on a server it was given).

    Its data is thrown away, so a crash may lose it; without them, the ``DROP DATABASE`` after each test (which
    waits for a checkpoint) costs about 40 ms instead of about 600 ms.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for setting in ("fsync", "full_page_writes", "synchronous_commit"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    """(PostgreSQL conninfo, Redis URL) of the servers the suite runs against."""
    database_url = os.environ.get("FLIGHTDESK_TEST_DATABASE_URL")
    redis_url = os.environ.get("FLIGHTDESK_TEST_REDIS_URL")
    with contextlib.ExitStack() as stack:
        if not database_url or not redis_url:
            from core_api.storage.embedded import embedded_services

            handles = stack.enter_context(
                embedded_services(REPO_ROOT / ".flightdesk" / "test", postgres=not database_url, redis=not redis_url)
            )
            if not database_url:
                database_url = handles.database_url
                assert database_url
                _trade_durability_for_speed(database_url)
            redis_url = redis_url or handles.redis_url
        assert database_url
        assert redis_url
        yield database_url, redis_url


@pytest.fixture(scope="session")
def postgres_url(service_urls: tuple[str, str]) -> str:
    """Conninfo of the PostgreSQL server (maintenance database ``postgres``)."""
    return with_database(service_urls[0], "postgres")


@pytest.fixture(scope="session")
def redis_server_url(service_urls: tuple[str, str]) -> str:
    return service_urls[1]


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> AsyncIterator[str]:
    """Name of a database migrated once for the session; tests clone it."""
    name = f"fd_template_{os.getpid()}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    await migrate(with_database(postgres_url, name))
    yield name
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.asynccontextmanager
async def cloned_database(postgres_url: str, template: str, *, strategy: str = "WAL_LOG") -> AsyncIterator[str]:
    """A new database copied from ``template``. ``WAL_LOG`` (block by block through the WAL) suits the small
    migrated template: measured 0.3 s against 1.3-3 s for ``FILE_COPY``, whose checkpoint costs whatever the
    previous tests left dirty. ``FILE_COPY`` suits a large template, which WAL_LOG would write out in full.
    """
    name = f"fd_test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.SQL(strategy)
            )
        )
    try:
        yield with_database(postgres_url, name)
    finally:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def seed_start() -> date:
    """First seeded day: tomorrow (UTC), so every seeded flight is in the future during the run."""
    return datetime.now(UTC).date() + timedelta(days=1)


@pytest.fixture(scope="session")
async def seeded_template(postgres_url: str, template_database: str, seed_start: date) -> AsyncIterator[str]:
    """A migrated database with a few days of demo flights, for the packages whose tests need inventory; those
    packages' conftests override ``database_url`` to clone it.
    """
    from core_api.seed import seed_reference_and_flights

    name = f"fd_seeded_{os.getpid()}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        await conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_database))
        )
    await seed_reference_and_flights(with_database(postgres_url, name), days=SEED_DAYS, start=seed_start)
    yield name
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    async with cloned_database(postgres_url, template_database) as url:
        yield url


def suite_redis_url(server_url: str) -> str:
    """The database the suite flushes and uses: the one ``FLIGHTDESK_TEST_REDIS_URL`` names (``/N``), else 3.

    Naming it lets two runs share one Redis server without flushing each other's keys. Each pytest-xdist worker
    takes the next one (``gw1`` → N + 1), so parallel workers never flush each other's keys either.
    """
    base, _, database = server_url.rstrip("/").rpartition("/")
    if server_url.count("/") > 2 and database.isdigit():
        server, number = base, int(database)
    else:
        server, number = server_url.rstrip("/"), TEST_REDIS_DB
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return f"{server}/{number + int(worker.removeprefix('gw') or 0)}"


@pytest.fixture
async def redis_url(redis_server_url: str) -> AsyncIterator[str]:
    """A Redis database flushed before the test."""
    url = suite_redis_url(redis_server_url)
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        {
            "FLIGHTDESK_ENV": "test",
            "FLIGHTDESK_DATABASE_URL": database_url,
            "FLIGHTDESK_REDIS_URL": redis_url,
            "FLIGHTDESK_DATABASE_POOL_MIN": "1",
            "FLIGHTDESK_AUTH_JWT_KEYS": TEST_JWT_KEYS,
            "FLIGHTDESK_CRYPTO_KEYS": TEST_CRYPTO_KEYS,
            # Tests log in many times from one address; the limiter itself is tested with its own tiers.
            "FLIGHTDESK_RATE_LIMITS": "10000/second",
        },
        dotenv=None,
    )


@pytest.fixture
async def pool(settings: Settings, database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(settings, database_url, name="flightdesk-tests")
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


def database_name(conninfo: str) -> str:
    return conninfo_to_dict(conninfo)["dbname"] or "postgres"


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the full app (lifespan run) over its own database and Redis, in the test's loop."""
    async with serve_in_loop(app) as http:
        yield http
