"""Fixtures for user tests: accounts of every role (made as the CLI makes them) logged in through the API."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.audit.service import SYSTEM
from core_api.storage.db import transaction
from core_api.users.schemas import Role, User
from core_api.users.service import create_user
from tests.support.accounts import PASSWORD, Account, MakeAccount
from tests.support.accounts import log_in as headers_after_login
from tests.support.audit import audit_rows  # re-exported for the users tests

__all__ = ["audit_rows"]

AIRLINE = "FD"

MakeUser = Callable[..., Awaitable[User]]


@pytest.fixture
async def airline(pool: AsyncConnectionPool) -> str:
    """The code of a known airline (the test database starts without reference data)."""
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO airlines (code, name, country) VALUES (%s, 'Flightdesk Air', 'US')", (AIRLINE,))
    return AIRLINE


@pytest.fixture
def make_user(pool: AsyncConnectionPool, airline: str) -> MakeUser:
    """Create a user directly, the way ``flightdesk create-user`` does."""
    numbers = itertools.count(1)

    async def make(role: Role = Role.CUSTOMER, *, email: str | None = None, full_name: str | None = None) -> User:
        number = next(numbers)
        async with transaction(pool) as tx:
            return await create_user(
                tx,
                SYSTEM,
                email=email or f"{role.lower()}{number}@example.com",
                password=PASSWORD,
                full_name=full_name or f"{role.title().replace('_', ' ')} {number}",
                role=role,
                airline_code=airline if role is Role.AIRLINE_AGENT else None,
            )

    return make


@pytest.fixture
def log_in(client: httpx.AsyncClient) -> Callable[[User], Awaitable[dict[str, str]]]:
    async def headers_of(user: User) -> dict[str, str]:
        return await headers_after_login(client, user)

    return headers_of


@pytest.fixture
def make_account(make_user: MakeUser, log_in: Callable[[User], Awaitable[dict[str, str]]]) -> MakeAccount:
    """A new user of a role, logged in."""

    async def make(role: Role = Role.CUSTOMER, **fields: Any) -> Account:
        user = await make_user(role, **fields)
        return Account(user, await log_in(user))

    return make


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    return await make_account(Role.ADMIN)


@pytest.fixture
async def business_owner(make_account: MakeAccount) -> Account:
    return await make_account(Role.BUSINESS_OWNER)


@pytest.fixture
async def customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


@pytest.fixture
async def other_customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


async def user_row(pool: AsyncConnectionPool, user_id: str) -> dict[str, Any]:
    """The users row as stored (deleted or not), password hash included."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT * FROM users WHERE id = %s", (user_id,))).fetchone()
    assert row is not None
    return row
