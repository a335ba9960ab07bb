"""Analytics tests: the app with a warehouse of the test's own, and accounts of every role."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.settings import Settings, load_settings
from core_api.users.schemas import Role
from tests.conftest import TEST_CRYPTO_KEYS, TEST_JWT_KEYS
from tests.support.accounts import Account, MakeAccount, new_account


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def settings(database_url: str, redis_url: str, warehouse_path: Path) -> Settings:
    return load_settings(
        {
            "FLIGHTDESK_ENV": "test",
            "FLIGHTDESK_DATABASE_URL": database_url,
            "FLIGHTDESK_REDIS_URL": redis_url,
            "FLIGHTDESK_DATABASE_POOL_MIN": "1",
            "FLIGHTDESK_AUTH_JWT_KEYS": TEST_JWT_KEYS,
            "FLIGHTDESK_CRYPTO_KEYS": TEST_CRYPTO_KEYS,
            "FLIGHTDESK_RATE_LIMITS": "10000/second",
            "FLIGHTDESK_WAREHOUSE_PATH": str(warehouse_path),
        },
        dotenv=None,
    )


@pytest.fixture
def make_account(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> MakeAccount:
    numbers = itertools.count(1)

    async def make(role: Role = Role.CUSTOMER, airline_code: str | None = None) -> Account:
        return await new_account(pool, client, role, next(numbers), airline_code=airline_code)

    return make
