"""The audit writer every feature uses, and the reads of the audit API.

:func:`record` appends one row to ``audit_logs`` inside the caller's transaction, so the row commits or rolls
back with the change it describes. Writing takes no lock that another transaction waits for: the id comes from a
sequence and the row carries its writer's transaction id, which places it in the order the sealer
(:mod:`core_api.audit.sealer`) chains committed rows in, seconds later. The insert answers nothing, so callers in
pipeline mode queue it with their COMMIT (:func:`record_in_pipeline`). Secrets are redacted and personal data is
kept apart, erasable (:mod:`core_api.audit._personal`).

Reads serve ``/audit``: pages are newest first with a keyset cursor over ``(occurred_at, id)``; every filter has
an index ending in that order (migration 0011).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.pq import PipelineStatus, TransactionStatus

from core_api.audit._personal import REDACTED, inflate, redact, split_personal
from core_api.audit.schemas import (
    SECURITY_EVENTS,
    AuditEntry,
    AuditPage,
    ChainStatus,
    CountByKey,
    DailyCount,
    EntityType,
    EventType,
    Statistics,
)
from core_api.storage.db import load_queries
from core_api.web.context import request_id_var
from core_api.web.errors import ValidationFailed

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.storage.db import DbPool

__all__ = [
    "REDACTED",
    "SYSTEM",
    "Actor",
    "LogFilter",
    "audit_statistics",
    "erase_personal_data",
    "list_logs",
    "record",
    "record_in_pipeline",
    "redact",
    "security_events",
    "user_timeline",
    "verify_chain",
]

QUERIES = load_queries("audit")
_USER_AGENT_MAX = 512


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who did it, from where."""

    id: UUID | None = None
    role: str | None = None
    ip: str | None = None
    user_agent: str | None = None


SYSTEM = Actor(role="SYSTEM")


def event_type_of(event_type: EventType | str) -> EventType:
    """The catalogue member of ``event_type``; anything outside the catalogue is a programming error."""
    try:
        return EventType(event_type)
    except ValueError:
        raise ValueError(
            f"audit event type {event_type!r} is not in the catalogue (core_api.audit.schemas.EventType); add it there"
        ) from None


def _event_params(
    event_type: EventType | str,
    actor: Actor,
    entity: tuple[str, object] | None,
    before: Mapping[str, Any] | msgspec.Struct | None,
    after: Mapping[str, Any] | msgspec.Struct | None,
    metadata: Mapping[str, Any] | None,
    occurred_at: datetime | None,
) -> tuple[str, dict[str, Any]]:
    """The named query to run and its parameters."""
    member = event_type_of(event_type)
    entity_type, entity_id = entity if entity else (None, None)
    if entity_type is not None:
        try:
            EntityType(entity_type)
        except ValueError:
            raise ValueError(
                f"audit entity type {entity_type!r} is not one of {[e.value for e in EntityType]}"
            ) from None
    entity_text = None if entity_id is None else str(entity_id)
    texts, personal = split_personal(
        {"before": before, "after": after, "metadata": metadata or {}},
        actor_id=actor.id,
        ip=actor.ip,
        user_agent=actor.user_agent[:_USER_AGENT_MAX] if actor.user_agent else None,
        entity=(entity_type, entity_text),
    )
    params: dict[str, Any] = {
        "occurred_at": occurred_at,
        "event_type": member.value,
        "actor_id": actor.id,
        "actor_role": str(actor.role) if actor.role is not None else None,
        "request_id": request_id_var.get(),
        "entity_type": entity_type,
        "entity_id": entity_text,
        **texts,
    }
    if personal is None:
        return "record_event", params
    return "record_event_with_personal_data", params | personal.params()


