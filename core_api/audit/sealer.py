"""The sealer: links committed audit rows into the hash chain, seconds behind the writes, one sealer at a time.

A round runs in one transaction: it takes the sealer's advisory lock (or skips the round when another process
holds it), computes the horizon (``seal_horizon``: every transaction of this database below it has ended, so no
row below it can still appear), then ``audit_seal`` appends one ``audit_seals`` batch: the next rows below the
horizon in ``(xact_id, id)`` order with the chain hash after each. A row is therefore sealed exactly once, at a
position fixed by its writer's transaction id and its own id, whatever order the writers committed in; a
transaction still open holds back only the rows that sort after it, and only until it ends.

The worker runs :class:`Sealer` on a thread of its own (``core_api.worker``); :func:`seal_pending` seals everything
sealable now (tests, the seed, retention). The unsealed backlog is a Prometheus gauge of the API
(:func:`refresh_backlog_gauges`, called on every scrape) and part of ``/health/services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import Gauge
from psycopg.rows import dict_row

from core_api.storage.db import load_queries, transaction
from core_api.web.ratelimit import OccasionalWarning

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.storage.db import DbPool

__all__ = [
    "OLDEST_UNSEALED_SECONDS",
    "SEAL_BATCH_ROWS",
    "SEAL_LAG_ALERT_SECONDS",
    "UNSEALED_ROWS",
    "Backlog",
    "Sealer",
    "read_backlog",
    "refresh_backlog_gauges",
    "seal_once",
    "seal_pending",
    "update_backlog_gauges",
]

logger = logging.getLogger(__name__)

QUERIES = load_queries("audit")

SEAL_LAG_ALERT_SECONDS = 30.0
"""``/health/services`` reports the sealer down when a committed row waited longer than this (no sealer running,
or a transaction of this database open that long)."""
SEAL_BATCH_ROWS = 5000
"""Most rows one seal holds: a round stays short, and a backlog is worked off in batches back to back."""

UNSEALED_ROWS = Gauge(
    "flightdesk_audit_unsealed_rows",
    "Committed audit rows not yet linked into the hash chain.",
    multiprocess_mode="mostrecent",
)
OLDEST_UNSEALED_SECONDS = Gauge(
    "flightdesk_audit_oldest_unsealed_seconds",
    "Age of the oldest committed audit row not yet sealed (0 when none is waiting).",
    multiprocess_mode="mostrecent",
)


@dataclass(frozen=True, slots=True)
class Backlog:
    unsealed: int
    oldest_at: datetime | None

    @property
    def oldest_age_seconds(self) -> float:
        if self.oldest_at is None:
            return 0.0
        return max(0.0, (datetime.now(UTC) - self.oldest_at).total_seconds())


async def seal_once(pool: DbPool, *, max_rows: int = SEAL_BATCH_ROWS) -> int | None:
    """One round: the rows sealed, or ``None`` when another sealer holds the lock."""
    async with transaction(pool) as tx:
        return await seal_in(tx, max_rows=max_rows, wait=False)


async def seal_in(tx: AsyncConnection[Any], *, max_rows: int = SEAL_BATCH_ROWS, wait: bool = False) -> int | None:
    """A round inside ``tx``'s transaction (which then holds the sealer's lock until it ends)."""
    if wait:
        await tx.execute(QUERIES["seal_lock_wait"])
    else:
        row = await (await tx.execute(QUERIES["seal_lock"])).fetchone()
        if not row or not row["locked"]:
            return None
    # A statement of its own: the rows are read by the next one, whose snapshot sees every transaction that had
    # ended when the horizon was taken.
    horizon = await (await tx.execute(QUERIES["seal_horizon"])).fetchone()
    assert horizon is not None
    sealed = await (await tx.execute(QUERIES["seal"], {"horizon": horizon["horizon"], "max_rows": max_rows})).fetchone()
    return int(sealed["sealed"]) if sealed else 0


async def seal_pending(pool: DbPool) -> int:
    """Seal everything sealable now, waiting for a concurrent sealer's round; returns the rows sealed."""
    total = 0
    while True:
        async with transaction(pool) as tx:
            sealed = await seal_in(tx, wait=True) or 0
        total += sealed
        if sealed < SEAL_BATCH_ROWS:
            return total


async def read_backlog(conn: AsyncConnection[Any]) -> Backlog:
    row = await (await conn.execute(QUERIES["backlog"])).fetchone()
    assert row is not None
    return Backlog(int(row["unsealed"]), row["oldest"])


async def refresh_backlog_gauges(pool: DbPool, budget_seconds: float = 1.0) -> Backlog | None:
    """Read the backlog into the gauges; ``None`` (gauges left as they were) when PostgreSQL does not answer."""
    try:
        async with asyncio.timeout(budget_seconds), pool.connection(timeout=budget_seconds) as conn:
            backlog = await read_backlog(conn)
    except Exception:  # noqa: BLE001 - a scrape must never fail because the database is slow
        return None
    update_backlog_gauges(backlog)
    return backlog


def update_backlog_gauges(backlog: Backlog) -> None:
    UNSEALED_ROWS.set(backlog.unsealed)
    OLDEST_UNSEALED_SECONDS.set(backlog.oldest_age_seconds)


class Sealer:
    """Seals in a loop on a thread of its own with its own connection: a round every ``interval`` seconds, back to
    back while full batches come out.

    A thread rather than a task of the worker's event loop: the loop also runs the outbox relay and every job, and
    a busy loop would otherwise delay the rounds (measured: seconds of seal lag under booking load). The rounds
    wait on PostgreSQL almost all the time, so they need the interpreter only briefly.
    """

    def __init__(self, database_url: str, interval: float = 0.5, max_rows: int = SEAL_BATCH_ROWS) -> None:
        self.database_url = database_url
        self.interval = interval
        self.max_rows = max_rows
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = OccasionalWarning(logger, interval_seconds=30.0)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            sealed: int | None = 0
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row,
                                           application_name="flightdesk-sealer")  # fmt: skip
                with conn.transaction():
                    sealed = _seal_round(conn, self.max_rows)
                self.rounds += 1
            except psycopg.Error as exc:  # the next round tries again; nothing is lost meanwhile
                self._outage.warn("audit sealing failed: %s: %s", type(exc).__name__, exc)
                with contextlib.suppress(psycopg.Error):
                    if conn is not None:
                        conn.close()
                conn = None
            if sealed is None or sealed < self.max_rows:
                self._stop.wait(self.interval)
        if conn is not None:
            conn.close()


def _seal_round(conn: psycopg.Connection[Any], max_rows: int) -> int | None:
    """:func:`seal_in` for the sealer's own (blocking) connection."""
    row = conn.execute(QUERIES["seal_lock"]).fetchone()
    if not row or not row["locked"]:
        return None
    horizon = conn.execute(QUERIES["seal_horizon"]).fetchone()
    assert horizon is not None
    sealed = conn.execute(QUERIES["seal"], {"horizon": horizon["horizon"], "max_rows": max_rows}).fetchone()
    return int(sealed["sealed"]) if sealed else 0
