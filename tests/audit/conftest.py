"""Helpers for audit tests: the chain as sealed, and raw access that bypasses the append-only guards."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.support.accounts import Account, MakeAccount, new_account


async def chain_order(conn: AsyncConnection[Any]) -> list[int]:
    """Audit ids in chain order, as the seals put them."""
    cursor = await conn.execute(
        "SELECT u.audit_id FROM audit_seals AS s, unnest(s.audit_ids) WITH ORDINALITY AS u (audit_id, n)"
        " ORDER BY s.seal_no, u.n"
    )
    return [row["audit_id"] if isinstance(row, dict) else row[0] for row in await cursor.fetchall()]


async def tamper(conn: AsyncConnection[Any], table: str, statement: str) -> None:
    """Run ``statement`` as someone with database access would, switching the append-only trigger off for it."""
    trigger = {"audit_logs": "audit_logs_no_update", "audit_seals": "audit_seals_no_update"}[table]
    await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    await conn.execute(statement)
    await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


AUDIT_ROUTES = [
    ("GET", "/api/v1/audit/logs"),
    ("GET", "/api/v1/audit/statistics"),
    ("GET", "/api/v1/audit/user/{user}/timeline"),
    ("GET", "/api/v1/audit/entity/user/{user}/history"),
    ("GET", "/api/v1/audit/security/events"),
    ("GET", "/api/v1/audit/verify"),
    ("DELETE", "/api/v1/audit/logs/cleanup?older_than_days=90"),
]


@pytest.fixture
async def airline(pool: AsyncConnectionPool) -> str:
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO airlines (code, name, country) VALUES ('FD', 'Flightdesk Air', 'US')")
    return "FD"


@pytest.fixture
def make_account(pool: AsyncConnectionPool, client: httpx.AsyncClient, airline: str) -> MakeAccount:
    numbers = itertools.count(1)

    async def make(role: Role = Role.CUSTOMER) -> Account:
        code = airline if role is Role.AIRLINE_AGENT else None
        return await new_account(pool, client, role, next(numbers), airline_code=code)

    return make


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    return await make_account(Role.ADMIN)
