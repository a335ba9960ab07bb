"""Accounts for API tests: a user made the way ``flightdesk create-user`` makes one, then logged in through the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import msgspec
from psycopg_pool import AsyncConnectionPool

from core_api.audit.service import SYSTEM
from core_api.storage.db import transaction
from core_api.users.schemas import Role, User
from core_api.users.service import create_user

__all__ = ["PASSWORD", "Account", "MakeAccount", "log_in", "new_account"]

PASSWORD = "correct horse battery"


class Account(msgspec.Struct, frozen=True):
    """A user and the headers that make requests as them."""

    user: User
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return str(self.user.id)


MakeAccount = Callable[..., Awaitable[Account]]


async def log_in(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    """The headers of a fresh login of ``user`` (password :data:`PASSWORD`)."""
    response = await client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def new_account(
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    role: Role,
    number: int,
    *,
    full_name: str | None = None,
    airline_code: str | None = None,
) -> Account:
    """User number ``number`` of ``role`` (``<role><number>@example.com``), created and logged in."""
    async with transaction(pool) as tx:
        user = await create_user(
            tx,
            SYSTEM,
            email=f"{role.lower()}{number}@example.com",
            password=PASSWORD,
            full_name=full_name or f"{role.title()} {number}",
            role=role,
            airline_code=airline_code,
        )
    return Account(user, await log_in(client, user))
