"""Register, log in, refresh, log out and reset passwords through the API, including every way a token fails."""

import asyncio
import time
import uuid

import httpx
import jwt
import msgspec
import psycopg
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.audit.service import SYSTEM
from core_api.auth import service
from core_api.settings import Settings
from tests.auth.conftest import PASSWORD, Register, bearer
from tests.conftest import TEST_JWT_KEYS

KID, SECRET = TEST_JWT_KEYS.split(":", 1)


async def audit_events(pool: AsyncConnectionPool) -> list[str]:
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT event_type FROM audit_logs ORDER BY id")).fetchall()
    return [row["event_type"] for row in rows]


async def test_register_returns_a_logged_in_customer(client: httpx.AsyncClient, register: Register) -> None:
    body = await register("Bob@Example.com")
    assert body["user"]["role"] == "CUSTOMER"
    assert body["user"]["email"] == "Bob@example.com"
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 900
    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == body["user"]["id"]


async def test_register_cannot_choose_a_role(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "eve@example.com", "password": PASSWORD, "full_name": "Eve", "role": "ADMIN"},
    )
    assert response.status_code == 422
    assert "role" in response.json()["detail"]
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) AS n FROM users")).fetchone() == {"n": 0}


async def test_duplicate_registration_is_a_conflict(client: httpx.AsyncClient, register: Register) -> None:
    await register("dup@example.com")
    response = await client.post(
        "/api/v1/auth/register", json={"email": "DUP@example.com", "password": PASSWORD, "full_name": "Dup"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "CONFLICT"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "full_name": "X"}, "email"),
        ({"email": "a@example.com", "password": "short", "full_name": "X"}, "password"),
        ({"email": "a@example.com", "password": "p" * 10_000, "full_name": "X"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "full_name": ""}, "full_name"),
        ({"email": "a@example.com", "password": 12345678, "full_name": "X"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD}, "full_name"),
        ({"email": "a@example.com" + "x" * 400, "password": PASSWORD, "full_name": "X"}, "email"),
    ],
)
async def test_bad_registration_input_names_the_field(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, body: dict, field: str
) -> None:
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "VALIDATION_ERROR"
    assert field in [error["field"] for error in problem["errors"]]
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) AS n FROM users")).fetchone() == {"n": 0}


async def test_login_and_me(client: httpx.AsyncClient, customer: dict, pool: AsyncConnectionPool) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "ANN@example.com", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert (await client.get("/api/v1/auth/me", headers=bearer(token))).json()["email"] == "ann@example.com"
    assert "auth.login" in await audit_events(pool)


async def test_wrong_password_and_unknown_email_look_the_same(client: httpx.AsyncClient, customer: dict) -> None:
    async def attempt(email: str) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"})
        return time.perf_counter() - started, response

    known = [await attempt("ann@example.com") for _ in range(4)]
    unknown = [await attempt(f"nobody{i}@example.com") for i in range(4)]
    assert {r.status_code for _, r in known + unknown} == {401}
    assert {r.json()["detail"] for _, r in known + unknown} == {"Invalid email or password."}
    # The fastest of each: a busy machine only ever adds time, so the minimum is the cost itself.
    known_time = min(t for t, _ in known)
    unknown_time = min(t for t, _ in unknown)
    # Both pay for one argon2 verification; neither answers in a fraction of the other's time.
    assert 0.5 < known_time / unknown_time < 2.0