async def record(
    tx: AsyncConnection[Any],
    event_type: EventType | str,
    actor: Actor,
    entity: tuple[str, object] | None = None,
    before: Mapping[str, Any] | msgspec.Struct | None = None,
    after: Mapping[str, Any] | msgspec.Struct | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> None:
    """Append an audit row in ``tx``'s transaction.

    ``entity`` is ``(entity_type, entity_id)``, the type singular lower case (``booking``, ``user`` …).
    """
    query, params = _event_params(event_type, actor, entity, before, after, metadata, occurred_at)
    if tx.autocommit and tx.info.transaction_status == TransactionStatus.IDLE:
        raise RuntimeError("record() must run inside the caller's transaction")
    await tx.execute(QUERIES[query], params)


async def record_in_pipeline(
    tx: AsyncConnection[Any],
    event_type: EventType | str,
    actor: Actor,
    entity: tuple[str, object] | None = None,
    before: Mapping[str, Any] | msgspec.Struct | None = None,
    after: Mapping[str, Any] | msgspec.Struct | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """:func:`record` for a caller already in pipeline mode: the insert is queued, not sent, and goes with the
    caller's next sync (its COMMIT, say). Errors surface when the caller's pipeline syncs.
    """
    query, params = _event_params(event_type, actor, entity, before, after, metadata, None)
    if tx.info.pipeline_status == PipelineStatus.OFF:
        raise RuntimeError("record_in_pipeline() needs the connection in pipeline mode")
    await tx.execute(QUERIES[query], params)


async def erase_personal_data(tx: AsyncConnection[Any], user_id: UUID) -> int:
    """Delete the personal data the trail keeps of ``user_id``; the chained rows are untouched. Returns rows erased."""
    cursor = await tx.execute(QUERIES["erase_personal_data"], {"user_id": user_id})
    return cursor.rowcount


async def verify_chain(conn: AsyncConnection[Any]) -> ChainStatus:
    """Walk the sealed chain (see :mod:`core_api.audit._chain`)."""
    from core_api.audit._chain import verify_chain as walk  # the chain module builds on this one

    return await walk(conn)


# -- Reads ------------------------------------------------------------------------------------------------------


class _Cursor(msgspec.Struct, array_like=True, frozen=True):
    at: datetime
    id: int


def encode_cursor(at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(_Cursor(at, row_id))).decode().rstrip("=")


def decode_cursor(text: str) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationFailed.for_field("cursor", "not a cursor this API handed out") from None
    if cursor.at.tzinfo is None:
        raise ValidationFailed.for_field("cursor", "not a cursor this API handed out")
    return cursor


class LogFilter(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: UUID | None = None
    event_type: EventType | None = None
    entity_type: EntityType | None = None
    entity_id: str | None = None
    from_: datetime | None = None
    to: datetime | None = None


def _category(event_type: str) -> str:
    # Rows keep whatever type they were written with; one the catalogue dropped since reads as "unknown".
    try:
        return EventType(event_type).category.value
    except ValueError:
        return "unknown"


def _entry(row: Mapping[str, Any]) -> AuditEntry:
    salt, values = row["salt"], row["personal_values"]
    category = _category(row["event_type"])
    return AuditEntry(
        id=row["id"],
        occurred_at=row["occurred_at"],
        event_type=row["event_type"],
        category=category,
        actor_id=row["actor_id"],
        actor_role=row["actor_role"],
        ip=row["personal_ip"] or row["ip"],
        user_agent=row["personal_user_agent"] or row["user_agent"],
        request_id=row["request_id"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        before=inflate(row["before"], salt, values),
        after=inflate(row["after"], salt, values),
        metadata=inflate(row["metadata"], salt, values),
        sealed=bool(row["sealed"]),
    )


def _page(rows: list[dict[str, Any]], limit: int) -> AuditPage:
    items = [_entry(row) for row in rows]
    last = rows[-1] if len(rows) == limit else None
    return AuditPage(items=items, next_cursor=encode_cursor(last["occurred_at"], last["id"]) if last else None)


def _cursor_params(cursor: str | None) -> dict[str, Any]:
    if cursor is None:
        return {"cursor_at": None, "cursor_id": None}
    decoded = decode_cursor(cursor)
    return {"cursor_at": decoded.at, "cursor_id": decoded.id}


async def _fetch_page(pool: DbPool, query: str, params: dict[str, Any], limit: int) -> AuditPage:
    async with pool.connection() as conn:
        # Unprepared: the planner sees which filters are absent and picks the index of the ones given.
        cursor = await conn.execute(QUERIES[query], params, prepare=False)
        rows = await cursor.fetchall()
    return _page(rows, limit)


def _range_check(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise ValidationFailed.for_field("to", "must be after from")


async def list_logs(pool: DbPool, filters: LogFilter, *, cursor: str | None, limit: int) -> AuditPage:
    """A page of rows matching ``filters``, newest first."""
    _range_check(filters.from_, filters.to)
    if (filters.entity_id is None) != (filters.entity_type is None) and filters.entity_id is not None:
        raise ValidationFailed.for_field("entity_type", "required with entity_id")
    params = {
        "actor_id": filters.actor_id,
        "event_type": filters.event_type.value if filters.event_type else None,
        "entity_type": filters.entity_type.value if filters.entity_type else None,
        "entity_id": filters.entity_id,
        "from": filters.from_,
        "to": filters.to,
        "limit": limit,
        **_cursor_params(cursor),
    }
    return await _fetch_page(pool, "list_logs", params, limit)


async def user_timeline(pool: DbPool, user_id: UUID, *, cursor: str | None, limit: int) -> AuditPage:
    """What ``user_id`` did and what was done to their account, newest first."""
    params = {"user_id": user_id, "limit": limit, **_cursor_params(cursor)}
    return await _fetch_page(pool, "user_timeline", params, limit)


async def security_events(
    pool: DbPool,
    *,
    event_type: EventType | None,
    start: datetime | None,
    end: datetime | None,
    cursor: str | None,
    limit: int,
) -> AuditPage:
    """Failed logins, lockouts, refresh-token reuse, failed password changes, denied access, rate limiting."""
    _range_check(start, end)
    params = {
        "event_type": event_type.value if event_type else None,
        "from": start,
        "to": end,
        "limit": limit,
        **_cursor_params(cursor),
    }
    return await _fetch_page(pool, "security_events", params, limit)


async def audit_statistics(pool: DbPool, start: datetime, end: datetime, unsealed: int) -> Statistics:
    """Counts over ``[start, end)``: by category, event type, actor role and UTC day."""
    _range_check(start, end)
    async with pool.connection() as conn:
        rows = await (await conn.execute(QUERIES["statistics"], {"from": start, "to": end})).fetchall()
    by_event: dict[str, int] = {}
    by_role: dict[str | None, int] = {}
    per_day: dict[str, int] = {}
    for row in rows:
        if row["by_event"]:
            by_event[row["event_type"]] = row["n"]
        elif row["by_role"]:
            by_role[row["actor_role"]] = row["n"]
        else:
            per_day[row["day"]] = row["n"]
    by_category: dict[str, int] = {}
    for name, count in by_event.items():
        category = _category(name)
        by_category[category] = by_category.get(category, 0) + count
    security = {event.value for event in SECURITY_EVENTS}

    def ranked(counts: Mapping[Any, int]) -> list[CountByKey]:
        return [CountByKey(key, count) for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]

    return Statistics(
        from_=start,
        to=end,
        total=sum(by_event.values()),
        by_category=ranked(by_category),
        by_event_type=ranked(by_event),
        by_actor_role=ranked(by_role),
        per_day=[DailyCount(day, count) for day, count in sorted(per_day.items())],
        security_events=sum(count for name, count in by_event.items() if name in security),
        unsealed=unsealed,
    )
