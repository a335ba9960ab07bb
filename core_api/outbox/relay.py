"""The outbox relay: publishes committed ``outbox_events`` rows to Redis, at least once, in write order.

One relay runs in each ``flightdesk worker`` process, on one PostgreSQL connection of its own. It polls: after a
pass that published a full batch it runs the next at once (a backlog drains at the speed of Redis, not one batch per
interval); otherwise it waits ``poll_interval`` and asks, in one autocommit statement served by the partial index
of unpublished events, whether anything waits, and claims a batch only when something does. An idle relay costs
one round trip per interval; an event waits for at most about one interval before it goes out. Writers do not
signal the relay: a ``NOTIFY`` at commit takes a lock for the whole server through the WAL flush and so serialised
every outbox writer's commit (migration 0014 dropped the trigger).

Each pass claims the oldest unpublished events (a batch, ``FOR UPDATE SKIP LOCKED`` so several workers can share the
outbox without publishing an event twice), publishes each to the pub/sub channel :data:`EVENTS_CHANNEL` as
:class:`OutboxEvent` JSON, enqueues the arq job ``dispatch_event`` with the event id as job id, and only then marks
the batch published and commits. When Redis fails the batch is rolled back, its ``attempts`` and ``last_error`` are
updated in a short transaction of their own, and the relay backs off and retries: nothing is lost, and an event
may be published more than once (consumers de-duplicate by event id; see :mod:`core_api.outbox.dispatch`). When
PostgreSQL fails (the connection killed, the server restarting) the relay backs off and reconnects.

Order: events go out in ``seq`` order, batch after batch. ``seq`` is taken at insert, so an event whose transaction
commits later than a newer one's can follow it; changes to one aggregate are serialised by its row lock and keep
their order. With several relays, batches are disjoint but may interleave.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec
import psycopg
from psycopg import AsyncConnection
from redis.exceptions import RedisError

from core_api.outbox import EVENTS_CHANNEL, OutboxEvent
from core_api.storage.db import load_queries, struct_row

if TYPE_CHECKING:
    from arq.connections import ArqRedis

__all__ = ["DISPATCH_JOB", "Backlog", "OutboxRelay", "RedisUnavailable", "backlog"]

logger = logging.getLogger(__name__)

QUERIES = load_queries("outbox")

DISPATCH_JOB = "dispatch_event"
"""The arq job each event is enqueued as (:func:`core_api.outbox.dispatch.dispatch_event`)."""

# Redis failures the relay waits out; OSError also covers refused connections and asyncio timeouts.
_REDIS_ERRORS = (RedisError, OSError)
_WORK_OPTIONS = "-c TimeZone=UTC -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
_encoder = msgspec.json.Encoder()


class Backlog(msgspec.Struct, frozen=True, kw_only=True):
    """Events waiting for the relay: how many, and when the oldest of them was written."""

    pending: int
    oldest_created_at: datetime | None


async def backlog(conn: AsyncConnection[Any]) -> Backlog:
    """The outbox's queue depth, for health checks and metrics."""
    async with conn.cursor(row_factory=struct_row(Backlog)) as cursor:
        await cursor.execute(QUERIES["backlog"])
        row = await cursor.fetchone()
    assert row is not None
    return row


class RedisUnavailable(Exception):
    """A batch could not be delivered to Redis; it stays unpublished."""


class _Backoff:
    """Exponential delays from ``initial`` to ``maximum``, jittered so several workers do not retry in step."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self._next = self.initial


class _Outage:
    """Logs a dependency's outage once as it starts (again each minute it lasts) and once as it ends."""

    REPEAT_SECONDS = 60.0

    def __init__(self, down: str, up: str) -> None:
        self.down = down
        self.up = up
        self.failures = 0
        self._warned_at = 0.0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1 or now - self._warned_at >= self.REPEAT_SECONDS:
            self._warned_at = now
            logger.warning(
                "outbox relay %s (%s: %s); retrying with backoff, events stay queued",
                self.down,
                type(exc).__name__,
                exc,
                extra={"failures": self.failures},
            )

    def recovered(self) -> None:
        if self.failures:
            logger.info("outbox relay %s after %d failed attempt(s)", self.up, self.failures)
            self.failures = 0


