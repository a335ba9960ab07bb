"""The audit writer every feature uses, and the chain verification.

:func:`record` writes one row into ``audit_logs`` inside the caller's transaction, so the audit row commits or
rolls back with the change it describes. The hash chain itself is built in SQL (``sql/queries/audit.sql``,
``audit_row_hash`` in the migration); call :func:`record` as late in the transaction as practical, because it
holds the chain head's row lock until the transaction ends. Callers run at READ COMMITTED (PostgreSQL's default),
so that the row of the writer before them is visible once its lock is released.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.pq import PipelineStatus, TransactionStatus

from core_api.storage.db import load_queries
from core_api.web.context import request_id_var

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["SYSTEM", "Actor", "ChainStatus", "record", "record_in_pipeline", "redact", "verify_chain"]

QUERIES = load_queries("audit")

_EVENT_TYPE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
_ENTITY_TYPE = re.compile(r"^[a-z][a-z_]*$")
# Keys whose values never reach the audit trail.
_SECRET_KEY = re.compile(
    r"password|secret|token|authorization|cookie|card|cvc|cvv|iban|document|api_key|private_key", re.IGNORECASE
)
REDACTED = "[REDACTED]"


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who did it, from where."""

    id: UUID | None = None
    role: str | None = None
    ip: str | None = None
    user_agent: str | None = None


SYSTEM = Actor(role="SYSTEM")


class ChainStatus(msgspec.Struct, frozen=True):
    valid: bool
    checked: int
    first_broken_id: int | None = None


def redact(value: Any) -> Any:
    """A copy of ``value`` (builtins, Structs) with the values of secret-looking keys replaced."""
    value = msgspec.to_builtins(value)
    if isinstance(value, dict):
        return {key: REDACTED if _SECRET_KEY.search(str(key)) else redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(redact(value)).decode()


def _event_params(
    event_type: str,
    actor: Actor,
    entity: tuple[str, object] | None,
    before: Mapping[str, Any] | msgspec.Struct | None,
    after: Mapping[str, Any] | msgspec.Struct | None,
    metadata: Mapping[str, Any] | None,
    occurred_at: datetime | None,
) -> dict[str, Any]:
    if not _EVENT_TYPE.match(event_type):
        raise ValueError(f"audit event type {event_type!r} is not domain.action in lower case")
    entity_type, entity_id = entity if entity else (None, None)
    if entity_type is not None and not _ENTITY_TYPE.match(entity_type):
        raise ValueError(f"audit entity type {entity_type!r} is not a singular lower-case name")
    return {
        "occurred_at": occurred_at,
        "event_type": event_type,
        "actor_id": actor.id,
        "actor_role": actor.role,
        "ip": actor.ip,
        "user_agent": actor.user_agent[:512] if actor.user_agent else None,
        "request_id": request_id_var.get(),
        "entity_type": entity_type,
        "entity_id": None if entity_id is None else str(entity_id),
        "before": _json(before),
        "after": _json(after),
        "metadata": _json(metadata or {}),
    }


async def record(
    tx: AsyncConnection[Any],
    event_type: str,
    actor: Actor,
    entity: tuple[str, object] | None = None,
    before: Mapping[str, Any] | msgspec.Struct | None = None,
    after: Mapping[str, Any] | msgspec.Struct | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> int:
    """Append an audit row in ``tx``'s transaction; returns its chain position (the row id).

    ``entity`` is ``(entity_type, entity_id)``, the type singular lower case (``booking``, ``user`` …).
    """
    params = _event_params(event_type, actor, entity, before, after, metadata, occurred_at)
    if tx.autocommit and tx.info.transaction_status == TransactionStatus.IDLE:
        raise RuntimeError("record() must run inside the caller's transaction")
    # Two statements in one round trip: the INSERT's snapshot must start after the head lock was granted.
    async with tx.pipeline():
        await tx.execute(QUERIES["advance_chain_head"])
        cursor = await tx.execute(QUERIES["record_event"], params)
    row = await cursor.fetchone()
    assert row is not None
    return int(row["id"] if isinstance(row, Mapping) else row[0])


async def record_in_pipeline(
    tx: AsyncConnection[Any],
    event_type: str,
    actor: Actor,
    entity: tuple[str, object] | None = None,
    before: Mapping[str, Any] | msgspec.Struct | None = None,
    after: Mapping[str, Any] | msgspec.Struct | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """:func:`record` for a caller already in pipeline mode that sends its COMMIT in the same pipeline: the two
    statements are queued, not sent, so the chain head's lock is held only while the server runs them and commits.
    Errors surface when the caller's pipeline syncs.
    """
    params = _event_params(event_type, actor, entity, before, after, metadata, None)
    if tx.info.pipeline_status == PipelineStatus.OFF:
        raise RuntimeError("record_in_pipeline() needs the connection in pipeline mode")
    await tx.execute(QUERIES["advance_chain_head"])
    await tx.execute(QUERIES["record_event"], params)


async def verify_chain(conn: AsyncConnection[Any]) -> ChainStatus:
    """Recompute every kept row's hash and link; the oldest kept row anchors the chain after retention."""
    cursor = await conn.execute(QUERIES["verify_chain"])
    row = await cursor.fetchone()
    assert row is not None
    checked, broken = (row["checked"], row["first_broken_id"]) if isinstance(row, Mapping) else row
    return ChainStatus(valid=broken is None, checked=int(checked), first_broken_id=broken)
