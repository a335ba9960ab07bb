"""The outbox relay: publishes committed ``outbox_events`` rows to Redis, at least once, in write order.

One relay runs in each ``flightdesk worker`` process. It keeps two PostgreSQL connections of its own: one that only
``LISTEN``s on ``outbox_events`` (the insert trigger notifies it as each event commits) and one that does the work.
It wakes on a notification, or every ``poll_interval`` in case one was missed or the listening connection is down.

Each pass claims the oldest unpublished events (a batch, ``FOR UPDATE SKIP LOCKED`` so several workers can share the
outbox without publishing an event twice), publishes each to the pub/sub channel :data:`EVENTS_CHANNEL` as
:class:`OutboxEvent` JSON, enqueues the arq job ``dispatch_event`` with the event id as job id, and only then marks
the batch published and commits. When Redis fails the batch is rolled back, its ``attempts`` and ``last_error`` are
updated in a short transaction of their own, and the relay backs off and retries: nothing is lost, and an event
may be published more than once (consumers de-duplicate by event id; see :mod:`core_api.outbox.dispatch`).

Order: events go out in ``seq`` order, batch after batch. ``seq`` is taken at insert, so an event whose transaction
commits later than a newer one's can follow it; changes to one aggregate are serialised by its row lock and keep
their order. With several relays, batches are disjoint but may interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec
import psycopg
from psycopg import AsyncConnection, sql
from redis.exceptions import RedisError

from core_api.outbox import EVENTS_CHANNEL, OutboxEvent
from core_api.storage.db import load_queries, struct_row

if TYPE_CHECKING:
    from arq.connections import ArqRedis

__all__ = ["DISPATCH_JOB", "LISTEN_CHANNEL", "Backlog", "OutboxRelay", "RedisUnavailable", "backlog"]

logger = logging.getLogger(__name__)

QUERIES = load_queries("outbox")

LISTEN_CHANNEL = "outbox_events"
"""The PostgreSQL notification channel the ``outbox_events`` insert trigger signals."""
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
        poll_interval: float = 1.0,
        retry_initial: float = 0.5,
        retry_max: float = 15.0,
        redis_timeout: float = 5.0,
        application_name: str = "flightdesk-outbox-relay",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.database_url = database_url
        self.redis = redis
        self.channel = channel
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.redis_timeout = redis_timeout
        self.application_name = application_name
        self._wake = asyncio.Event()
        self._conn: AsyncConnection[Any] | None = None
        self._listen_conn: AsyncConnection[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def listen_application_name(self) -> str:
        """``application_name`` of the listening connection, as ``pg_stat_activity`` shows it."""
        return f"{self.application_name}-listen"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open both connections (a bad DSN fails here, loudly), then relay in the background until :meth:`stop`."""
        if self._tasks:
            raise RuntimeError("OutboxRelay already started")
        try:
            self._listen_conn = await self._connect_listener()
            self._conn = await self._connect()
        except BaseException:
            await self._close_connections()
            raise
        self._tasks = [
            asyncio.create_task(self._listen(), name="outbox-relay-listen"),
            asyncio.create_task(self._relay(), name="outbox-relay"),
        ]

    async def stop(self) -> None:
        """Cancel the background tasks (a batch in flight rolls back and goes out later) and close the connections."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                logger.error("outbox relay task %s had failed", task.get_name(), exc_info=task.exception())
        await self._close_connections()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- one pass ----------------------------------------------------------------------------------------------

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

    # -- background tasks --------------------------------------------------------------------------------------

    async def _relay(self) -> None:
        backoff = _Backoff(self.retry_initial, self.retry_max)
        redis_outage = _Outage("cannot reach Redis", "reaches Redis again")
        database_outage = _Outage("cannot use PostgreSQL", "uses PostgreSQL again")
        while True:
            # Cleared before the pass: a notification arriving during it triggers the next pass at once.
            self._wake.clear()
            try:
                published = await self._publish_batch()
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
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()

    async def _listen(self) -> None:
        """Wake the relay on every notification; when the connection drops, reconnect with backoff."""
        backoff = _Backoff(self.retry_initial, self.retry_max)
        outage = _Outage("lost its LISTEN connection, polling meanwhile", "is listening again")
        while True:
            conn = self._listen_conn
            if conn is None:
                try:
                    conn = self._listen_conn = await self._connect_listener()
                except psycopg.Error as exc:
                    outage.failed(exc)
                    await asyncio.sleep(backoff.next())
                    continue
                outage.recovered()
                backoff.reset()
                self._wake.set()  # events may have committed while nobody listened
            try:
                async for _ in conn.notifies():
                    self._wake.set()
            except psycopg.Error as exc:
                outage.failed(exc)
            self._listen_conn = None
            await conn.close()
            await asyncio.sleep(backoff.next())

    # -- connections -------------------------------------------------------------------------------------------

    async def _connect(self) -> AsyncConnection[Any]:
        return await AsyncConnection.connect(
            self.database_url, autocommit=True, application_name=self.application_name, options=_WORK_OPTIONS
        )

    async def _connect_listener(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(
            self.database_url,
            autocommit=True,
            application_name=self.listen_application_name,
            options="-c TimeZone=UTC",
            # A half-open TCP connection would keep ``notifies()`` waiting forever; keepalives make it an error.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(LISTEN_CHANNEL)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        return self._conn

    async def _drop_closed_connection(self) -> None:
        if self._conn is not None and self._conn.closed:
            await self._conn.close()
            self._conn = None

    async def _close_connections(self) -> None:
        conns = (self._conn, self._listen_conn)
        self._conn = self._listen_conn = None
        for conn in conns:
            if conn is not None:
                await conn.close()