class OutboxRelay:
    """Publishes the outbox to Redis from a background task; :meth:`start` it, :meth:`stop` it on shutdown.

    ``redis`` is the worker's arq pool (``ctx["redis"]``): it publishes to ``channel`` and enqueues the jobs. Also
    usable as ``async with OutboxRelay(...) as relay``.
    """

    def __init__(
        self,
        database_url: str,
        redis: ArqRedis,
        *,
        channel: str = EVENTS_CHANNEL,
        batch_size: int = 200,
        poll_interval: float = 0.05,
        retry_initial: float = 0.5,
        retry_max: float = 15.0,
        redis_timeout: float = 5.0,
        application_name: str = "flightdesk-outbox-relay",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.database_url = database_url
        self.redis = redis
        self.channel = channel
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.redis_timeout = redis_timeout
        self.application_name = application_name
        self._conn: AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection (a bad DSN fails here, loudly), then relay in the background until :meth:`stop`."""
        if self._task is not None:
            raise RuntimeError("OutboxRelay already started")
        self._conn = await self._connect()
        self._task = asyncio.create_task(self._relay(), name="outbox-relay")

    async def stop(self) -> None:
        """Cancel the background task (a batch in flight rolls back and goes out later) and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                logger.error("outbox relay task %s had failed", task.get_name(), exc_info=task.exception())
        await self._close_connection()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- one pass ----------------------------------------------------------------------------------------------

    async def _any_unpublished(self) -> bool:
        """Whether any event waits: one statement, no transaction, so an idle poll is a single round trip."""
        conn = await self._connection()
        cursor = await conn.execute(QUERIES["any_unpublished"])
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def _publish_batch(self) -> int:
        """Claim one batch, deliver it to Redis and mark it published; returns how many events went out.

        Raises :class:`RedisUnavailable` (after recording the failed attempt on the batch) when Redis fails.
        """
        conn = await self._connection()
        failure: BaseException | None = None
        async with conn.transaction() as tx:
            async with conn.cursor(row_factory=struct_row(OutboxEvent)) as cursor:
                await cursor.execute(QUERIES["claim_unpublished"], {"limit": self.batch_size})
                events = await cursor.fetchall()
            if not events:
                return 0
            ids = [event.id for event in events]
            try:
                await self._deliver(events)
            except _REDIS_ERRORS as exc:
                failure = exc
                raise psycopg.Rollback(tx) from None
            await conn.execute(QUERIES["mark_published"], {"ids": ids})
        if failure is not None:
            error = f"{type(failure).__name__}: {failure}"[:1000]
            async with conn.transaction():
                await conn.execute(QUERIES["record_failure"], {"ids": ids, "error": error})
            raise RedisUnavailable(error) from failure
        return len(events)

    async def _deliver(self, events: list[OutboxEvent]) -> None:
        messages = [_encoder.encode(event) for event in events]
        # Every Redis call is bounded: a hung Redis must read as a failure, not hold the batch's row locks.
        async with asyncio.timeout(self.redis_timeout), self.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(self.channel, message)
            await pipe.execute()
        for event, message in zip(events, messages, strict=True):
            async with asyncio.timeout(self.redis_timeout):
                # None when a job with this id is queued or its result kept: the event was enqueued before.
                await self.redis.enqueue_job(DISPATCH_JOB, message.decode(), _job_id=str(event.id))

    # -- background task ---------------------------------------------------------------------------------------

    async def _relay(self) -> None:
        backoff = _Backoff(self.retry_initial, self.retry_max)
        redis_outage = _Outage("cannot reach Redis", "reaches Redis again")
        database_outage = _Outage("cannot use PostgreSQL", "uses PostgreSQL again")
        # The first pass, and each after a full batch, claims at once: events are likely waiting, the claim checks.
        claim_at_once = True
        while True:
            try:
                if claim_at_once or await self._any_unpublished():
                    published = await self._publish_batch()
                else:
                    published = 0
            except RedisUnavailable as exc:
                redis_outage.failed(exc.__cause__ or exc)
                await asyncio.sleep(backoff.next())
                continue
            except psycopg.Error as exc:
                database_outage.failed(exc)
                await self._drop_closed_connection()
                await asyncio.sleep(backoff.next())
                continue
            except Exception:  # the relay must outlive one bad pass; the batch stays queued
                logger.exception("outbox relay pass failed")
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            database_outage.recovered()
            if published:
                redis_outage.recovered()
            claim_at_once = published == self.batch_size
            if not claim_at_once:
                await asyncio.sleep(self.poll_interval)

    # -- connections -------------------------------------------------------------------------------------------

    async def _connect(self) -> AsyncConnection[Any]:
        return await AsyncConnection.connect(
            self.database_url,
            autocommit=True,
            application_name=self.application_name,
            options=_WORK_OPTIONS,
            # A half-open TCP connection would keep a statement waiting forever; keepalives make it an error.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        return self._conn

    async def _drop_closed_connection(self) -> None:
        if self._conn is not None and self._conn.closed:
            await self._conn.close()
            self._conn = None

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