async def test_missing_and_malformed_authorization(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/auth/me")).status_code == 401
    response = await client.get("/api/v1/auth/me", headers={"Authorization": "Basic YWxhZGRpbjpvcGVu"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "bearer" in response.headers["www-authenticate"].lower()


def forge(claims: dict, *, key: str = SECRET, kid: str = KID, alg: str = "HS256", typ: str = "at+jwt") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": typ})


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_tokens_that_must_not_work(client: httpx.AsyncClient, customer: dict) -> None:
    good = customer["access_token"]
    claims = claims_of(good)
    now = int(time.time())
    header, payload, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    unsigned = jwt.encode({**claims, "role": "ADMIN"}, None, algorithm="none", headers={"kid": KID, "typ": "at+jwt"})
    bad_tokens = {
        "tampered signature": f"{header}.{payload}.{flipped}",
        "tampered payload": f"{header}.{forge({**claims, 'role': 'ADMIN'}, key='x' * 40).split('.')[1]}.{signature}",
        "alg none": unsigned,
        "expired": forge({**claims, "iat": now - 1000, "exp": now - 10}),
        "wrong audience": forge({**claims, "aud": "someone-else"}),
        "wrong issuer": forge({**claims, "iss": "evil"}),
        "unknown key id": forge(claims, kid="other"),
        "not an access token type": forge(claims, typ="JWT"),
        "missing jti": forge({k: v for k, v in claims.items() if k != "jti"}),
        "refresh token as access token": customer["refresh_token"],
        "garbage": "not.a.jwt",
    }
    for name, token in bad_tokens.items():
        response = await client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.json()["code"] == "UNAUTHORIZED", name
    assert (await client.get("/api/v1/auth/me", headers=bearer(good))).status_code == 200


async def test_a_token_naming_a_session_that_is_not_its_users_open_one_is_refused(
    client: httpx.AsyncClient, register: Register, pool: AsyncConnectionPool
) -> None:
    ann, bob = await register("ann@example.com"), await register("bob@example.com")
    claims = claims_of(ann["access_token"])
    forged = {
        # Signed with a real key: a leaked key, or a token minted before its session row was written, must still
        # be refused unless the session it names is open and belongs to its user.
        "no such session": forge({**claims, "sid": str(uuid.uuid4()), "jti": str(uuid.uuid4())}),
        "another user's session": forge({**claims, "sid": claims_of(bob["access_token"])["sid"]}),
    }
    for name, token in forged.items():
        response = await client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.json()["code"] == "UNAUTHORIZED", name
    # A session past its absolute lifetime is over too, even while the access token has minutes left.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE family_id = %s", (claims["sid"],)
        )
    assert (await client.get("/api/v1/auth/me", headers=bearer(ann["access_token"]))).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers=bearer(bob["access_token"]))).status_code == 200


async def test_token_of_a_deleted_or_deactivated_user_stops_working(
    client: httpx.AsyncClient, register: Register, pool: AsyncConnectionPool
) -> None:
    deleted, deactivated = await register("del@example.com"), await register("off@example.com")
    async with pool.connection() as conn:
        await conn.execute("UPDATE users SET deleted_at = now() WHERE id = %s", (deleted["user"]["id"],))
        await conn.execute("UPDATE users SET is_active = false WHERE id = %s", (deactivated["user"]["id"],))
    for body in (deleted, deactivated):
        assert (await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))).status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, customer: dict, pool: AsyncConnectionPool
) -> None:
    first = customer["refresh_token"]
    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first
    assert (await client.get("/api/v1/auth/me", headers=bearer(second["access_token"]))).status_code == 200

    # The first token is presented again: someone holds a copy. The whole family ends.
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    ).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers=bearer(second["access_token"]))).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers=bearer(customer["access_token"]))).status_code == 401
    events = await audit_events(pool)
    assert "auth.refresh" in events
    assert "auth.refresh_reuse_detected" in events


async def test_concurrent_refreshes_with_one_token_issue_at_most_one_pair(
    client: httpx.AsyncClient, customer: dict
) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]}) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]


async def test_other_sessions_survive_a_reuse_in_one_session(client: httpx.AsyncClient, customer: dict) -> None:
    other = (await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})).json()
    await client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    assert (await client.get("/api/v1/auth/me", headers=bearer(other["access_token"]))).status_code == 200


async def test_refresh_family_has_an_absolute_lifetime(
    client: httpx.AsyncClient, customer: dict, pool: AsyncConnectionPool
) -> None:
    async with pool.connection() as conn:
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    assert response.status_code == 401


async def test_logout_blacklists_the_token_and_ends_the_session(
    client: httpx.AsyncClient, customer: dict, pool: AsyncConnectionPool
) -> None:
    headers = bearer(customer["access_token"])
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    assert refresh.status_code == 401
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT jti, expires_at > now() AS live FROM blacklisted_tokens")).fetchone()
    assert row["jti"] == uuid.UUID(claims_of(customer["access_token"])["jti"])
    assert row["live"]
    assert "auth.logout" in await audit_events(pool)


async def test_lockout_after_five_failures_includes_the_right_password(
    client: httpx.AsyncClient, customer: dict, pool: AsyncConnectionPool
) -> None:
    for _ in range(5):
        wrong = await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": "nope nope"})
        assert wrong.status_code == 401
    locked = await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["code"] == "RATE_LIMITED"
    assert 0 < int(locked.headers["retry-after"]) <= 900
    other = await client.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "whatever1"})
    assert other.status_code == 401
    events = await audit_events(pool)
    assert events.count("auth.lockout") == 1
    assert events.count("auth.login_failed") == 6


