"""The realtime socket: who receives which booking events, flight subscriptions, auth, bad input, heartbeats,
slow clients, Redis outages, and fan-out across API processes.

"Does not receive" is shown without sleeping: after the event a socket must not see, a second event it is entitled
to is published; the hub routes in order and each socket's queue is FIFO, so the first frame it gets must be the
second event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import signal
import socket
import sys
import uuid
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings
from arq.connections import create_pool as create_arq_pool
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core_api.auth.schemas import Principal
from core_api.auth.tokens import decode_access_token, issue_access_token
from core_api.outbox import BOOKING_EVENT_TYPES, EVENTS_CHANNEL
from core_api.outbox.relay import OutboxRelay
from core_api.realtime import Hub, HubOptions
from core_api.realtime.schemas import BOOKING_EVENT_NAMES
from core_api.settings import Settings
from core_api.storage.db import DbPool
from core_api.users.schemas import Role
from tests.bookings.conftest import add_small_flight, booking_request
from tests.conftest import REPO_ROOT, TEST_JWT_KEYS
from tests.realtime.conftest import (
    AIRLINE,
    OTHER_AIRLINE,
    WAIT_SECONDS,
    Account,
    Inbox,
    MakeAccount,
    Relay,
    booking_event,
    log_in,
    new_flight_id,
    of_booking,
    open_socket,
    wait_for_port,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.ports import free_port

Sockets = Callable[..., contextlib.AbstractAsyncContextManager[Inbox]]


async def test_the_owner_receives_its_booking_and_another_customer_does_not(
    make_account: MakeAccount, sockets: Sockets, relay: Relay
) -> None:
    owner, stranger = await make_account(), await make_account()
    async with sockets(owner) as owner_socket, sockets(stranger, via="query") as stranger_socket:
        owners_booking, strangers_booking = booking_event(customer=owner), booking_event(customer=stranger)
        await relay.publish(owners_booking, strangers_booking)

        frame = await owner_socket.next("booking:created")
        assert frame["data"] == owners_booking.payload
        assert datetime.fromisoformat(frame["at"]) == owners_booking.created_at
        assert frame["at"].endswith("Z")
        first_seen_by_stranger = await stranger_socket.next("booking:created")
        assert first_seen_by_stranger["data"]["booking_id"] == strangers_booking.payload["booking_id"]


async def test_the_booking_agent_the_airlines_agents_and_admins_receive_it(
    make_account: MakeAccount, sockets: Sockets, relay: Relay
) -> None:
    customer = await make_account()
    travel_agent, other_travel_agent = await make_account(Role.TRAVEL_AGENT), await make_account(Role.TRAVEL_AGENT)
    airline_agent = await make_account(Role.AIRLINE_AGENT)
    other_airline_agent = await make_account(Role.AIRLINE_AGENT, airline=OTHER_AIRLINE)
    admin, business_owner = await make_account(Role.ADMIN), await make_account(Role.BUSINESS_OWNER)
    async with contextlib.AsyncExitStack() as stack:
        entitled = [await stack.enter_async_context(sockets(a)) for a in (travel_agent, airline_agent, admin)]
        other_agent_socket = await stack.enter_async_context(sockets(other_travel_agent))
        other_airline_socket = await stack.enter_async_context(sockets(other_airline_agent))
        owner_socket = await stack.enter_async_context(sockets(business_owner))
        flight_id = new_flight_id()
        await owner_socket.subscribe(flight_id)

        booking = booking_event("booking.confirmed", customer=customer, agent=travel_agent, flight_id=flight_id)
        sentinel = booking_event(agent=other_travel_agent, airline=OTHER_AIRLINE)
        await relay.publish(booking, sentinel)

        for inbox in entitled:
            assert (await inbox.next("booking:confirmed"))["data"] == booking.payload
        assert (await other_agent_socket.next_frame())["data"] == sentinel.payload
        assert (await other_airline_socket.next_frame())["data"] == sentinel.payload
        # A business owner sees no booking events, even of a flight it follows: only its availability.
        assert (await owner_socket.next_frame())["event"] == "flight:availability"


async def test_every_booking_event_type_has_its_client_name(
    make_account: MakeAccount, sockets: Sockets, relay: Relay
) -> None:
    assert set(BOOKING_EVENT_NAMES) == BOOKING_EVENT_TYPES
    customer = await make_account()
    async with sockets(customer) as inbox:
        events = [
            booking_event(event_type, customer=customer, status="EXPIRED" if event_type == "booking.expired" else "X")
            for event_type in sorted(BOOKING_EVENT_TYPES)
        ]
        await relay.publish(*events)
        for event in events:
            frame = await inbox.next(BOOKING_EVENT_NAMES[event.event_type], where=of_booking(event))
            assert frame["data"] == event.payload
        expired = next(event for event in events if event.event_type == "booking.expired")
        assert BOOKING_EVENT_NAMES["booking.expired"] == "booking:updated"
        assert expired.payload["status"] == "EXPIRED"


async def test_a_repeated_or_foreign_event_is_not_delivered_twice_or_at_all(
    make_account: MakeAccount, sockets: Sockets, relay: Relay
) -> None:
    customer = await make_account()
    async with sockets(customer) as inbox:
        booking = booking_event(customer=customer)
        not_a_booking = msgspec.structs.replace(booking_event(customer=customer), aggregate_type="payment")
        await relay.publish_raw(b"not an outbox event")
        await relay.publish(booking, booking, not_a_booking)
        await relay.publish(sentinel := booking_event("booking.updated", customer=customer))
        assert (await inbox.next_frame())["data"] == booking.payload
        assert (await inbox.next_frame())["data"] == sentinel.payload


async def test_availability_reaches_only_the_flights_subscribers(
    make_account: MakeAccount, sockets: Sockets, relay: Relay
) -> None:
    buyer, watcher, other_watcher, bystander = [await make_account() for _ in range(4)]
    flight, other_flight = new_flight_id(), new_flight_id()
    async with sockets(watcher) as watching, sockets(other_watcher) as watching_other, sockets(bystander) as idle:
        await watching.subscribe(flight)
        await watching_other.subscribe(other_flight)

        booking = booking_event(customer=buyer, flight_id=flight, seats_available=7)
        await relay.publish(booking, booking_event(customer=buyer, flight_id=other_flight, seats_available=3))
        await relay.publish(own := booking_event(customer=bystander))

        frame = await watching.next_frame()
        assert frame["event"] == "flight:availability"
        assert frame["data"] == booking.payload["availability"]
        assert (await watching_other.next_frame())["data"]["flight_id"] == other_flight
        assert (await idle.next_frame())["data"] == own.payload

        await watching.send({"unsubscribe": f"flight:{flight}"})
        await watching.next("unsubscribed")
        await relay.publish(booking_event(customer=buyer, flight_id=flight))
        await relay.publish(own := booking_event(customer=watcher))
        assert (await watching.next_frame())["data"] == own.payload


@pytest.mark.parametrize("credentials", ["none", "garbage", "revoked"])
async def test_a_socket_without_a_valid_token_is_closed_with_4401_before_any_frame(
    make_account: MakeAccount, http: httpx.AsyncClient, port: int, credentials: str
) -> None:
    query = ""
    if credentials == "garbage":
        query = "?token=not.a.jwt"
    elif credentials == "revoked":
        account = await make_account()
        logout = await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {account.token}"})
        assert logout.status_code == 204
        query = f"?token={account.token}"
    async with connect(f"ws://127.0.0.1:{port}/api/v1/ws{query}") as connection:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv(), WAIT_SECONDS)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_the_bearer_subprotocol_is_accepted_back(make_account: MakeAccount, port: int) -> None:
    account = await make_account()
    async with open_socket(port, account) as inbox:
        assert inbox.connection.subprotocol == "bearer"


async def test_a_socket_closes_with_4401_when_its_session_ends(
    make_account: MakeAccount, http: httpx.AsyncClient, port: int
) -> None:
    account = await make_account()
    # The app of the `port` fixture re-checks tokens every recheck_seconds (0.5 s in these tests).
    async with open_socket(port, account) as inbox:
        logout = await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {account.token}"})
        assert logout.status_code == 204
        with pytest.raises(ConnectionClosed) as closed:
            await inbox.next("never")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert closed.value.rcvd.reason == "access token revoked"


@pytest.mark.parametrize(
    ("role", "change"),
    [(Role.ADMIN, {"role": "CUSTOMER"}), (Role.AIRLINE_AGENT, {"airline_code": OTHER_AIRLINE})],
    ids=["admin-demoted", "agent-moved-to-another-airline"],
)
async def test_a_socket_closes_when_its_users_access_changes(
    make_account: MakeAccount, http: httpx.AsyncClient, port: int, role: Role, change: dict[str, str]
) -> None:
    # The socket chose what to deliver by the role it connected with; it must not keep an ADMIN's (or another
    # airline's) view for the rest of its token's life once that access is gone.
    account, admin = await make_account(role), await make_account(Role.ADMIN)
    async with open_socket(port, account) as inbox:
        headers = {"Authorization": f"Bearer {admin.token}"}
        changed = await http.put(f"/api/v1/users/{account.id}", json=change, headers=headers)
        assert changed.status_code == 200, changed.text
        with pytest.raises(ConnectionClosed) as closed:
            await inbox.next("never")
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "access changed")


async def test_a_socket_closes_with_4401_when_its_token_expires(
    make_account: MakeAccount, realtime_settings: Settings, served_app: Any, port: int
) -> None:
    account = await make_account()
    keyring = served_app.state.auth.keyring
    claims = decode_access_token(keyring, realtime_settings, account.token)
    short_lived = msgspec.structs.replace(
        realtime_settings, auth=msgspec.structs.replace(realtime_settings.auth, access_ttl_seconds=2)
    )
    token, _ = issue_access_token(
        keyring, short_lived, user_id=account.user.id, role=account.user.role.value, session_id=claims.sid
    )
    async with open_socket(port, Account(account.user, token)) as inbox:
        with pytest.raises(ConnectionClosed) as closed:
            await inbox.next("never")
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "access token expired")


async def test_bad_messages_are_answered_with_errors_and_the_socket_keeps_working(
    make_account: MakeAccount, sockets: Sockets, hub_options: HubOptions
) -> None:
    account = await make_account()
    bad_frames: list[str | bytes] = [
        "not json",
        "[]",
        '{"subscribe": 42}',
        '{"subscribe": "flight:abc"}',
        '{"subscribe": "bus:1"}',
        '{"subscribe": "flight:0"}',
        '{"dance": true}',
        '{"subscribe": "flight:1", "unsubscribe": "flight:2"}',
        "{}",
        b"\xff\x00",
        '{"subscribe": "' + "x" * 5000 + '"}',
    ]
    async with sockets(account) as inbox:
        for frame in bad_frames:
            await inbox.connection.send(frame)
            error = await inbox.next_frame()
            assert error["event"] == "error", frame
            assert error["data"]["message"]
        for flight_id in range(1, hub_options.max_subscriptions + 1):
            await inbox.subscribe(flight_id)
        await inbox.send({"subscribe": f"flight:{hub_options.max_subscriptions + 1}"})
        assert (await inbox.next_frame())["data"]["message"] == "at most 50 subscriptions per connection"
        await inbox.subscribe(1)  # already followed: not a new subscription


async def test_heartbeats_arrive_at_the_configured_interval(make_account: MakeAccount, sockets: Sockets) -> None:
    account = await make_account()
    async with sockets(account) as inbox:
        frame = msgspec.json.decode(await asyncio.wait_for(inbox.connection.recv(), 1.5))
        assert frame["event"] == "heartbeat"
        assert datetime.fromisoformat(frame["at"]).tzinfo == UTC


async def _never_reading_socket(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the handshake and then never reads again (tiny receive buffer)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=raw)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /api/v1/ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_SECONDS)
    assert head.startswith(b"HTTP/1.1 101"), head
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    transport.pause_reading()
    return reader, writer


async def test_a_client_that_stops_reading_is_dropped_without_delaying_the_others(
    make_account: MakeAccount, sockets: Sockets, relay: Relay, port: int, served_app: Any
) -> None:
    customer = await make_account()
    hub: Hub = served_app.state.hub
    _, slow = await _never_reading_socket(port, customer.token)
    try:
        async with sockets(customer) as fast:
            await _eventually(lambda: hub.connections_of(customer.user.id) == 2)
            # 200 x 32 kB: more than the kernel and server buffers of the slow socket hold, so its sends block,
            # in bursts the fast client's queue (32 frames in these tests) holds whatever the order of the tasks.
            for _ in range(20):
                events = [booking_event(customer=customer, padding="x" * 32_000) for _ in range(10)]
                await relay.publish(*events)
                for event in events:
                    assert (await fast.next("booking:created"))["data"]["booking_id"] == event.payload["booking_id"]
            await _eventually(lambda: hub.connections_of(customer.user.id) == 1)
            await relay.publish(last := booking_event(customer=customer))
            await fast.next("booking:created", where=of_booking(last))
    finally:
        slow.transport.abort()


async def _eventually(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling state that has no event to wait on
            await asyncio.sleep(0.02)


def _principal(role: Role = Role.CUSTOMER) -> Principal:
    return Principal(
        id=uuid.uuid4(), role=role, airline_code=None, session_id=uuid.uuid4(), token_id=uuid.uuid4(),
        token_expires_at=2**40,
    )  # fmt: skip


async def test_the_hub_survives_redis_going_away_and_resubscribes(realtime_redis_url: str, relay: Relay) -> None:
    options = HubOptions(backoff_initial_seconds=0.05, backoff_max_seconds=0.2, channel=relay.channel)
    async with FaultProxy.for_redis(realtime_redis_url) as proxy:
        proxy.refuse()
        client = aioredis.Redis.from_url(
            proxy.rewrite_redis_url(realtime_redis_url), socket_timeout=0.5, socket_connect_timeout=0.5
        )
        hub = Hub(client, options)
        started = asyncio.get_running_loop().time()
        await hub.start()  # Redis down: the hub starts anyway, at once
        assert asyncio.get_running_loop().time() - started < 1.5
        assert not hub.listening.is_set()
        subscriber = hub.connect(_principal(Role.ADMIN))
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def collect(frame: str) -> None:
            received.put_nowait(msgspec.json.decode(frame))

        pump = asyncio.create_task(subscriber.pump(collect))
        try:
            proxy.heal()
            await asyncio.wait_for(hub.listening.wait(), WAIT_SECONDS)
            await relay.publish(first := booking_event())
            assert (await asyncio.wait_for(received.get(), WAIT_SECONDS))["data"] == first.payload

            assert proxy.cut() >= 1  # the subscription's connection is reset under it
            # Pub/sub keeps nothing for absent subscribers: publish until the resubscribed hub hears one.
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    await relay.publish(booking_event())
                    with contextlib.suppress(TimeoutError):
                        assert (await asyncio.wait_for(received.get(), 0.2))["event"] == "booking:created"
                        break
            assert hub.listening.is_set()
        finally:
            pump.cancel()
            await hub.stop()
            await client.aclose()
        assert subscriber.closing


# -- two API processes -------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def api_process(database_url: str, redis_url: str, log: Path) -> AsyncIterator[tuple[Process, int]]:
    """``flightdesk api`` started as its own OS process (granian, one worker) on a free port, stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "FLIGHTDESK_ENV": "test",
        "FLIGHTDESK_DATABASE_URL": database_url,
        "FLIGHTDESK_REDIS_URL": redis_url,
        "FLIGHTDESK_DATABASE_POOL_MIN": "1",
        "FLIGHTDESK_AUTH_JWT_KEYS": TEST_JWT_KEYS,
        "FLIGHTDESK_RATE_LIMITS": "10000/second",
    }
    command = ("-m", "core_api.cli", "api", "--workers", "1", "--host", "127.0.0.1", "--port", str(port))
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, env=env, cwd=REPO_ROOT, stdout=output, stderr=output, start_new_session=True
        )  # fmt: skip
        try:
            yield process, port
        finally:
            # Its own session: the signal reaches granian and its worker, nothing else.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def test_an_event_reaches_sockets_on_every_api_process(
    realtime_database: str,
    realtime_redis_url: str,
    make_account: MakeAccount,
    tmp_path: Path,
) -> None:
    async with (
        api_process(realtime_database, realtime_redis_url, tmp_path / "api-1.log") as (first, first_port),
        api_process(realtime_database, realtime_redis_url, tmp_path / "api-2.log") as (second, second_port),
    ):
        await asyncio.gather(
            wait_for_port(first_port, seconds=20, alive=lambda: first.returncode is None),
            wait_for_port(second_port, seconds=20, alive=lambda: second.returncode is None),
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{second_port}") as second_api:
            customer = await make_account()
            admin = await make_account(Role.ADMIN)
            admin = Account(admin.user, await log_in(second_api, admin.user))  # a token issued by the other process
        async with (
            Relay.connect(realtime_redis_url, EVENTS_CHANNEL) as relay,
            open_socket(first_port, customer) as on_first,
            open_socket(second_port, admin) as on_second,
        ):
            await relay.publish(booking := booking_event(customer=customer))
            assert (await on_first.next("booking:created", where=of_booking(booking)))["data"] == booking.payload
            assert (await on_second.next("booking:created", where=of_booking(booking)))["data"] == booking.payload


async def test_a_booking_made_on_one_api_process_reaches_its_owner_on_another_and_nobody_else(
    realtime_database: str,
    realtime_redis_url: str,
    realtime_pool: DbPool,
    make_account: MakeAccount,
    tmp_path: Path,
) -> None:
    """End to end: POST /bookings on one process, the real outbox relay, the WebSocket on the other process."""
    async with realtime_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES"
            " ('JFK', 'John F Kennedy', 'New York', 'US', 'America/New_York', 40.6, -73.8),"
            " ('LHR', 'Heathrow', 'London', 'GB', 'Europe/London', 51.5, -0.5) ON CONFLICT DO NOTHING"
        )
    flight = await add_small_flight(realtime_pool, airline=AIRLINE, number=f"{AIRLINE}{random.randint(1000, 9999)}")
    owner, other = await make_account(), await make_account()
    redis: ArqRedis = await create_arq_pool(RedisSettings.from_dsn(realtime_redis_url))
    relay = OutboxRelay(realtime_database, redis)
    await relay.start()
    try:
        async with (
            api_process(realtime_database, realtime_redis_url, tmp_path / "api-1.log") as (first, first_port),
            api_process(realtime_database, realtime_redis_url, tmp_path / "api-2.log") as (second, second_port),
        ):
            await asyncio.gather(
                wait_for_port(first_port, seconds=20, alive=lambda: first.returncode is None),
                wait_for_port(second_port, seconds=20, alive=lambda: second.returncode is None),
            )
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{second_port}") as api,
                open_socket(first_port, owner) as owners_socket,
                open_socket(first_port, other) as others_socket,
            ):
                booked = await api.post(
                    "/api/v1/bookings", json=booking_request(flight), headers={"Authorization": f"Bearer {owner.token}"}
                )
                assert booked.status_code == 201, booked.text
                mine = await owners_socket.next("booking:created")
                assert (mine["data"]["booking_id"], mine["data"]["pnr"]) == (booked.json()["id"], booked.json()["pnr"])

                # The other customer's first booking event must be their own booking's, not the owner's.
                theirs = await api.post(
                    "/api/v1/bookings", json=booking_request(flight), headers={"Authorization": f"Bearer {other.token}"}
                )
                assert theirs.status_code == 201, theirs.text
                seen = await others_socket.next("booking:created")
                assert seen["data"]["booking_id"] == theirs.json()["id"]
    finally:
        await relay.stop()
        await redis.aclose()
