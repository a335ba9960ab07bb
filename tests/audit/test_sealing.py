"""The sealer: committed rows are chained exactly once, in the order of their writers' transactions, however the
writers interleave and commit, and tampering with a sealed row is found and named.
"""

from __future__ import annotations

import asyncio
import random

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core_api.audit._chain import verify_chain
from core_api.audit.schemas import EventType
from core_api.audit.sealer import seal_once, seal_pending
from core_api.audit.service import SYSTEM, record
from core_api.storage.db import transaction
from tests.audit.conftest import chain_order, tamper


async def _connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row)


async def _ids_by_entity(pool: AsyncConnectionPool) -> dict[str, int]:
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT entity_id, id FROM audit_logs")).fetchall()
    return {row["entity_id"]: row["id"] for row in rows}


async def test_a_row_waits_for_an_open_transaction_that_sorts_before_it(pool: AsyncConnectionPool, database_url: str):
    early = await _connect(database_url)
    late = await _connect(database_url)
    try:
        await early.execute("BEGIN")
        await early.execute("SELECT pg_current_xact_id()")  # the early writer's place in the order is taken now
        await late.execute("BEGIN")
        await record(late, EventType.BOOKING_CREATED, SYSTEM, ("booking", "late"))
        await record(early, EventType.BOOKING_CREATED, SYSTEM, ("booking", "early"))  # a higher id, committed last
        await late.commit()

        assert await seal_pending(pool) == 0, "the late row sorts after the open transaction's, so it must wait"
        await early.commit()
        assert await seal_pending(pool) == 2
    finally:
        await early.close()
        await late.close()
    ids = await _ids_by_entity(pool)
    assert ids["early"] > ids["late"]
    async with pool.connection() as conn:
        assert await chain_order(conn) == [ids["early"], ids["late"]]
        assert (await verify_chain(conn)).valid


async def test_rows_of_a_rolled_back_transaction_never_appear(pool: AsyncConnectionPool) -> None:
    async with transaction(pool) as tx:
        await record(tx, EventType.USER_UPDATED, SYSTEM, ("user", "kept"))

    async def fail() -> None:
        async with transaction(pool) as tx:
            await record(tx, EventType.USER_DELETED, SYSTEM, ("user", "gone"))
            raise RuntimeError("rolled back on purpose")

    with pytest.raises(RuntimeError):
        await fail()
    await seal_pending(pool)
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id, event_type FROM audit_logs")).fetchall()
        order = await chain_order(conn)
        status = await verify_chain(conn)
    assert [row["event_type"] for row in rows] == ["user.updated"]
    assert order == [rows[0]["id"]]
    assert status.valid
    assert status.checked == 1
    assert status.unsealed == 0


async def test_a_long_transaction_in_another_database_does_not_hold_sealing_back(
    pool: AsyncConnectionPool, postgres_url: str
) -> None:
    elsewhere = await _connect(postgres_url)
    try:
        await elsewhere.execute("BEGIN")
        await elsewhere.execute("SELECT pg_current_xact_id()")  # older than every row below, in another database
        async with transaction(pool) as tx:
            await record(tx, EventType.AUTH_LOGIN, SYSTEM, ("user", "someone"))
        assert await seal_pending(pool) == 1
    finally:
        await elsewhere.close()


