"""Tests of the fault-injection proxy, against real PostgreSQL and Redis servers and a unix-socket echo server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from .fault_proxy import FaultProxy, postgres_upstream, redis_upstream


async def _eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def _connect_pg(conninfo: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(conninfo, connect_timeout=5)


async def _select_one(conn: psycopg.AsyncConnection) -> None:
    cur = await conn.execute("select 1")
    assert await cur.fetchone() == (1,)


@pytest.fixture
async def echo_socket() -> AsyncIterator[str]:
    """A unix-socket echo server (closes its side after the client's EOF); yields the socket path."""
    directory = tempfile.mkdtemp(prefix="fp-", dir="/tmp")
    path = str(Path(directory) / "echo.sock")
    handlers: set[asyncio.Task[object]] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(echo, path)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        shutil.rmtree(directory, ignore_errors=True)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), 5)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _assert_dropped(reader: asyncio.StreamReader) -> None:
    """The proxy closed or reset this connection: reading ends with EOF or a reset, without data."""
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 2) == b""


# -- PostgreSQL ---------------------------------------------------------------------------------------------------


async def test_postgres_through_proxy(postgres_url: str) -> None:
    async with FaultProxy.for_postgres(postgres_url) as proxy:
        assert proxy.host == "127.0.0.1"
        assert proxy.address == ("127.0.0.1", proxy.port)
        async with await _connect_pg(proxy.rewrite_postgres_url(postgres_url)) as conn:
            await _select_one(conn)
            assert proxy.active_connections == 1
            assert proxy.connections_total >= 1
        await _eventually(lambda: proxy.active_connections == 0)


async def test_cut_mid_transaction_then_heal(postgres_url: str) -> None:
    async with FaultProxy.for_postgres(postgres_url) as proxy:
        url = proxy.rewrite_postgres_url(postgres_url)
        conn = await _connect_pg(url)
        try:
            await _select_one(conn)  # opens a transaction (autocommit is off)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            total = proxy.connections_total

            assert proxy.cut() == 1
            assert proxy.active_connections == 0
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                await conn.execute("select 2")
            assert time.monotonic() - started < 2
            assert conn.closed
        finally:
            await conn.close()

        # cut() keeps accepting: a new connection works straight away, and after heal() too.
        async with await _connect_pg(url) as fresh:
            await _select_one(fresh)
        proxy.heal()
        async with await _connect_pg(url) as fresh:
            await _select_one(fresh)
        assert proxy.connections_total >= total + 2


async def test_delay_adds_latency_and_zero_removes_it(postgres_url: str) -> None:
    async with FaultProxy.for_postgres(postgres_url) as proxy:
        async with await _connect_pg(proxy.rewrite_postgres_url(postgres_url)) as conn:
            await _select_one(conn)
            proxy.delay(0.2)
            started = time.monotonic()
            await _select_one(conn)
            assert time.monotonic() - started >= 0.2
            proxy.delay(0)
            started = time.monotonic()
            await _select_one(conn)
            assert time.monotonic() - started < 0.2
        with pytest.raises(ValueError, match=">= 0"):
            proxy.delay(-1)


async def test_refuse_then_heal_on_the_same_port(postgres_url: str) -> None:
    async with FaultProxy.for_postgres(postgres_url) as proxy:
        url = proxy.rewrite_postgres_url(postgres_url)
        port = proxy.port
        conn = await _connect_pg(url)
        try:
            await _select_one(conn)
            proxy.refuse()
            assert proxy.mode == "refused"
            assert proxy.active_connections == 0
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(*proxy.address)
            with pytest.raises(psycopg.OperationalError):
                await conn.execute("select 1")
            with pytest.raises(psycopg.OperationalError, match="refused"):
                await _connect_pg(url)
        finally:
            await conn.close()

        proxy.heal()
        assert proxy.port == port
        async with await _connect_pg(url) as conn:
            await _select_one(conn)


# -- Redis --------------------------------------------------------------------------------------------------------


async def test_blackhole_makes_redis_time_out_and_heal_restores(redis_url: str) -> None:
    async with FaultProxy.for_redis(redis_url) as proxy:
        client = aioredis.Redis.from_url(
            proxy.rewrite_redis_url(redis_url), socket_timeout=0.3, socket_connect_timeout=1, retry_on_timeout=False
        )
        try:
            assert await client.ping()
            proxy.blackhole()
            assert proxy.mode == "blackhole"
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await client.ping()
            assert time.monotonic() - started < 2
            proxy.heal()
            assert proxy.mode == "normal"
            assert await client.ping()
        finally:
            await client.aclose()


# -- unix-socket upstream and lifecycle ---------------------------------------------------------------------------


