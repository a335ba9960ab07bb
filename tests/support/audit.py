"""Audit rows as an admin reads them (personal data filled in from where it is kept apart), for any test."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from core_api.audit.schemas import EventType
from core_api.audit.service import LogFilter, list_logs

__all__ = ["audit_rows"]


async def audit_rows(pool: AsyncConnectionPool, event_type: EventType | str) -> list[dict[str, Any]]:
    """Every row of ``event_type``, oldest first, as ``GET /audit/logs`` shows it."""
    page = await list_logs(pool, LogFilter(event_type=EventType(event_type)), cursor=None, limit=1000)
    return [msgspec.structs.asdict(entry) for entry in reversed(page.items)]
