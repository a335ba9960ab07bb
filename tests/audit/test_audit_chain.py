"""The audit writer: rows commit with their change, secrets never land, and the hash chain holds under load."""

import asyncio
import itertools
import uuid

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.audit.service import REDACTED, SYSTEM, Actor, record, verify_chain
from core_api.storage.db import transaction


async def test_record_writes_in_the_callers_transaction(pool: AsyncConnectionPool) -> None:
    actor = Actor(id=uuid.uuid4(), role="ADMIN", ip="203.0.113.9", user_agent="pytest")
    async with transaction(pool) as tx:
        position = await record(
            tx, "user.updated", actor, ("user", actor.id), before={"full_name": "A"}, after={"full_name": "B"}
        )

    async def delete_then_fail() -> None:
        async with transaction(pool) as tx:
            await record(tx, "user.deleted", actor, ("user", actor.id))
            raise RuntimeError("rolled back on purpose")

    with pytest.raises(RuntimeError, match="rolled back on purpose"):
        await delete_then_fail()
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT * FROM audit_logs ORDER BY id")).fetchall()
    assert [row["event_type"] for row in rows] == ["user.updated"]
    assert rows[0]["id"] == position
    assert rows[0]["actor_id"] == actor.id
    assert str(rows[0]["ip"]) == "203.0.113.9"
    assert rows[0]["after"] == {"full_name": "B"}


async def test_secrets_are_redacted(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        await record(
            tx,
            "auth.password_changed",
            SYSTEM,
            ("user", "u1"),
            after={"password_hash": "$argon2id$x", "profile": {"refresh_token": "abc", "name": "Ann"}},
        )
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT after FROM audit_logs")).fetchone()
    assert row["after"] == {"password_hash": REDACTED, "profile": {"refresh_token": REDACTED, "name": "Ann"}}


async def test_malformed_event_type_is_refused(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        with pytest.raises(ValueError, match=r"domain\.action"):
            await record(tx, "BookingCreated", SYSTEM)


async def test_chain_stays_linear_under_concurrent_writers(pool: AsyncConnectionPool, database_url: str) -> None:
    writers, per_writer = 16, 10

    async def writer(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            for i in range(per_writer):
                async with conn.transaction():
                    await record(conn, "booking.created", SYSTEM, ("booking", f"{n}-{i}"), after={"n": n, "i": i})
                    # Some writers roll back after taking a position: the chain must not keep a gap.
                    if i % 4 == 3:
                        raise psycopg.Rollback()

    await asyncio.gather(*(writer(n) for n in range(writers)))
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id, prev_hash, hash FROM audit_logs ORDER BY id")).fetchall()
        status = await verify_chain(conn)
    committed = writers * (per_writer - per_writer // 4)
    assert [row["id"] for row in rows] == list(range(1, committed + 1))
    assert all(row["prev_hash"] == previous["hash"] for previous, row in itertools.pairwise(rows))
    assert status.valid
    assert status.checked == committed


async def test_tampering_is_detected(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        for i in range(5):
            await record(tx, "payment.succeeded", SYSTEM, ("payment", str(i)), after={"amount": 1000 + i})
    async with pool.connection() as conn:
        assert (await verify_chain(conn)).valid
        # Someone with database access edits a row behind the application's back.
        await conn.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update")
        await conn.execute("UPDATE audit_logs SET after = '{\"amount\": 1}' WHERE id = 3")
        status = await verify_chain(conn)
    assert not status.valid
    assert status.first_broken_id == 3


async def test_rows_cannot_be_updated_through_sql(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        await record(tx, "system.started", SYSTEM)
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute("UPDATE audit_logs SET event_type = 'system.stopped'")


async def test_retention_keeps_the_rest_of_the_chain_verifiable(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        for i in range(6):
            await record(tx, "auth.login", SYSTEM, ("user", str(i)))
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM audit_logs WHERE id <= 2")
        status = await verify_chain(conn)
    assert status.valid
    assert status.checked == 4
