"""Helpers for audit tests: the chain as sealed, and raw access that bypasses the append-only guards."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection


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
