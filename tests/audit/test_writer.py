"""The audit writer: rows commit with their change, secrets never land, personal data is kept apart, the catalogue
is enforced, rate-limit storms are written in aggregate, and the chain written before migration 0011 still
verifies and continues.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core_api.app import create_app
from core_api.audit._chain import verify_chain
from core_api.audit._personal import ERASED, REDACTED
from core_api.audit.schemas import SECURITY_EVENTS, EventCategory, EventType
from core_api.audit.sealer import seal_pending
from core_api.audit.service import SYSTEM, Actor, record
from core_api.settings import Settings
from core_api.storage.db import transaction
from core_api.storage.migrations import MIGRATIONS_DIR, migrate
from tests.audit.conftest import chain_order, tamper
from tests.support.asgi import serve_in_loop
from tests.support.audit import audit_rows


async def test_secrets_are_redacted_and_personal_data_kept_apart(pool: AsyncConnectionPool) -> None:
    actor = Actor(id=uuid.uuid4(), role="ADMIN", ip="203.0.113.9", user_agent="pytest")
    async with transaction(pool) as tx:
        await record(
            tx,
            EventType.USER_UPDATED,
            actor,
            ("user", actor.id),
            before={"full_name": "Ann Old", "password_hash": "$argon2id$x"},
            after={"full_name": "Ann New", "profile": {"refresh_token": "abc", "phone": "555-0100", "plan": "gold"}},
        )
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT * FROM audit_logs")).fetchone()
        personal = await (await conn.execute("SELECT * FROM audit_personal_data")).fetchone()
    assert row["before"]["password_hash"] == REDACTED
    assert row["after"]["profile"]["refresh_token"] == REDACTED
    assert row["after"]["profile"]["plan"] == "gold"
    assert row["after"]["full_name"].startswith("pii:")
    assert (row["ip"], row["user_agent"]) == (None, None)
    assert (str(personal["ip"]), personal["user_agent"], personal["subjects"]) == ("203.0.113.9", "pytest", [actor.id])
    assert sorted(personal["values"].values()) == ["555-0100", "Ann New", "Ann Old"]
    [shown] = await audit_rows(pool, EventType.USER_UPDATED)
    assert shown["after"] == {"full_name": "Ann New", "profile": {"refresh_token": REDACTED, "phone": "555-0100",
                                                                  "plan": "gold"}}  # fmt: skip
    assert (shown["ip"], shown["user_agent"]) == ("203.0.113.9", "pytest")

    async with pool.connection() as conn:
        await conn.execute("DELETE FROM audit_personal_data")
    [erased] = await audit_rows(pool, EventType.USER_UPDATED)
    assert erased["after"]["full_name"] == erased["before"]["full_name"] == ERASED
    assert erased["ip"] is None


async def test_a_row_without_personal_data_is_one_insert(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        await record(tx, EventType.BOOKING_EXPIRED, SYSTEM, ("booking", "b1"), after={"status": "EXPIRED"})
    async with pool.connection() as conn:
        counts = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM audit_logs) AS rows,"
                " (SELECT count(*) FROM audit_personal_data) AS personal"
            )
        ).fetchone()
    assert (counts["rows"], counts["personal"]) == (1, 0)


@pytest.mark.parametrize(
    ("event_type", "entity", "message"),
    [
        ("booking.exploded", None, "catalogue"),
        ("BookingCreated", None, "catalogue"),
        (EventType.BOOKING_CREATED, ("Booking", "1"), "entity type"),
    ],
)
async def test_what_is_not_in_the_catalogue_is_refused(
    pool: AsyncConnectionPool, event_type: str, entity: tuple[str, str] | None, message: str
) -> None:
    async with transaction(pool) as tx:
        with pytest.raises(ValueError, match=message):
            await record(tx, event_type, SYSTEM, entity)


def test_the_catalogue_covers_every_domain_with_at_least_thirty_events() -> None:
    assert len(EventType) >= 30
    assert {event.category for event in EventType} >= set(EventCategory) - {EventCategory.NOTIFICATIONS}
    assert all(event.value == event.value.lower() and event.value.count(".") == 1 for event in EventType)
    assert all(event in EventType for event in SECURITY_EVENTS)
    # String call sites keep working: a member is its string.
    assert EventType("booking.created") is EventType.BOOKING_CREATED
    assert EventType.BOOKING_CREATED == "booking.created"


async def test_record_outside_a_transaction_is_refused(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        with pytest.raises(RuntimeError, match="inside the caller's transaction"):
            await record(conn, EventType.AUTH_LOGIN, SYSTEM)


async def test_a_storm_of_rate_limited_requests_is_written_as_one_row_per_client(
    settings: Settings, pool: AsyncConnectionPool
) -> None:
    limited = msgspec_replace(settings, rate_limits="3/minute")
    app = create_app(limited)
    async with serve_in_loop(app) as client:
        statuses = [(await client.get("/api/v1/flights/airlines")).status_code for _ in range(40)]
        assert statuses.count(429) == 37
        async with pool.connection() as conn:
            before = await (await conn.execute("SELECT count(*) AS n FROM audit_logs")).fetchone()
        assert before["n"] == 0, "no write per refused request"
        assert await app.state.rate_limit_audit.flush() == 1
    [row] = await audit_rows(pool, EventType.SECURITY_RATE_LIMITED)
    assert row["metadata"]["refused"] == 37
    assert row["metadata"]["paths"] == {"GET /api/v1/flights/airlines": 37}
    assert row["metadata"]["tier"] == "3/minute"
    assert row["ip"] == "127.0.0.1"


def msgspec_replace(settings: Settings, **changes: str) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


# -- The chain written before migration 0011 ---------------------------------------------------------------------

_OLD_WRITE = [
    "UPDATE audit_chain_head SET seq = seq + 1 WHERE id",
    """
    WITH event AS (
        SELECT head.seq AS id, previous.hash AS prev_hash, clock_timestamp() AS occurred_at,
               %(event_type)s::text AS event_type, %(ip)s::inet AS ip, %(after)s::jsonb AS after
        FROM audit_chain_head AS head LEFT JOIN audit_logs AS previous ON previous.id = head.seq - 1
    )
    INSERT INTO audit_logs (id, occurred_at, event_type, ip, after, metadata, prev_hash, hash)
    SELECT id, occurred_at, event_type, ip, after, '{}', prev_hash,
           audit_row_hash(prev_hash, id, occurred_at, event_type, NULL, NULL, ip, NULL, NULL, NULL, NULL, NULL, after,
                          '{}')
    FROM event
    """,
]


@pytest.fixture
async def legacy_database(postgres_url: str, tmp_path: Path) -> str:
    """A database migrated up to 0010, holding 25 rows of the old chain whose first row retention removed."""
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < 11:
            shutil.copy(path, earlier / path.name)
    name = f"fd_legacy_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(postgres_url, dbname=name)
    await migrate(url, earlier)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for n in range(26):
            async with conn.transaction():
                await conn.execute(_OLD_WRITE[0])
                await conn.execute(
                    _OLD_WRITE[1], {"event_type": "auth.login", "ip": "192.0.2.1", "after": f'{{"n": {n}}}'}
                )
        await conn.execute("DELETE FROM audit_logs WHERE id = 1")  # the old retention cut the oldest row
        await conn.commit()
    yield url
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_the_old_chain_still_verifies_after_the_migration_and_new_rows_continue_it(legacy_database: str):
    await migrate(legacy_database)
    async with await psycopg.AsyncConnection.connect(legacy_database, row_factory=dict_row) as conn:
        status = await verify_chain(conn)
        assert status.valid, status
        assert (status.checked, status.checkpoint_position, status.sealed_through) == (25, 1, 26)
        old_last = (await (await conn.execute("SELECT hash FROM audit_logs WHERE id = 26")).fetchone())["hash"]
        async with conn.transaction():
            await record(conn, EventType.AUTH_LOGIN, SYSTEM, ("user", "u"))
    pool = AsyncConnectionPool(legacy_database, kwargs={"row_factory": dict_row, "autocommit": True}, open=False)
    await pool.open()
    try:
        assert await seal_pending(pool) == 1
    finally:
        await pool.close()
    async with await psycopg.AsyncConnection.connect(legacy_database, row_factory=dict_row) as conn:
        new_seal = await (await conn.execute("SELECT * FROM audit_seals ORDER BY seal_no DESC LIMIT 1")).fetchone()
        assert new_seal["prev_hash"] == old_last
        assert new_seal["first_position"] == 27
        assert new_seal["audit_ids"] == [27]
        status = await verify_chain(conn)
        assert (status.valid, status.checked) == (True, 26)
        await tamper(conn, "audit_logs", "UPDATE audit_logs SET after = '{\"n\": 99}' WHERE id = 13")
        await conn.commit()
        broken = await verify_chain(conn)
    assert (broken.valid, broken.first_broken_id, broken.reason) == (False, 13, "hash mismatch")
    assert await chain_order_of(legacy_database) == list(range(2, 28))


async def chain_order_of(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        return await chain_order(conn)


async def test_a_client_over_http_sees_its_writes_audited(client: httpx.AsyncClient, pool: AsyncConnectionPool):
    response = await client.post(
        "/api/v1/auth/register", json={"email": "new@example.com", "password": "long enough pw", "full_name": "N"}
    )
    assert response.status_code == 201
    [row] = await audit_rows(pool, EventType.AUTH_REGISTER)
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["sealed"] is False
    await seal_pending(pool)
    [row] = await audit_rows(pool, EventType.AUTH_REGISTER)
    assert row["sealed"] is True
