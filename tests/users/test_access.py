"""Who may call which users endpoint: every role against every endpoint, BOLA and mass assignment."""

from __future__ import annotations

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.users.conftest import PASSWORD, Account, MakeAccount, audit_rows, user_row

ROLES = list(Role)
READERS = {Role.ADMIN, Role.BUSINESS_OWNER}


def expected(role: Role, *, admin: int, reader: int | None = None, other: int) -> int:
    if role is Role.ADMIN:
        return admin
    if role is Role.BUSINESS_OWNER and reader is not None:
        return reader
    return other


@pytest.mark.parametrize("role", ROLES)
async def test_list_and_stats_are_for_admins_and_business_owners(
    client: httpx.AsyncClient, make_account: MakeAccount, role: Role
) -> None:
    caller = await make_account(role)
    status = 200 if role in READERS else 403
    assert (await client.get("/api/v1/users", headers=caller.headers)).status_code == status
    assert (await client.get("/api/v1/users/stats", headers=caller.headers)).status_code == status


@pytest.mark.parametrize("role", ROLES)
async def test_only_admins_create_users(client: httpx.AsyncClient, make_account: MakeAccount, role: Role) -> None:
    caller = await make_account(role)
    body = {"email": "new@example.com", "password": PASSWORD, "full_name": "New", "role": "CUSTOMER"}
    response = await client.post("/api/v1/users", json=body, headers=caller.headers)
    assert response.status_code == expected(role, admin=201, other=403)


@pytest.mark.parametrize("role", ROLES)
async def test_reading_users(
    client: httpx.AsyncClient, make_account: MakeAccount, customer: Account, role: Role
) -> None:
    caller = await make_account(role)
    own = await client.get(f"/api/v1/users/{caller.id}", headers=caller.headers)
    assert own.status_code == 200
    assert own.json()["id"] == caller.id
    someone_else = await client.get(f"/api/v1/users/{customer.id}", headers=caller.headers)
    assert someone_else.status_code == (200 if role in READERS else 404)


@pytest.mark.parametrize("role", ROLES)
async def test_updating_users(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_account: MakeAccount, customer: Account, role: Role
) -> None:
    caller = await make_account(role)
    own = await client.put(f"/api/v1/users/{caller.id}", json={"full_name": "Renamed"}, headers=caller.headers)
    assert own.status_code == 200
    assert own.json()["full_name"] == "Renamed"
    other = await client.put(f"/api/v1/users/{customer.id}", json={"full_name": "Hijacked"}, headers=caller.headers)
    assert other.status_code == expected(role, admin=200, reader=403, other=404)
    if role is not Role.ADMIN:
        assert (await user_row(pool, customer.id))["full_name"] == customer.user.full_name


@pytest.mark.parametrize("role", ROLES)
async def test_only_admins_delete_users(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_account: MakeAccount, customer: Account, role: Role
) -> None:
    caller = await make_account(role)
    response = await client.delete(f"/api/v1/users/{customer.id}", headers=caller.headers)
    assert response.status_code == expected(role, admin=204, other=403)
    assert ((await user_row(pool, customer.id))["deleted_at"] is not None) is (role is Role.ADMIN)


async def test_anonymous_callers_get_401(client: httpx.AsyncClient, customer: Account) -> None:
    user = f"/api/v1/users/{customer.id}"
    calls = [("GET", "/api/v1/users"), ("GET", "/api/v1/users/stats"), ("GET", user), ("PUT", user), ("DELETE", user)]
    for method, path in calls:
        response = await client.request(method, path, json={} if method == "PUT" else None)
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_customer_cannot_see_or_change_another_customer(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, other_customer: Account
) -> None:
    before = await user_row(pool, other_customer.id)
    read = await client.get(f"/api/v1/users/{other_customer.id}", headers=customer.headers)
    assert read.status_code == 404
    assert read.json()["code"] == "NOT_FOUND"
    for body in ({"full_name": "Mallory"}, {"phone": "+1 555 0100"}, {"role": "ADMIN"}, {"is_active": False}):
        response = await client.put(f"/api/v1/users/{other_customer.id}", json=body, headers=customer.headers)
        assert response.status_code == 404, body
    # A user that does not exist answers exactly like one the caller may not see.
    missing = await client.get("/api/v1/users/00000000-0000-4000-8000-000000000000", headers=customer.headers)
    assert missing.status_code == 404
    assert missing.json()["detail"] == read.json()["detail"]
    assert await user_row(pool, other_customer.id) == before


@pytest.mark.parametrize(
    "body",
    [{"role": "ADMIN"}, {"is_active": True}, {"airline_code": "FD"}, {"full_name": "Still Me", "role": "ADMIN"}],
)
async def test_mass_assignment_of_admin_fields_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, body: dict
) -> None:
    before = await user_row(pool, customer.id)
    response = await client.put(f"/api/v1/users/{customer.id}", json=body, headers=customer.headers)
    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == "FORBIDDEN"
    assert {error["field"] for error in problem["errors"]} == set(body) - {"full_name"}
    assert await user_row(pool, customer.id) == before
    me = await client.get("/api/v1/auth/me", headers=customer.headers)
    assert me.json()["role"] == "CUSTOMER"
    [denied] = await audit_rows(pool, "security.access_denied")
    assert denied["actor_id"] == customer.user.id
    assert denied["metadata"]["fields"] == [field for field in ("role", "is_active", "airline_code") if field in body]


async def test_a_business_owner_cannot_grant_itself_admin(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, business_owner: Account
) -> None:
    response = await client.put(
        f"/api/v1/users/{business_owner.id}", json={"role": "ADMIN"}, headers=business_owner.headers
    )
    assert response.status_code == 403
    assert (await user_row(pool, business_owner.id))["role"] == "BUSINESS_OWNER"


async def test_unknown_fields_are_refused_by_name(client: httpx.AsyncClient, customer: Account) -> None:
    for field, value in [("password_hash", "x"), ("deleted_at", None), ("id", customer.id), ("email", "a@b.co")]:
        response = await client.put(f"/api/v1/users/{customer.id}", json={field: value}, headers=customer.headers)
        assert response.status_code == 422, field
        assert field in response.json()["detail"]
