"""Fixtures for the HTTP edge: accounts logged in through the API, for routes that check bodies and parameters only
after authorisation.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.support.accounts import Account, new_account

AccountOf = Callable[[Role], Awaitable[Account]]


@pytest.fixture
async def admin(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> Account:
    return await new_account(pool, client, Role.ADMIN, 1)


@pytest.fixture
async def customer(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> Account:
    return await new_account(pool, client, Role.CUSTOMER, 1)


@pytest.fixture
def account_of(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> AccountOf:
    """A new logged-in account of any role (airline agents work for a test airline)."""
    numbers = itertools.count(100)

    async def make(role: Role) -> Account:
        airline = None
        if role is Role.AIRLINE_AGENT:
            airline = "FD"
            async with pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO airlines (code, name, country) VALUES ('FD', 'Flightdesk Air', 'US')"
                    " ON CONFLICT DO NOTHING"
                )
        return await new_account(pool, client, role, next(numbers), airline_code=airline)

    return make
