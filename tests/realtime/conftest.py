"""Fixtures for realtime tests: the app served by granian on a real TCP port, logged-in users, and event publishing.

Sockets are real WebSocket connections (the ``websockets`` client) to a real server: the app runs in granian's
embedded server inside the test's event loop, so the hub, the server and the clients are all really concurrent.
Events are injected exactly as the outbox relay sends them: ``OutboxEvent`` JSON PUBLISHed on the events channel
(a channel of the module's own, except in the test across API processes, which uses the real one).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from granian.constants import Interfaces
from granian.server.embed import Server
from litestar import Litestar
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from core_api.app import create_app
from core_api.audit.service import SYSTEM
from core_api.outbox import EVENTS_CHANNEL, OutboxEvent
from core_api.realtime import HubOptions
from core_api.settings import Settings, load_settings
from core_api.storage.db import DbPool, create_pool, transaction
from core_api.users.schemas import Role, User
from core_api.users.service import create_user
from tests.conftest import TEST_JWT_KEYS, cloned_database, suite_redis_url
from tests.support.ports import free_port

PASSWORD = "correct horse battery"
AIRLINE = "FD"
OTHER_AIRLINE = "ZZ"
WAIT_SECONDS = 5.0
"""Upper bound of every wait for a frame; a passing test waits milliseconds."""


class Account(msgspec.Struct, frozen=True):
    user: User
    token: str

    @property
    def id(self) -> str:
        return str(self.user.id)


MakeAccount = Callable[..., Awaitable[Account]]


async def wait_for_port(port: int, *, seconds: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if not alive() or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


@contextlib.asynccontextmanager
async def serve_on_port(app: Litestar) -> AsyncIterator[int]:
    """Serve ``app`` (lifespan included) with granian's embedded server in this loop; yields the port."""
    port = free_port()
    server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI, log_enabled=False)
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for_port(port, seconds=10, alive=lambda: not serving.done())
        yield port
    finally:
        server.stop()
        await asyncio.wait_for(serving, 10)


@pytest.fixture(scope="module")
async def realtime_database(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """One database for the module: every test makes its own users and flight ids, so they do not meet."""
    async with cloned_database(postgres_url, template_database) as url:
        yield url


@pytest.fixture(scope="module")
async def realtime_redis_url(redis_server_url: str) -> str:
    url = suite_redis_url(redis_server_url)
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


@pytest.fixture(scope="module")
def realtime_settings(realtime_database: str, realtime_redis_url: str) -> Settings:
    return load_settings(
        {
            "FLIGHTDESK_ENV": "test",
            "FLIGHTDESK_DATABASE_URL": realtime_database,
            "FLIGHTDESK_REDIS_URL": realtime_redis_url,
            "FLIGHTDESK_DATABASE_POOL_MIN": "1",
            "FLIGHTDESK_AUTH_JWT_KEYS": TEST_JWT_KEYS,
            "FLIGHTDESK_RATE_LIMITS": "10000/second",
        },
        dotenv=None,
    )


@pytest.fixture(scope="module")
async def realtime_pool(realtime_settings: Settings, realtime_database: str) -> AsyncIterator[DbPool]:
    pool = create_pool(realtime_settings, realtime_database, name="flightdesk-realtime-tests")
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def hub_options(events_channel: str) -> HubOptions:
    return HubOptions(heartbeat_seconds=0.5, queue_size=32, recheck_seconds=0.5, channel=events_channel)


@pytest.fixture(scope="module")
def served_app(realtime_settings: Settings, hub_options: HubOptions) -> Litestar:
    return create_app(realtime_settings, realtime=hub_options)


@pytest.fixture(scope="module")
async def port(served_app: Litestar) -> AsyncIterator[int]:
    """Port of the module's API server (its own database and Redis database), with a fast-beating hub."""
    async with serve_on_port(served_app) as port:
        yield port


@pytest.fixture(scope="module")
async def http(port: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client


@pytest.fixture(scope="module")
async def airlines(realtime_pool: DbPool) -> tuple[str, str]:
    async with realtime_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO airlines (code, name, country) VALUES (%s, 'Flightdesk Air', 'US'), (%s, 'Other Air', 'US')",
            (AIRLINE, OTHER_AIRLINE),
        )
    return AIRLINE, OTHER_AIRLINE


async def log_in(http: httpx.AsyncClient, user: User) -> str:
    response = await http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def make_account(realtime_pool: DbPool, airlines: tuple[str, str], http: httpx.AsyncClient) -> MakeAccount:
    """A new user of a role (made as ``flightdesk create-user`` does), logged in through the API."""

    async def make(role: Role = Role.CUSTOMER, *, airline: str = AIRLINE) -> Account:
        number = next(_user_numbers)
        async with transaction(realtime_pool) as tx:
            user = await create_user(
                tx,
                SYSTEM,
                email=f"{role.lower()}{number}@example.com",
                password=PASSWORD,
                full_name=f"{role.title().replace('_', ' ')} {number}",
                role=role,
                airline_code=airline if role is Role.AIRLINE_AGENT else None,
            )
        return Account(user, await log_in(http, user))

    return make


_user_numbers = itertools.count(1)


class Relay:
    """Publishes events on a channel exactly as the outbox relay does (``OutboxEvent`` JSON)."""

    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self.redis = redis
        self.channel = channel

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, channel: str) -> AsyncIterator[Relay]:
        client = aioredis.Redis.from_url(url)
        try:
            yield cls(client, channel)
        finally:
            await client.aclose()

    async def publish(self, *events: OutboxEvent) -> None:
        for event in events:
            await self.redis.publish(self.channel, msgspec.json.encode(event))

    async def publish_raw(self, data: bytes) -> None:
        await self.redis.publish(self.channel, data)