async def test_lockout_expires(settings: Settings, database_url: str) -> None:
    from core_api.app import create_app
    from tests.support.asgi import serve_in_loop

    short = msgspec.structs.replace(settings, auth=msgspec.structs.replace(settings.auth, login_window_seconds=1))
    async with serve_in_loop(create_app(short)) as client:
        await client.post(
            "/api/v1/auth/register", json={"email": "lock@example.com", "password": PASSWORD, "full_name": "L"}
        )
        for _ in range(5):
            await client.post("/api/v1/auth/login", json={"email": "lock@example.com", "password": "bad password"})
        login = {"email": "lock@example.com", "password": PASSWORD}
        assert (await client.post("/api/v1/auth/login", json=login)).status_code == 429
        await asyncio.sleep(1.2)
        assert (await client.post("/api/v1/auth/login", json=login)).status_code == 200


async def test_password_reset_flow(
    client: httpx.AsyncClient, app: Litestar, customer: dict, pool: AsyncConnectionPool
) -> None:
    unknown = await client.post("/api/v1/auth/password-reset/request", json={"email": "ghost@example.com"})
    known = await client.post("/api/v1/auth/password-reset/request", json={"email": "ann@example.com"})
    assert unknown.status_code == known.status_code == 202
    assert unknown.content == known.content

    context: service.AuthContext = app.state.auth
    token = await service.request_password_reset(context, SYSTEM, email="ann@example.com")
    assert token
    # Its outbox event (kept, and published on Redis) carries it sealed: only the mail's rendering opens it.
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT payload::text AS stored FROM outbox_events"
                " WHERE event_type = 'auth.password_reset_requested' ORDER BY created_at DESC LIMIT 1"
            )
        ).fetchone()
    assert row is not None
    stored = row["stored"]
    assert token not in stored
    sealed = msgspec.json.decode(stored)["sealed_token"]
    assert context.cipher.open_text(sealed, context=service.RESET_TOKEN_SEAL) == token
    short = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "x"})
    assert short.status_code == 422
    confirm = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "a brand new secret"}
    )
    assert confirm.status_code == 204
    again = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "another new secret"}
    )
    assert again.status_code == 401
    old_login = await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert old_login.status_code == 401
    new_login = {"email": "ann@example.com", "password": "a brand new secret"}
    assert (await client.post("/api/v1/auth/login", json=new_login)).status_code == 200
    # Sessions from before the reset are over.
    assert (await client.get("/api/v1/auth/me", headers=bearer(customer["access_token"]))).status_code == 401
    events = await audit_events(pool)
    assert "auth.password_reset_requested" in events
    assert "auth.password_reset_completed" in events


async def test_login_works_when_redis_is_down(settings: Settings, redis_url: str) -> None:
    from core_api.app import create_app
    from tests.support.asgi import serve_in_loop
    from tests.support.fault_proxy import FaultProxy

    async with FaultProxy.for_redis(redis_url) as proxy:
        app = create_app(settings, redis_url=proxy.rewrite_redis_url(redis_url))
        async with serve_in_loop(app) as client:
            proxy.refuse()
            body = {"email": "nored@example.com", "password": PASSWORD, "full_name": "No Redis"}
            assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
            login = await client.post("/api/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
            assert login.status_code == 200
            assert (
                await client.get("/api/v1/auth/me", headers=bearer(login.json()["access_token"]))
            ).status_code == 200


async def test_audit_rows_carry_ip_and_user_agent(client: httpx.AsyncClient, database_url: str) -> None:
    await client.post(
        "/api/v1/auth/register",
        json={"email": "ua@example.com", "password": PASSWORD, "full_name": "UA"},
        headers={"User-Agent": "flightdesk-tests/1.0"},
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (
            await conn.execute(
                # Kept apart from the chained row, erasable (see core_api.audit._personal).
                "SELECT host(p.ip), p.user_agent FROM audit_logs AS a"
                " JOIN audit_personal_data AS p ON p.audit_id = a.id WHERE a.event_type = 'auth.register'"
            )
        ).fetchone()
    assert row == ("127.0.0.1", "flightdesk-tests/1.0")


async def test_a_token_that_worked_stops_working_when_it_expires(client: httpx.AsyncClient, customer: dict) -> None:
    # Each process remembers the tokens it verified; a remembered one must still die at its exp, to the second.
    claims = claims_of(customer["access_token"])
    exp = int(time.time()) + 2
    expiring = forge({**claims, "exp": exp})
    assert (await client.get("/api/v1/auth/me", headers=bearer(expiring))).status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=bearer(expiring))).status_code == 200
    await asyncio.sleep(exp - time.time() + 0.05)
    response = await client.get("/api/v1/auth/me", headers=bearer(expiring))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