async def test_concurrent_writers_and_sealers_chain_every_committed_row_once_in_order(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    writers, per_writer = 12, 8
    rng = random.Random(11)
    delays = [[rng.random() * 0.02 for _ in range(per_writer)] for _ in range(writers)]
    done = asyncio.Event()

    async def writer(n: int) -> None:
        async with await _connect(database_url) as conn:
            for i in range(per_writer):
                async with conn.transaction():
                    if i % 3 == 0:
                        await conn.execute("SELECT pg_current_xact_id()")  # take a place early, write late
                    await asyncio.sleep(delays[n][i])
                    await record(conn, EventType.BOOKING_UPDATED, SYSTEM, ("booking", f"{n}-{i}"), after={"i": i})
                    await asyncio.sleep(delays[n][-i - 1])  # held open after writing
                    if i % 4 == 3:
                        raise psycopg.Rollback()

    async def sealer() -> None:
        while not done.is_set():
            await seal_once(pool, max_rows=7)  # small batches: many seals, and sealers racing for the lock
            await asyncio.sleep(0.005)

    sealers = [asyncio.create_task(sealer()) for _ in range(3)]
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    await asyncio.gather(*sealers)
    await seal_pending(pool)

    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id, xact_id::text::bigint AS xact FROM audit_logs")).fetchall()
        order = await chain_order(conn)
        seals = (await (await conn.execute("SELECT count(*) AS n FROM audit_seals")).fetchone())["n"]
        status = await verify_chain(conn)
    committed = writers * (per_writer - per_writer // 4)
    assert len(rows) == committed
    assert len(order) == len(set(order)) == committed, "every committed row sealed exactly once"
    assert order == [row["id"] for row in sorted(rows, key=lambda row: (row["xact"], row["id"]))]
    assert seals > 3
    assert status.valid
    assert status.checked == committed
    assert status.unsealed == 0


@pytest.fixture
async def sealed_rows(pool: AsyncConnectionPool) -> list[int]:
    """Nine rows sealed in three seals; their ids in chain order."""
    for batch in range(3):
        async with transaction(pool) as tx:
            for i in range(3):
                await record(
                    tx,
                    EventType.PAYMENT_SUCCEEDED,
                    SYSTEM,
                    ("payment", f"{batch}-{i}"),
                    after={"amount": 1000 * batch + i},
                )
        await seal_pending(pool)
    async with pool.connection() as conn:
        assert (await verify_chain(conn)).valid
        return await chain_order(conn)


@pytest.mark.parametrize(
    ("table", "statement", "broken_index", "named_index", "reason"),
    [
        # content: an amount edited behind the application's back
        ("audit_logs", "UPDATE audit_logs SET after = '{{\"amount\": 1}}' WHERE id = {4}", 4, 4, "hash mismatch"),
        # order: two rows swap places (their ids, hence the positions the seals give them)
        (
            "audit_logs",
            "UPDATE audit_logs SET id = CASE id WHEN {4} THEN -1 ELSE id END WHERE id = {4};"
            "UPDATE audit_logs SET id = {4} WHERE id = {5}; UPDATE audit_logs SET id = {5} WHERE id = -1",
            4,
            4,
            "hash mismatch",
        ),
        # order again: the seal lists two rows the other way round (position 5 now names the sixth row)
        (
            "audit_seals",
            "UPDATE audit_seals SET audit_ids = ARRAY[{3}, {5}, {4}] WHERE seal_no = 2",
            4,
            5,
            "hash mismatch",
        ),
        # deletion in the middle
        ("audit_logs", "DELETE FROM audit_logs WHERE id = {4}", 4, 4, "row missing"),
    ],
    ids=["content", "swapped-rows", "reordered-seal", "deleted-row"],
)
async def test_tampering_with_a_sealed_row_is_detected_and_named(
    pool: AsyncConnectionPool,
    sealed_rows: list[int],
    table: str,
    statement: str,
    broken_index: int,
    named_index: int,
    reason: str,
) -> None:
    async with pool.connection() as conn:
        await tamper(conn, table, statement.format(*sealed_rows))
        status = await verify_chain(conn)
    assert not status.valid
    assert status.first_broken_position == broken_index + 1
    assert status.first_broken_id == sealed_rows[named_index]
    assert status.reason == reason


async def test_a_deleted_seal_is_detected_where_its_rows_were(pool: AsyncConnectionPool, sealed_rows: list[int]):
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM audit_seals WHERE seal_no = 2")
        status = await verify_chain(conn)
    assert not status.valid
    assert status.first_broken_position == 4
    assert status.reason == "seal missing"


async def test_sealed_rows_cannot_be_changed_through_sql(pool: AsyncConnectionPool, sealed_rows: list[int]) -> None:
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute("UPDATE audit_logs SET event_type = 'system.audit_cleanup'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute("UPDATE audit_seals SET prev_hash = NULL")
