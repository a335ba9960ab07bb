"""The outbox relay delivers every committed event to Redis pub/sub and the arq queue, in order, through faults.

Each test subscribes to the events channel the way the WebSocket hub does and looks only at the events it emitted
itself (pub/sub channels are shared by every Redis database, so other suites' events may pass by).
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job
from arq.worker import Worker

from core_api.outbox import EVENTS_CHANNEL, OutboxEvent, dispatch, emit
from core_api.outbox.relay import OutboxRelay, backlog
from core_api.storage.db import DbPool, transaction
from core_api.worker import on_shutdown, on_startup
from tests.support.fault_proxy import FaultProxy

# The relay's default: how often an idle relay looks for events.
POLL_INTERVAL = 0.05
# Long, so that a backlog drained well under it cannot have waited an interval between batches.
SLOW_POLL = 5.0
FAST = 1.0
RELAY_LOGGER = "core_api.outbox.relay"

_decoder = msgspec.json.Decoder(OutboxEvent)


class EventFeed:
    """The events channel as a subscriber sees it: every event, decoded, in arrival order."""

    def __init__(self, pubsub: aioredis.client.PubSub) -> None:
        self._pubsub = pubsub
        self.received: list[OutboxEvent] = []

    async def _receive(self) -> None:
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            with contextlib.suppress(msgspec.DecodeError):
                self.received.append(_decoder.decode(message["data"]))

    def of(self, ids: Iterable[UUID]) -> list[OutboxEvent]:
        """The received events among ``ids``, in arrival order, duplicates included."""
        wanted = set(ids)
        return [event for event in self.received if event.id in wanted]

    async def until(self, ids: Iterable[UUID], *, times: int = 1, within: float = 5.0) -> list[OutboxEvent]:
        """Wait until each of ``ids`` arrived ``times`` times; returns :meth:`of` ``ids``."""
        wanted = list(ids)
        deadline = time.monotonic() + within
        while True:
            counts = Counter(event.id for event in self.of(wanted))
            missing = [event_id for event_id in wanted if counts[event_id] < times]
            if not missing:
                return self.of(wanted)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} of {len(wanted)} events not received {times}x in {within}s")
            await self._receive()

    async def settle(self, seconds: float = 0.5) -> None:
        """Keep receiving for ``seconds``, so a duplicate published late would show."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    await self._receive()


@pytest.fixture
async def feed(redis_url: str) -> AsyncIterator[EventFeed]:
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(EVENTS_CHANNEL)
    # Read the confirmation: from here on nothing published to the channel can be missed.
    confirmation = await pubsub.get_message(timeout=5.0)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"
    try:
        yield EventFeed(pubsub)
    finally:
        await pubsub.aclose()
        await client.aclose()


@pytest.fixture
async def arq_redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    """The worker's Redis: an arq pool, as ``ctx["redis"]`` is."""
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        yield redis
    finally:
        await redis.aclose()


StartRelay = Callable[..., Awaitable[OutboxRelay]]


@pytest.fixture
async def start_relay(database_url: str) -> AsyncIterator[StartRelay]:
    """Start relays on the test database (quick retries, the default polling); all are stopped after the test."""
    relays: list[OutboxRelay] = []

    async def start(redis: ArqRedis, **options: Any) -> OutboxRelay:
        relay = OutboxRelay(
            database_url, redis, **{"poll_interval": POLL_INTERVAL, "retry_initial": 0.05, "retry_max": 0.3, **options}
        )
        await relay.start()
        relays.append(relay)
        return relay

    try:
        yield start
    finally:
        for relay in relays:
            await relay.stop()


async def emit_events(pool: DbPool, count: int = 1, *, event_type: str = "booking.created") -> list[UUID]:
    """Commit ``count`` events in one transaction; their ids in write order."""
    async with transaction(pool) as tx:
        return [await emit(tx, event_type, ("booking", f"booking-{n}"), {"n": n}) for n in range(count)]


async def outbox_rows(pool: DbPool) -> dict[UUID, dict[str, Any]]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT id, seq, published_at, attempts, last_error FROM outbox_events")
        return {row["id"]: row for row in await cursor.fetchall()}


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__name__} not reached in {within}s")
        await asyncio.sleep(0.05)


async def all_published(pool: DbPool, ids: Iterable[UUID]) -> bool:
    rows = await outbox_rows(pool)
    return all(rows[event_id]["published_at"] is not None for event_id in ids)


