"""``/audit``: the trail for admins (logs, timelines, histories, security events, chain verification, retention)
and its statistics for admins and business owners.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, delete, get
from litestar.params import FromPath, QueryParameter

from core_api.audit import service
from core_api.audit._chain import cleanup, verify_chain
from core_api.audit.schemas import (
    SECURITY_EVENTS,
    AuditPage,
    ChainStatus,
    CleanupResult,
    EntityType,
    EventType,
    Statistics,
)
from core_api.audit.sealer import refresh_backlog_gauges
from core_api.auth.guards import actor_of, roles
from core_api.users.schemas import Role
from core_api.web.deps import Pool
from core_api.web.errors import ValidationFailed

__all__ = ["route_handlers"]

_ADMIN = roles(Role.ADMIN)
_STATISTICS_READERS = roles(Role.ADMIN, Role.BUSINESS_OWNER)
_STATISTICS_DAYS = 30

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Rows per page (1-100).")]
Cursor = Annotated[
    str | None,
    QueryParameter(max_length=200, description="The `next_cursor` of the previous page; absent for the first page."),
]
From = Annotated[
    datetime | None, QueryParameter(name="from", description="Only rows at or after this time (ISO 8601, with zone).")
]
To = Annotated[
    datetime | None, QueryParameter(name="to", description="Only rows before this time (ISO 8601, with zone).")
]


def _uuid(value: str, field: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed.for_field(field, "not a valid UUID") from None


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationFailed.for_field(field, "needs a time zone (e.g. 2026-01-31T12:00:00Z)")
    return value


def _entity(value: str | None) -> tuple[EntityType | None, str | None]:
    """``type`` or ``type:id`` (``booking:7c9e…``)."""
    if value is None:
        return None, None
    kind, _, entity_id = value.partition(":")
    try:
        entity_type = EntityType(kind)
    except ValueError:
        allowed = ", ".join(member.value for member in EntityType)
        raise ValidationFailed.for_field("entity", f"expected type or type:id, the type one of {allowed}") from None
    return entity_type, entity_id or None


@get("/audit/logs", operation_id="listAuditLogs", tags=["audit"], opt=_ADMIN)
async def list_logs(
    pool: Pool,
    actor: Annotated[str | None, QueryParameter(max_length=36, description="Id of the user who acted.")] = None,
    event_type: Annotated[EventType | None, QueryParameter(description="One event type of the catalogue.")] = None,
    entity: Annotated[
        str | None,
        QueryParameter(max_length=240, description="What the rows are about: `type` or `type:id` (`booking:7c9e…`)."),
    ] = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AuditPage:
    """The audit trail, newest first, filtered by actor, event type, entity and time (ADMIN).

    Paged with a keyset cursor: `{items, next_cursor}`; pass `next_cursor` as `cursor` for the next page. Personal
    data is shown while it is kept and `[ERASED]` once its user was deleted; `sealed` tells whether a row is linked
    into the hash chain yet.
    """
    entity_type, entity_id = _entity(entity)
    filters = service.LogFilter(
        actor_id=_uuid(actor, "actor") if actor else None,
        event_type=event_type,
        entity_type=entity_type,
        entity_id=entity_id,
        from_=_aware(from_, "from"),
        to=_aware(to, "to"),
    )
    return await service.list_logs(pool, filters, cursor=cursor, limit=limit)


@get("/audit/statistics", operation_id="getAuditStatistics", tags=["audit"], opt=_STATISTICS_READERS)
async def statistics(pool: Pool, from_: From = None, to: To = None) -> Statistics:
    """Counts of audit events by category, event type, actor role and UTC day, over `[from, to)` (default: the
    last 30 days), with the security events and the rows not sealed yet (ADMIN, BUSINESS_OWNER).
    """
    end = _aware(to, "to") or datetime.now(UTC)
    start = _aware(from_, "from") or end - timedelta(days=_STATISTICS_DAYS)
    backlog = await refresh_backlog_gauges(pool)
    return await service.audit_statistics(pool, start, end, backlog.unsealed if backlog else 0)


@get("/audit/user/{id:str}/timeline", operation_id="getUserAuditTimeline", tags=["audit"], opt=_ADMIN)
async def user_timeline(pool: Pool, id: FromPath[str], cursor: Cursor = None, limit: Limit = 50) -> AuditPage:
    """What a user did and what was done to their account, newest first (ADMIN); paged like `/audit/logs`."""
    return await service.user_timeline(pool, _uuid(id, "id"), cursor=cursor, limit=limit)


@get(
    "/audit/entity/{type:str}/{id:str}/history",
    operation_id="getEntityAuditHistory",
    tags=["audit"],
    opt=_ADMIN,
)
async def entity_history(
    pool: Pool, type: FromPath[str], id: FromPath[str], cursor: Cursor = None, limit: Limit = 50
) -> AuditPage:
    """Everything recorded about one user, booking, payment, refund, flight or notification, newest first (ADMIN)."""
    try:
        entity_type = EntityType(type)
    except ValueError:
        allowed = ", ".join(member.value for member in EntityType)
        raise ValidationFailed.for_field("type", f"one of {allowed}") from None
    if not 1 <= len(id) <= 200:
        raise ValidationFailed.for_field("id", "1 to 200 characters")
    filters = service.LogFilter(entity_type=entity_type, entity_id=id)
    return await service.list_logs(pool, filters, cursor=cursor, limit=limit)


@get("/audit/security/events", operation_id="listSecurityEvents", tags=["audit"], opt=_ADMIN)
async def security_events(
    pool: Pool,
    event_type: Annotated[
        EventType | None, QueryParameter(description="One of the security event types (login failures, lockouts …).")
    ] = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AuditPage:
    """Failed logins, lockouts, refresh-token reuse, failed password changes, access denied and rate limiting
    (aggregated per client and interval), newest first (ADMIN).
    """
    if event_type is not None and event_type not in SECURITY_EVENTS:
        allowed = ", ".join(member.value for member in SECURITY_EVENTS)
        raise ValidationFailed.for_field("event_type", f"one of the security events: {allowed}")
    return await service.security_events(
        pool,
        event_type=event_type,
        start=_aware(from_, "from"),
        end=_aware(to, "to"),
        cursor=cursor,
        limit=limit,
    )


@get("/audit/verify", operation_id="verifyAuditChain", tags=["audit"], opt=_ADMIN)
async def verify(pool: Pool) -> ChainStatus:
    """Walk the sealed hash chain from the last retention checkpoint: `valid`, how many rows were `checked`, the
    first broken position and row with the reason, and how many committed rows are not sealed yet (ADMIN).
    """
    async with pool.connection() as conn:
        return await verify_chain(conn)


@delete(
    "/audit/logs/cleanup",
    operation_id="cleanupAuditLogs",
    tags=["audit"],
    opt=_ADMIN,
    status_code=200,
)
async def cleanup_logs(
    request: Request[Any, Any, Any],
    pool: Pool,
    older_than_days: Annotated[
        int | None, QueryParameter(ge=1, le=36_500, description="Delete sealed rows older than this (default 90).")
    ] = None,
) -> CleanupResult:
    """Retention (ADMIN): delete the sealed rows older than `older_than_days` that start the chain, keeping it
    verifiable from a checkpoint. The cleanup is itself audited (`system.audit_cleanup`).
    """
    days = older_than_days or request.app.state.audit_retention_days
    return await cleanup(pool, actor_of(request), days)


route_handlers = [list_logs, statistics, user_timeline, entity_history, security_events, verify, cleanup_logs]
