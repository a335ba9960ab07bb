"""Searches are data too: each answered search is noted in memory (no I/O on the search path) and the notes are
written to ``search_events`` in one ``COPY`` every ``flush_seconds``, for the funnel search → booking → payment.

Notes held when the process dies are lost (a clean stop flushes them); when the database is unreachable they are
kept for the next flush, up to ``max_pending``, beyond which the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg

from core_api.storage.db import transaction

if TYPE_CHECKING:
    from core_api.flights.schemas import SearchQuery, SearchResponse
    from core_api.storage.db import DbPool

__all__ = ["SearchLog"]

logger = logging.getLogger(__name__)

_COPY = (
    "COPY search_events (searched_at, origin, destination, departure_date, adults, children, infants, cabin, "
    "result_count, cached, user_id) FROM STDIN"
)

_Row = tuple[datetime, str, str, date, int, int, int, str | None, int, bool, UUID | None]


class SearchLog:
    """Buffers searches and writes them in batches."""

    def __init__(self, pool: DbPool, flush_seconds: float = 2.0, max_pending: int = 50_000) -> None:
        self.pool = pool
        self.flush_seconds = flush_seconds
        self._pending: deque[_Row] = deque(maxlen=max_pending)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def note(self, query: SearchQuery, response: SearchResponse, user_id: UUID | None) -> None:
        """Remember one answered search (a list append)."""
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(
            (
                datetime.now(UTC),
                query.origin,
                query.destination,
                query.date,
                query.adults,
                query.children,
                query.infants,
                query.cabin.value if query.cabin else None,
                len(response.offers),
                response.meta.cached,
                user_id,
            )
        )

    async def flush(self) -> int:
        """Write what is pending in one transaction; return how many rows were written."""
        if not self._pending:
            return 0
        rows = list(self._pending)
        try:
            async with transaction(self.pool) as tx, tx.cursor() as cursor, cursor.copy(_COPY) as copy:
                for row in rows:
                    await copy.write_row(row)
        except (psycopg.Error, OSError) as exc:
            logger.warning("search log: %d searches not written yet (%s)", len(rows), type(exc).__name__)
            return 0
        for _ in rows:
            self._pending.popleft()
        return len(rows)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="search-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
