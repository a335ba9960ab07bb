"""Creating, reading, updating and deleting users through the API, with their audit trail and session effects."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.audit.service import SYSTEM, verify_chain
from core_api.auth import service as auth_service
from core_api.users.schemas import Role
from tests.users.conftest import PASSWORD, Account, MakeAccount, audit_rows, user_row


async def count_users(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) AS n FROM users")).fetchone()
    assert row is not None
    return int(row["n"])


# Create -------------------------------------------------------------------------------------------------------------


async def test_admin_creates_a_user_of_any_role(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, airline: str
) -> None:
    body = {
        "email": "Agent@Example.COM",
        "password": PASSWORD,
        "full_name": "  Ada   Agent ",
        "role": "AIRLINE_AGENT",
        "airline_code": airline.lower(),
        "phone": "+44 20 7946 0000",
    }
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["email"] == "Agent@example.com"
    assert user["full_name"] == "Ada Agent"
    assert (user["role"], user["airline_code"], user["phone"]) == ("AIRLINE_AGENT", airline, "+44 20 7946 0000")
    assert "password_hash" not in user
    [created] = [row for row in await audit_rows(pool, "user.created") if row["entity_id"] == user["id"]]
    assert created["actor_id"] == admin.user.id
    # The new account works.
    login = await client.post("/api/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"role": "AIRLINE_AGENT"}, "airline_code"),
        ({"role": "AIRLINE_AGENT", "airline_code": "ZZ"}, "airline_code"),
        ({"role": "CUSTOMER", "airline_code": "FD"}, "airline_code"),
        ({"role": "PILOT"}, "role"),
        ({"role": "CUSTOMER", "email": "not-an-email"}, "email"),
        ({"role": "CUSTOMER", "password": "short"}, "password"),
        ({"role": "CUSTOMER", "password": "x" * 10_000}, "password"),
        ({"role": "CUSTOMER", "full_name": "n" * 10_000}, "full_name"),
        ({"role": "CUSTOMER", "full_name": "   "}, "full_name"),
        ({"role": "CUSTOMER", "full_name": 42}, "full_name"),
        ({"role": "CUSTOMER", "phone": "call me"}, "phone"),
        ({"role": "CUSTOMER", "is_active": False}, "is_active"),
    ],
)
async def test_bad_create_input_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, airline: str, extra: dict, field: str
) -> None:
    body = {"email": "new@example.com", "password": PASSWORD, "full_name": "New User", **extra}
    users_before, audited_before = await count_users(pool), len(await audit_rows(pool, "user.created"))
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "VALIDATION_ERROR"
    assert field in problem["detail"]
    assert await count_users(pool) == users_before
    assert len(await audit_rows(pool, "user.created")) == audited_before


async def test_duplicate_email_is_a_conflict(client: httpx.AsyncClient, admin: Account, customer: Account) -> None:
    body = {"email": customer.user.email.upper(), "password": PASSWORD, "full_name": "Twin", "role": "ADMIN"}
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "CONFLICT"


# Read ---------------------------------------------------------------------------------------------------------------


async def test_malformed_ids_name_the_field(client: httpx.AsyncClient, admin: Account) -> None:
    for user_id in ["not-a-uuid", "1", "x" * 5000, "00000000-0000-4000-8000-00000000000g"]:
        for method in ("GET", "PUT", "DELETE"):
            response = await client.request(
                method, f"/api/v1/users/{user_id}", headers=admin.headers, json={} if method == "PUT" else None
            )
            assert response.status_code == 422, (method, user_id, response.text)
            [error] = response.json()["errors"]
            assert (error["field"], error["message"].split(",")[0]) == ("id", "must be a UUID")


async def test_deleted_users_are_gone_for_everyone(
    client: httpx.AsyncClient, admin: Account, customer: Account
) -> None:
    assert (await client.delete(f"/api/v1/users/{customer.id}", headers=admin.headers)).status_code == 204
    assert (await client.get(f"/api/v1/users/{customer.id}", headers=admin.headers)).status_code == 404
    assert (await client.put(f"/api/v1/users/{customer.id}", json={}, headers=admin.headers)).status_code == 404
    assert (await client.delete(f"/api/v1/users/{customer.id}", headers=admin.headers)).status_code == 404


# Update -------------------------------------------------------------------------------------------------------------


async def test_self_service_profile_update(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account
) -> None:
    response = await client.put(
        f"/api/v1/users/{customer.id}", json={"full_name": "Cleo  Customer", "phone": "555-0100"},
        headers=customer.headers,
    )  # fmt: skip
    assert response.status_code == 200
    assert (response.json()["full_name"], response.json()["phone"]) == ("Cleo Customer", "555-0100")
    cleared = await client.put(f"/api/v1/users/{customer.id}", json={"phone": None}, headers=customer.headers)
    assert cleared.json()["phone"] is None
    assert cleared.json()["full_name"] == "Cleo Customer"
    updates = [row for row in await audit_rows(pool, "user.updated") if row["entity_id"] == customer.id]
    assert [row["metadata"]["fields"] for row in updates] == [["full_name", "phone"], ["phone"]]
    assert updates[0]["before"]["full_name"] == customer.user.full_name
    assert updates[0]["after"]["full_name"] == "Cleo Customer"
    # Nothing to change: nothing written, nothing audited.
    same = await client.put(
        f"/api/v1/users/{customer.id}", json={"full_name": "Cleo Customer"}, headers=customer.headers
    )
    assert same.status_code == 200
    assert len([row for row in await audit_rows(pool, "user.updated") if row["entity_id"] == customer.id]) == 2


async def test_admin_role_change_is_audited(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account
) -> None:
    response = await client.put(f"/api/v1/users/{customer.id}", json={"role": "TRAVEL_AGENT"}, headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["role"] == "TRAVEL_AGENT"
    assert (await user_row(pool, customer.id))["role"] == "TRAVEL_AGENT"
    [changed] = await audit_rows(pool, "user.role_changed")
    assert (changed["actor_id"], changed["actor_role"], changed["entity_id"]) == (admin.user.id, "ADMIN", customer.id)
    assert (changed["before"], changed["after"]) == ({"role": "CUSTOMER"}, {"role": "TRAVEL_AGENT"})
    [updated] = [row for row in await audit_rows(pool, "user.updated") if row["entity_id"] == customer.id]
    assert updated["before"]["role"] == "CUSTOMER"
    assert updated["after"]["role"] == "TRAVEL_AGENT"
    # The new role applies to the user's existing token at once.
    me = await client.get("/api/v1/auth/me", headers=customer.headers)
    assert me.json()["role"] == "TRAVEL_AGENT"
    async with pool.connection() as conn:
        assert (await verify_chain(conn)).valid


async def test_airline_agent_role_keeps_its_airline_rule(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account, airline: str
) -> None:
    url = f"/api/v1/users/{customer.id}"
    missing = await client.put(url, json={"role": "AIRLINE_AGENT"}, headers=admin.headers)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "airline_code"
    unknown = await client.put(url, json={"role": "AIRLINE_AGENT", "airline_code": "ZZ"}, headers=admin.headers)
    assert unknown.status_code == 422
    stray = await client.put(url, json={"airline_code": airline}, headers=admin.headers)
    assert stray.status_code == 422
    assert (await user_row(pool, customer.id))["role"] == "CUSTOMER"

    agent = await client.put(url, json={"role": "AIRLINE_AGENT", "airline_code": "fd"}, headers=admin.headers)
    assert agent.status_code == 200
    assert (agent.json()["role"], agent.json()["airline_code"]) == ("AIRLINE_AGENT", airline)
    # Leaving the role leaves the airline.
    back = await client.put(url, json={"role": "CUSTOMER"}, headers=admin.headers)
    assert (back.json()["role"], back.json()["airline_code"]) == ("CUSTOMER", None)


async def test_deactivation_ends_the_users_access(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=customer.headers)).status_code == 200
    response = await client.put(f"/api/v1/users/{customer.id}", json={"is_active": False}, headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert (await client.get("/api/v1/auth/me", headers=customer.headers)).status_code == 401
    login = await client.post("/api/v1/auth/login", json={"email": customer.user.email, "password": PASSWORD})
    assert login.status_code == 403
    assert [row["entity_id"] for row in await audit_rows(pool, "user.deactivated")] == [customer.id]
    # An admin still sees and can reactivate them.
    listed = await client.get("/api/v1/users", params={"is_active": "false"}, headers=admin.headers)
    assert [user["id"] for user in listed.json()["items"]] == [customer.id]
    again = await client.put(f"/api/v1/users/{customer.id}", json={"is_active": True}, headers=admin.headers)
    assert again.json()["is_active"] is True
    login = await client.post("/api/v1/auth/login", json={"email": customer.user.email, "password": PASSWORD})
    assert login.status_code == 200


async def test_password_change_ends_every_session(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, log_in
) -> None:
    second_device = await log_in(customer.user)
    url = f"/api/v1/users/{customer.id}"
    new_password = "a much better passphrase"
    response = await client.put(
        url, json={"current_password": PASSWORD, "new_password": new_password}, headers=customer.headers
    )
    assert response.status_code == 200, response.text
    for headers in (customer.headers, second_device):
        assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    row = await user_row(pool, customer.id)
    assert row["credentials_changed_at"] is not None
    old = await client.post("/api/v1/auth/login", json={"email": customer.user.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post("/api/v1/auth/login", json={"email": customer.user.email, "password": new_password})
    assert new.status_code == 200
    [changed] = await audit_rows(pool, "auth.password_changed")
    assert changed["entity_id"] == customer.id
    assert new_password not in str(await audit_rows(pool, "user.updated"))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"current_password": "wrong password", "new_password": "a much better passphrase"}, 403, "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, 422, "new_password"),
        ({"current_password": PASSWORD}, 422, "new_password"),
        ({"new_password": "a much better passphrase"}, 422, "current_password"),
        ({"current_password": PASSWORD, "new_password": "p" * 10_000}, 422, "new_password"),
    ],
)
async def test_refused_password_changes_change_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, body: dict, status: int, field: str
) -> None:
    before = await user_row(pool, customer.id)
    response = await client.put(f"/api/v1/users/{customer.id}", json=body, headers=customer.headers)
    assert response.status_code == status, response.text
    assert field in response.json()["detail"] or field in str(response.json().get("errors"))
    assert await user_row(pool, customer.id) == before
    assert (await client.get("/api/v1/auth/me", headers=customer.headers)).status_code == 200


async def test_wrong_current_password_is_audited(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account
) -> None:
    body = {"current_password": "wrong password", "new_password": "a much better passphrase"}
    await client.put(f"/api/v1/users/{customer.id}", json=body, headers=customer.headers)
    [failed] = await audit_rows(pool, "auth.password_change_failed")
    assert failed["entity_id"] == customer.id
    assert "wrong password" not in str(failed)


async def test_an_admin_cannot_set_another_users_password(
    client: httpx.AsyncClient, admin: Account, customer: Account
) -> None:
    body = {"current_password": PASSWORD, "new_password": "a much better passphrase"}
    response = await client.put(f"/api/v1/users/{customer.id}", json=body, headers=admin.headers)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"full_name": ""}, "full_name"),
        ({"full_name": "x" * 10_000}, "full_name"),
        ({"full_name": None}, "full_name"),
        ({"phone": 5550100}, "phone"),
        ({"phone": "1" * 40}, "phone"),
        ({"role": "ROOT"}, "role"),
        ({"is_active": "yes"}, "is_active"),
        ({"password_hash": "x"}, "password_hash"),
    ],
)
async def test_bad_update_input_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, customer: Account, body: dict, field: str
) -> None:
    before = await user_row(pool, customer.id)
    response = await client.put(f"/api/v1/users/{customer.id}", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert await user_row(pool, customer.id) == before


# Password-reset tokens -----------------------------------------------------------------------------------------------


async def reset_token(app: Litestar, account: Account) -> str:
    """A password-reset token of ``account``, as the reset email would carry it."""
    token = await auth_service.request_password_reset(app.state.auth, SYSTEM, email=account.user.email)
    assert token is not None
    return token


async def confirm_reset(client: httpx.AsyncClient, token: str) -> httpx.Response:
    body = {"token": token, "new_password": "taken over by the mailbox"}
    return await client.post("/api/v1/auth/password-reset/confirm", json=body)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param([{"is_active": False}, {"is_active": True}], id="deactivated-then-reactivated"),
        pytest.param([{"role": "TRAVEL_AGENT"}], id="role-changed"),
    ],
)
async def test_reset_tokens_issued_before_an_admin_change_stop_working(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, admin: Account, customer: Account,
    changes: list[dict],
) -> None:  # fmt: skip
    token = await reset_token(app, customer)
    for body in changes:
        response = await client.put(f"/api/v1/users/{customer.id}", json=body, headers=admin.headers)
        assert response.status_code == 200, response.text
    before = await user_row(pool, customer.id)
    assert (await confirm_reset(client, token)).status_code == 401
    assert (await user_row(pool, customer.id))["password_hash"] == before["password_hash"]
    login = await client.post("/api/v1/auth/login", json={"email": customer.user.email, "password": PASSWORD})
    assert login.status_code == 200
    # A token asked for after the change works.
    assert (await confirm_reset(client, await reset_token(app, customer))).status_code == 204


async def test_a_reset_token_of_a_deleted_user_does_not_work(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, admin: Account, customer: Account
) -> None:
    token = await reset_token(app, customer)
    assert (await client.delete(f"/api/v1/users/{customer.id}", headers=admin.headers)).status_code == 204
    before = await user_row(pool, customer.id)
    assert (await confirm_reset(client, token)).status_code == 401
    assert await user_row(pool, customer.id) == before


@pytest.mark.parametrize("state", ["is_active = false", "deleted_at = now()"])
async def test_confirming_a_reset_rechecks_that_the_account_is_live(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, customer: Account, state: str
) -> None:
    token = await reset_token(app, customer)
    # Written behind the service's back (as a change racing the confirmation would be), so no token is revoked:
    # the confirmation itself must look at the account.
    async with pool.connection() as conn:
        await conn.execute(f"UPDATE users SET {state} WHERE id = %s", (customer.id,))
    before = await user_row(pool, customer.id)
    assert (await confirm_reset(client, token)).status_code == 401
    assert await user_row(pool, customer.id) == before
    assert await audit_rows(pool, "auth.password_reset_completed") == []


async def test_a_reset_racing_a_deactivation_never_leaves_the_account_usable(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, admin: Account, make_account: MakeAccount
) -> None:
    accounts = [await make_account(Role.CUSTOMER) for _ in range(6)]
    tokens = [await reset_token(app, account) for account in accounts]
    responses = await asyncio.gather(
        *(confirm_reset(client, token) for token in tokens),
        *(client.put(f"/api/v1/users/{a.id}", json={"is_active": False}, headers=admin.headers) for a in accounts),
    )
    confirmations, deactivations = responses[: len(accounts)], responses[len(accounts) :]
    # Each pair took turns on the user's row: no deadlock (409) and no error, whichever went first.
    assert {r.status_code for r in deactivations} == {200}
    assert {r.status_code for r in confirmations} <= {204, 401}
    async with pool.connection() as conn:
        live = await (
            await conn.execute(
                """SELECT
                       (SELECT count(*) FROM sessions WHERE user_id = ANY(%(ids)s) AND revoked_at IS NULL) AS sessions,
                       (SELECT count(*) FROM password_reset_tokens WHERE user_id = ANY(%(ids)s) AND used_at IS NULL)
                           AS resets""",
                {"ids": [a.user.id for a in accounts]},
            )
        ).fetchone()
    assert live == {"sessions": 0, "resets": 0}
    # A reset that went through did so while the account was still active, never after its deactivation.
    completed = {row["entity_id"]: row["id"] for row in await audit_rows(pool, "auth.password_reset_completed")}
    deactivated = {row["entity_id"]: row["id"] for row in await audit_rows(pool, "user.deactivated")}
    for account, confirmation in zip(accounts, confirmations, strict=True):
        assert (account.id in completed) == (confirmation.status_code == 204)
        if account.id in completed:
            assert completed[account.id] < deactivated[account.id]


async def test_a_completed_reset_spends_the_users_other_reset_tokens(
    client: httpx.AsyncClient, app: Litestar, customer: Account
) -> None:
    first, second = await reset_token(app, customer), await reset_token(app, customer)
    assert (await confirm_reset(client, second)).status_code == 204
    assert (await confirm_reset(client, first)).status_code == 401


# Delete -------------------------------------------------------------------------------------------------------------


async def test_delete_anonymises_and_ends_access(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, make_account: MakeAccount
) -> None:
    victim = await make_account(Role.CUSTOMER, email="dana@example.com", full_name="Dana Doe")
    await client.put(f"/api/v1/users/{victim.id}", json={"phone": "+1 555 0199"}, headers=victim.headers)
    response = await client.delete(f"/api/v1/users/{victim.id}", headers=admin.headers)
    assert response.status_code == 204
    assert response.content == b""

    assert (await client.get("/api/v1/auth/me", headers=victim.headers)).status_code == 401
    row = await user_row(pool, victim.id)
    assert row["deleted_at"] is not None
    assert row["is_active"] is False
    assert row["email"] == f"deleted-{victim.id}@deleted.invalid"
    assert (row["full_name"], row["phone"]) == ("Deleted user", None)
    assert not row["password_hash"].startswith("$argon2")
    login = await client.post("/api/v1/auth/login", json={"email": "dana@example.com", "password": PASSWORD})
    assert login.status_code == 401
    async with pool.connection() as conn:
        live = await (
            await conn.execute(
                "SELECT count(*) AS n FROM sessions WHERE user_id = %s AND revoked_at IS NULL", (victim.id,)
            )
        ).fetchone()
    assert live == {"n": 0}

    [deleted] = await audit_rows(pool, "user.deleted")
    assert (deleted["entity_id"], deleted["actor_id"]) == (victim.id, admin.user.id)
    assert deleted["before"]["role"] == "CUSTOMER"
    assert "dana" not in str(deleted).lower()
    # The address is free again.
    again = await client.post(
        "/api/v1/users",
        json={"email": "dana@example.com", "password": PASSWORD, "full_name": "Dana Again", "role": "CUSTOMER"},
        headers=admin.headers,
    )
    assert again.status_code == 201


async def test_the_last_active_admin_cannot_remove_itself(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, make_account: MakeAccount
) -> None:
    url = f"/api/v1/users/{admin.id}"
    for method, body in [("DELETE", None), ("PUT", {"role": "CUSTOMER"}), ("PUT", {"is_active": False})]:
        response = await client.request(method, url, json=body, headers=admin.headers)
        assert response.status_code == 409, (method, body)
        assert response.json()["code"] == "CONFLICT"
    row = await user_row(pool, admin.id)
    assert (row["role"], row["is_active"], row["deleted_at"]) == ("ADMIN", True, None)

    # With a second admin around, either may remove the other; the remaining one may not be removed.
    second = await make_account(Role.ADMIN)
    assert (await client.delete(url, headers=second.headers)).status_code == 204
    assert (
        await client.put(f"/api/v1/users/{second.id}", json={"role": "CUSTOMER"}, headers=second.headers)
    ).status_code == 409


@pytest.mark.parametrize(("method", "body"), [("DELETE", None), ("PUT", {"is_active": False})])
async def test_an_admin_cannot_delete_or_deactivate_their_own_account(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, make_account: MakeAccount,
    method: str, body: dict | None,
) -> None:  # fmt: skip
    await make_account(Role.ADMIN)  # not the last admin: the refusal is about acting on oneself
    before = await user_row(pool, admin.id)
    response = await client.request(method, f"/api/v1/users/{admin.id}", json=body, headers=admin.headers)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "CONFLICT"
    assert "your own account" in response.json()["detail"]
    assert await user_row(pool, admin.id) == before
    assert (await client.get("/api/v1/auth/me", headers=admin.headers)).status_code == 200


async def test_two_admins_demoting_each_other_at_once_leave_one(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, make_account: MakeAccount
) -> None:
    second = await make_account(Role.ADMIN)
    first_response, second_response = await asyncio.gather(
        client.put(f"/api/v1/users/{second.id}", json={"role": "CUSTOMER"}, headers=admin.headers),
        client.put(f"/api/v1/users/{admin.id}", json={"role": "CUSTOMER"}, headers=second.headers),
    )
    statuses = sorted([first_response.status_code, second_response.status_code])
    # The loser finds itself the last admin (409) or, if it authenticated after losing, no longer an admin (404).
    assert statuses in ([200, 404], [200, 409]), statuses
    async with pool.connection() as conn:
        admins = await (
            await conn.execute(
                "SELECT count(*) AS n FROM users WHERE role = 'ADMIN' AND is_active AND deleted_at IS NULL"
            )
        ).fetchone()
    assert admins == {"n": 1}
