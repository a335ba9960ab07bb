"""Flight tests run on seeded inventory: the session's seeded template (tests/conftest.py), cloned per test; and
accounts of any role, made as the CLI makes them and logged in.
"""

import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.conftest import cloned_database
from tests.support.accounts import Account, MakeAccount, new_account


@pytest.fixture
async def database_url(postgres_url: str, seeded_template: str) -> AsyncIterator[str]:
    """Overrides the empty database: this package's tests run on seeded flights."""
    async with cloned_database(postgres_url, seeded_template, strategy="FILE_COPY") as url:
        yield url


@pytest.fixture
def make_account(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> MakeAccount:
    """A new user of a role (an airline agent of ``airline``), made as the CLI makes them, then logged in."""
    numbers = itertools.count(1)

    async def make(role: Role, airline: str | None = None) -> Account:
        return await new_account(pool, client, role, next(numbers), airline_code=airline)

    return make


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    return await make_account(Role.ADMIN)