@pytest.fixture(scope="module")
def events_channel() -> str:
    """The module server's channel: pub/sub channels span a Redis server's databases, so parallel runs (and the
    outbox tests, which subscribe to the real channel) would otherwise hear each other's events."""
    return f"{EVENTS_CHANNEL}:test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def relay(realtime_redis_url: str, events_channel: str) -> AsyncIterator[Relay]:
    async with Relay.connect(realtime_redis_url, events_channel) as relay:
        yield relay


def new_flight_id() -> int:
    # The events channel is shared by every database of a Redis server; random ids keep parallel runs apart.
    return random.randint(10**9, 10**12)


def booking_event(
    event_type: str = "booking.created",
    *,
    customer: Account | None = None,
    agent: Account | None = None,
    airline: str = AIRLINE,
    flight_id: int | None = None,
    status: str = "PENDING_PAYMENT",
    seats_available: int = 41,
    **extra: Any,
) -> OutboxEvent:
    """A booking event shaped as the bookings service writes it (the payload contract of the realtime hub)."""
    booking_id = uuid.uuid4()
    flight_id = flight_id or new_flight_id()
    return OutboxEvent(
        id=uuid.uuid4(),
        seq=random.randint(1, 10**9),
        event_type=event_type,
        aggregate_type="booking",
        aggregate_id=str(booking_id),
        payload={
            "booking_id": str(booking_id),
            "pnr": "ABC234",
            "status": status,
            "flight_id": flight_id,
            "airline_code": airline,
            "customer_id": customer.id if customer else None,
            "agent_id": agent.id if agent else None,
            "seat_count": 1,
            "total": {"amount": 12_900, "currency": "USD"},
            "availability": {
                "flight_id": flight_id,
                "cabin": "ECONOMY",
                "fare_class": "Y",
                "seats_available": seats_available,
            },
            **extra,
        },
        created_at=datetime.now(UTC),
    )


class Inbox:
    """A client socket read frame by frame, with bounded waits."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def next(self, event: str, *, where: Callable[[dict[str, Any]], bool] = lambda data: True) -> dict[str, Any]:
        """The next frame named ``event`` whose data matches, skipping others (heartbeats, other events)."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                frame: dict[str, Any] = msgspec.json.decode(await self.connection.recv())
                if frame["event"] == event and where(frame["data"]):
                    return frame

    async def next_frame(self) -> dict[str, Any]:
        """The next frame that is not a heartbeat."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                frame: dict[str, Any] = msgspec.json.decode(await self.connection.recv())
                if frame["event"] != "heartbeat":
                    return frame

    async def send(self, command: Any) -> None:
        await self.connection.send(msgspec.json.encode(command).decode())

    async def subscribe(self, flight_id: int) -> None:
        await self.send({"subscribe": f"flight:{flight_id}"})
        await self.next("subscribed", where=lambda data: data["topic"] == f"flight:{flight_id}")


def of_booking(event: OutboxEvent) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data.get("booking_id") == event.payload["booking_id"]


@contextlib.asynccontextmanager
async def open_socket(port: int, account: Account, *, via: str = "subprotocol") -> AsyncIterator[Inbox]:
    """A connected, authenticated socket (``connected`` frame read), token offered as subprotocol or query."""
    if via == "subprotocol":
        offered = [Subprotocol("bearer"), Subprotocol(account.token)]
        connecting = connect(f"ws://127.0.0.1:{port}/api/v1/ws", subprotocols=offered)
    else:
        connecting = connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={account.token}")
    async with connecting as connection:
        inbox = Inbox(connection)
        await inbox.next("connected")
        yield inbox


@pytest.fixture
def sockets(port: int) -> Callable[..., contextlib.AbstractAsyncContextManager[Inbox]]:
    def opener(account: Account, **options: Any) -> contextlib.AbstractAsyncContextManager[Inbox]:
        return open_socket(port, account, **options)

    return opener
