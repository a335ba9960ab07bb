"""Waiting for a server-side state that another connection of the test is about to reach."""

from __future__ import annotations

import asyncio

import psycopg


async def backend_waiting_on_the_outbox(database_url: str) -> int:
    """The pid of a transaction that now waits for its lock to append an outbox event (the test holds that lock)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(500):  # 10 s at most
            row = await (
                await conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%%INSERT INTO outbox_events%%'"
                )
            ).fetchone()
            if row is not None:
                return int(row[0])
            await asyncio.sleep(0.02)
    raise AssertionError("no transaction waited on the outbox table")