async def relay_backends(pool: DbPool, relay: OutboxRelay) -> list[int]:
    """The pids of the relay's connections, found the way an operator would: by their application_name."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (relay.application_name,),
        )
        return [row["pid"] for row in await cursor.fetchall()]


async def test_committed_event_is_published_enqueued_and_marked_published(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay
) -> None:
    await start_relay(arq_redis)
    async with transaction(pool) as tx:
        event_id = await emit(tx, "booking.created", ("booking", "b-1"), {"pnr": "ABC234", "seats": 2})

    [event] = await feed.until([event_id])
    assert (event.event_type, event.aggregate_type, event.aggregate_id) == ("booking.created", "booking", "b-1")
    assert event.payload == {"pnr": "ABC234", "seats": 2}
    assert event.created_at.tzinfo is not None

    await eventually(lambda: all_published(pool, [event_id]))
    row = (await outbox_rows(pool))[event_id]
    assert (row["attempts"], row["last_error"]) == (0, None)
    job = await Job(str(event_id), arq_redis).info()
    assert job is not None
    assert job.function == "dispatch_event"
    assert _decoder.decode(job.args[0]) == event


async def test_rolled_back_transaction_publishes_nothing(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay
) -> None:
    await start_relay(arq_redis)
    ghost: list[UUID] = []

    async def failing_change() -> None:
        async with transaction(pool) as tx:
            ghost.append(await emit(tx, "booking.created", ("booking", "ghost"), {}))
            raise RuntimeError("the change failed after emitting its event")

    with pytest.raises(RuntimeError, match="change failed"):
        await failing_change()
    marker = await emit_events(pool)

    await feed.until(marker)
    assert feed.of(ghost) == []
    assert await Job(str(ghost[0]), arq_redis).info() is None
    assert set(await outbox_rows(pool)) == set(marker)


async def test_an_event_goes_out_within_a_few_poll_intervals(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay
) -> None:
    await start_relay(arq_redis)
    await feed.until(await emit_events(pool))  # the relay has done its first passes and now polls

    latencies = []
    for _ in range(5):
        await asyncio.sleep(POLL_INTERVAL * 1.5)  # commit at some point of the relay's wait, not right after a pass
        started = time.monotonic()
        await feed.until(await emit_events(pool), within=FAST * 5)
        latencies.append(time.monotonic() - started)
    assert max(latencies) < FAST
    assert sorted(latencies)[len(latencies) // 2] < POLL_INTERVAL * 4


async def test_a_backlog_of_several_batches_drains_without_a_poll_interval_between_batches(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay
) -> None:
    written: list[UUID] = []
    for _ in range(5):  # 50 events, seven batches of 8
        written += await emit_events(pool, 10)

    started = time.monotonic()
    await start_relay(arq_redis, batch_size=8, poll_interval=SLOW_POLL)
    await feed.until(written, within=SLOW_POLL * 2)
    assert time.monotonic() - started < SLOW_POLL  # waiting an interval per batch would take six of them
    await eventually(lambda: all_published(pool, written))


async def test_committing_an_event_sends_no_notification(pool: DbPool, database_url: str) -> None:
    """A NOTIFY at commit takes a server-wide lock through the WAL flush: outbox writers must not send one."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = 'outbox_events'::regclass AND p.prosrc ILIKE '%notify%'"
        )
        assert await cursor.fetchall() == []

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN outbox_events")
        await emit_events(pool, 3)
        await emit_events(pool)
        assert [n async for n in listener.notifies(timeout=0.5)] == []


async def test_events_are_published_in_seq_order_across_batches(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay
) -> None:
    written: list[UUID] = []
    for _ in range(6):  # a backlog of 30 events from 6 transactions, waiting before the relay starts
        written += await emit_events(pool, 5)
    await start_relay(arq_redis, batch_size=7)
    written += await emit_events(pool, 4)  # and more while it runs

    events = await feed.until(written)
    assert [event.id for event in events] == written
    seqs = [event.seq for event in events]
    assert seqs == sorted(seqs)