async def test_unix_socket_upstream(echo_socket: str) -> None:
    async with FaultProxy(echo_socket) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            assert await _echo(reader, writer, b"hello") == b"hello"
            assert await _echo(reader, writer, b"x" * 200_000) == b"x" * 200_000
            assert (proxy.connections_total, proxy.active_connections) == (1, 1)

            proxy.delay(0.1)
            started = time.monotonic()
            assert await _echo(reader, writer, b"slow") == b"slow"
            assert time.monotonic() - started >= 0.2  # 0.1 s each way
            proxy.delay(0)

            # Half-close travels through: the echo server sees EOF and closes, and so do we.
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            await _close(writer)
        await _eventually(lambda: proxy.active_connections == 0)


async def test_blackhole_swallows_data_and_keeps_connections(echo_socket: str) -> None:
    async with FaultProxy(echo_socket) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            proxy.blackhole()
            writer.write(b"lost")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(10), 0.2)
            # New connections are accepted and hang as well.
            reader2, writer2 = await asyncio.open_connection(*proxy.address)
            try:
                writer2.write(b"lost too")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(reader2.read(10), 0.2)
                assert proxy.active_connections == 2
                proxy.heal()
                assert await _echo(reader, writer, b"back") == b"back"
                assert await _echo(reader2, writer2, b"back") == b"back"
            finally:
                await _close(writer2)
        finally:
            await _close(writer)


async def test_stop_with_hung_connections_is_fast_and_leaks_no_task(echo_socket: str) -> None:
    before = asyncio.all_tasks()
    proxy = FaultProxy(echo_socket)
    with pytest.raises(RuntimeError, match="not started"):
        _ = proxy.port
    async with proxy:
        hung_reader, hung_writer = await asyncio.open_connection(*proxy.address)
        proxy.blackhole()
        hung_writer.write(b"never answered")
        proxy.heal()
        slow_reader, slow_writer = await asyncio.open_connection(*proxy.address)
        proxy.delay(30)
        slow_writer.write(b"stuck in the delay")
        await asyncio.sleep(0.05)
        proxy.blackhole()
        started = time.monotonic()
    assert time.monotonic() - started < 1
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    for reader, writer in ((hung_reader, hung_writer), (slow_reader, slow_writer)):
        await _assert_dropped(reader)
        await _close(writer)
    await proxy.stop()  # idempotent
    with pytest.raises(RuntimeError, match="stopped"):
        proxy.heal()


# -- URL helpers --------------------------------------------------------------------------------------------------


def test_upstream_from_urls() -> None:
    assert postgres_upstream("postgresql://postgres@/postgres?host=/run/pg&port=5433") == "/run/pg/.s.PGSQL.5433"
    assert postgres_upstream("host=db.local port=6000 dbname=x") == ("db.local", 6000)
    assert postgres_upstream("postgresql://u@10.0.0.1/x") == ("10.0.0.1", 5432)
    assert redis_upstream("redis://:pw@cache:6380/2") == ("cache", 6380)
    assert redis_upstream("unix:///run/r/redis.sock?db=3") == "/run/r/redis.sock"


async def test_rewrite_urls() -> None:
    async with FaultProxy(("127.0.0.1", 9)) as proxy:
        port = proxy.port
        rewritten = psycopg.conninfo.conninfo_to_dict(
            proxy.rewrite_postgres_url("postgresql://app:secret@/flightdesk?host=/run/pg&port=5433&sslmode=disable")
        )
        assert rewritten == {
            "user": "app",
            "password": "secret",
            "dbname": "flightdesk",
            "host": "127.0.0.1",
            "port": str(port),
            "sslmode": "disable",
        }
        tcp = psycopg.conninfo.conninfo_to_dict(proxy.rewrite_postgres_url("host=db port=5432 user=u dbname=d"))
        assert (tcp["host"], tcp["port"], tcp["dbname"]) == ("127.0.0.1", str(port), "d")

        assert proxy.rewrite_redis_url("redis://:pw@cache:6380/2?health_check_interval=5") == (
            f"redis://:pw@127.0.0.1:{port}/2?health_check_interval=5"
        )
        assert proxy.rewrite_redis_url("redis://localhost") == f"redis://127.0.0.1:{port}"
        assert proxy.rewrite_redis_url("unix:///run/r/redis.sock?db=3&password=pw") == (
            f"redis://127.0.0.1:{port}/3?password=pw"
        )


async def test_unreachable_upstream_drops_the_client() -> None:
    async with FaultProxy(("127.0.0.1", 9), connect_timeout=1) as proxy:  # discard port: nothing listens
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            await _assert_dropped(reader)
        finally:
            await _close(writer)
        await _eventually(lambda: proxy.active_connections == 0)
        assert proxy.connections_total == 1
