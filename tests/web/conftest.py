"""Fixtures for the HTTP edge: accounts logged in through the API, for routes that check bodies and parameters only
after authorisation.
"""

from __future__ import annotations

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.support.accounts import Account, new_account


@pytest.fixture
async def admin(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> Account:
    return await new_account(pool, client, Role.ADMIN, 1)


@pytest.fixture
async def customer(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> Account:
    return await new_account(pool, client, Role.CUSTOMER, 1)