async def test_two_relays_at_once_publish_each_event_once(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay
) -> None:
    written: list[UUID] = []
    for _ in range(10):
        written += await emit_events(pool, 30)

    await asyncio.gather(
        start_relay(arq_redis, batch_size=20, application_name="relay-a"),
        start_relay(arq_redis, batch_size=20, application_name="relay-b"),
    )
    await feed.until(written, within=15.0)
    await feed.settle()

    await eventually(lambda: all_published(pool, written))
    assert Counter(event.id for event in feed.of(written)) == Counter(written)
    assert await arq_redis.zcard("arq:queue") == len(written)


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_events_wait_while_redis_is_down_and_all_go_out_when_it_is_back(
    pool: DbPool,
    feed: EventFeed,
    redis_url: str,
    start_relay: StartRelay,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    caplog.set_level(logging.INFO, logger=RELAY_LOGGER)
    async with FaultProxy.for_redis(redis_url) as proxy:
        redis_through_proxy = await create_pool(RedisSettings.from_dsn(proxy.rewrite_redis_url(redis_url)))
        try:
            # A refused connection fails at once; a blackholed one only when the relay's Redis timeout runs out.
            relay = await start_relay(redis_through_proxy, redis_timeout=0.3)
            getattr(proxy, fault)()
            written = await emit_events(pool, 3) + await emit_events(pool, 2)

            async def retried_and_kept() -> bool:
                rows = (await outbox_rows(pool)).values()
                return all(row["attempts"] >= 3 and row["published_at"] is None for row in rows)

            await eventually(retried_and_kept)
            rows = await outbox_rows(pool)
            assert all(rows[event_id]["last_error"] for event_id in written)
            async with pool.connection() as conn:
                assert (await backlog(conn)).pending == len(written)
            outage_warnings = [r for r in caplog.records if r.name == RELAY_LOGGER and r.levelno == logging.WARNING]
            assert len(outage_warnings) == 1  # one line for the outage, not one per event or per retry

            proxy.heal()
            await feed.until(written, within=10.0)
            await eventually(lambda: all_published(pool, written))
            for event_id in written:
                assert await Job(str(event_id), redis_through_proxy).info() is not None
            async with pool.connection() as conn:
                assert (await backlog(conn)).pending == 0
            assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
            await relay.stop()
        finally:
            await redis_through_proxy.aclose()


async def test_relay_recovers_when_its_connection_is_killed(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RELAY_LOGGER)
    relay = await start_relay(arq_redis)
    await feed.until(await emit_events(pool))
    [killed] = await relay_backends(pool, relay)  # one connection: it polls and publishes
    async with pool.connection() as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (killed,))

    await feed.until(await emit_events(pool, 3))

    async def reconnected_once_and_said_so() -> bool:
        messages = [r.getMessage() for r in caplog.records if r.name == RELAY_LOGGER]
        backends = await relay_backends(pool, relay)
        return (
            len(backends) == 1
            and killed not in backends
            and any("cannot use PostgreSQL" in message for message in messages)
            and any("uses PostgreSQL again" in message for message in messages)
        )

    await eventually(reconnected_once_and_said_so)

    started = time.monotonic()
    await feed.until(await emit_events(pool))
    assert time.monotonic() - started < FAST  # polling at its interval again, not backing off


async def test_republished_event_runs_its_handlers_once(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, start_relay: StartRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[UUID] = []

    async def record(ctx: dict[str, Any], event: OutboxEvent) -> None:
        handled.append(event.id)

    monkeypatch.setattr(dispatch, "_handlers", {})
    dispatch.register_handler("booking.confirmed", record)
    dispatch.register_handler("booking.confirmed", record)  # registering twice does not run it twice
    await start_relay(arq_redis)
    [confirmed] = await emit_events(pool, event_type="booking.confirmed")
    [unhandled] = await emit_events(pool, event_type="booking.updated")
    await feed.until([confirmed, unhandled])
    await eventually(lambda: all_published(pool, [confirmed, unhandled]))

    # As if a relay had crashed after publishing but before marking the row: the event goes out again.
    async with pool.connection() as conn:
        await conn.execute("UPDATE outbox_events SET published_at = NULL WHERE id = %s", (confirmed,))
    await feed.until([confirmed], times=2)
    await eventually(lambda: all_published(pool, [confirmed]))

    worker = Worker(
        functions=[dispatch.dispatch_event], redis_pool=arq_redis, burst=True, handle_signals=False, poll_delay=0.05
    )
    assert await worker.run_check() == 2  # both jobs ran without failing, the event without handlers included
    assert handled == [confirmed]


async def test_worker_runs_the_relay_from_startup_to_shutdown(
    pool: DbPool, feed: EventFeed, arq_redis: ArqRedis, database_url: str
) -> None:
    ctx: dict[str, Any] = {"redis": arq_redis, "database_url": database_url}
    await on_startup(ctx)
    try:
        await feed.until(await emit_events(pool))
    finally:
        await on_shutdown(ctx)

    async def relay_disconnected() -> bool:
        async with pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'flightdesk-outbox-relay%%'"
            )
            row = await cursor.fetchone()
        return row is not None and row["n"] == 0

    await eventually(relay_disconnected)
