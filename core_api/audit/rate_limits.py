"""Rate-limit refusals in the audit trail, aggregated: a storm of 429s must not become a storm of writes.

The rate-limit middleware tells :class:`RateLimitAudit` of each refusal (a dictionary update, no I/O). Every
``flush_seconds`` (``FLIGHTDESK_AUDIT_RATE_LIMIT_FLUSH_SECONDS``) the process writes, in one transaction, one
``security.rate_limited`` row per refused client with how many requests were refused, when the first and last
were, the tier and the paths asked for. At most ``max_clients`` clients are itemised per interval; the rest are
summed into one row, so a distributed flood is still bounded. Counts held in memory when the process dies are
lost (the limiter itself counts in Redis, so enforcement is not); a clean stop flushes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from core_api.audit.schemas import EventType
from core_api.audit.service import Actor, record
from core_api.storage.db import transaction
from core_api.web.ratelimit import OccasionalWarning

if TYPE_CHECKING:
    from core_api.storage.db import DbPool

__all__ = ["RateLimitAudit"]

logger = logging.getLogger(__name__)

_PATHS_KEPT = 5


@dataclass
class _Tally:
    actor: Actor
    tier: str
    first_at: datetime
    last_at: datetime
    count: int = 0
    paths: Counter[str] = field(default_factory=Counter)


class RateLimitAudit:
    """Counts refusals per client and writes them out every ``flush_seconds``."""

    def __init__(self, pool: DbPool, flush_seconds: float = 10.0, max_clients: int = 1000) -> None:
        self.pool = pool
        self.flush_seconds = flush_seconds
        self.max_clients = max_clients
        self._tallies: dict[str, _Tally] = {}
        self._overflow = 0
        self._task: asyncio.Task[None] | None = None
        self._outage = OccasionalWarning(logger, interval_seconds=30.0)

    def note(
        self,
        client: str,
        *,
        user_id: UUID | None,
        role: str | None,
        ip: str | None,
        user_agent: str | None,
        method: str,
        path: str,
        tier: str,
    ) -> None:
        """One refused request (called by the middleware; never blocks, never fails)."""
        now = datetime.now(UTC)
        tally = self._tallies.get(client)
        if tally is None:
            if len(self._tallies) >= self.max_clients:
                self._overflow += 1
                return
            actor = Actor(id=user_id, role=role, ip=ip, user_agent=user_agent)
            tally = self._tallies[client] = _Tally(actor, tier, now, now)
        tally.count += 1
        tally.last_at = now
        key = f"{method} {path}"
        if key in tally.paths or len(tally.paths) < _PATHS_KEPT:
            tally.paths[key] += 1

    async def flush(self) -> int:
        """Write the refusals counted so far; returns the rows written."""
        tallies, overflow = self._tallies, self._overflow
        self._tallies, self._overflow = {}, 0
        if not tallies and not overflow:
            return 0
        try:
            async with transaction(self.pool) as tx:
                for client, tally in tallies.items():
                    await record(
                        tx,
                        EventType.SECURITY_RATE_LIMITED,
                        tally.actor,
                        metadata={
                            "client": client.partition(":")[0],
                            "refused": tally.count,
                            "first_at": tally.first_at.isoformat(),
                            "last_at": tally.last_at.isoformat(),
                            "tier": tally.tier,
                            "paths": dict(tally.paths),
                        },
                    )
                if overflow:
                    await record(
                        tx,
                        EventType.SECURITY_RATE_LIMITED,
                        Actor(role="SYSTEM"),
                        metadata={"refused": overflow, "clients_not_itemised": True},
                    )
        except Exception as exc:  # noqa: BLE001 - losing a count beats failing requests; the limiter still limits
            self._outage.warn("rate-limit refusals not audited: %s: %s", type(exc).__name__, exc)
            return 0
        return len(tallies) + (1 if overflow else 0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rate-limit-audit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()
