"""Fixtures for notification tests: a real SMTP server (aiosmtpd, in this process), the worker's context, and a
confirmed booking to mail about.

Events are written to the outbox the way their domains write them (payments writes ``payment.*`` by the payload
contract; here they are written directly), then handed to ``dispatch_event`` exactly as the relay hands them.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import httpx
import msgspec
import pytest
from aiosmtpd.controller import Controller
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker, func

from core_api.notifications import handlers as _handlers  # noqa: F401 - registers the outbox handlers
from core_api.notifications.delivery import Mailer
from core_api.notifications.jobs import Notifier, send_notification
from core_api.outbox import OutboxEvent, emit
from core_api.outbox.dispatch import dispatch_event
from core_api.security.crypto import parse_keys
from core_api.storage.db import DbPool, transaction
from core_api.users.schemas import Role
from tests.bookings.conftest import SmallFlight, add_small_flight, adult, booking_request
from tests.conftest import TEST_CRYPTO_KEYS
from tests.support.accounts import Account, MakeAccount, new_account
from tests.support.ports import free_port

PUBLIC_URL = "https://flightdesk.test"


class SmtpServer:
    """aiosmtpd on a port of its own, keeping every mail it accepts; it can refuse the next N mails (451), or be
    stopped and started again on the same port (down for a while)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.refuse_next = 0
        self.delay = 0.0
        self.rcpt_delay = 0.0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 4.3.0 Try again later"
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.received.append(parsed)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, recipient: str) -> list[EmailMessage]:
        return [message for message in self.received if message["To"] == recipient]


def parts(message: EmailMessage) -> tuple[str, str]:
    """(plain text, HTML) of a mail."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


@pytest.fixture
def smtp() -> Any:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def arq_redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
def notifier(pool: DbPool, arq_redis: ArqRedis, smtp: SmtpServer) -> Notifier:
    return Notifier(
        pool=pool,
        redis=arq_redis,
        mailer=Mailer(host="127.0.0.1", port=smtp.port, timeout=5.0),
        public_url=PUBLIC_URL,
        retry_base=0.1,
        reminder_hours=24,
        cipher=parse_keys(TEST_CRYPTO_KEYS),
    )


RunWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
def run_worker(arq_redis: ArqRedis, notifier: Notifier) -> RunWorker:
    """Run a burst worker (the worker's notification functions) until the queue is empty, deferred retries
    included."""

    async def run(*, max_jobs: int = 10, within: float = 20.0) -> Worker:
        worker = Worker(
            functions=[dispatch_event, func(send_notification, keep_result=0, max_tries=20, timeout=30)],
            redis_pool=arq_redis,
            burst=True,
            handle_signals=False,
            poll_delay=0.02,
            max_jobs=max_jobs,
            ctx={"notifier": notifier, "redis": arq_redis},
        )
        async with asyncio.timeout(within):
            await worker.main()
        return worker

    return run


async def write_event(pool: DbPool, event_type: str, aggregate: tuple[str, object], payload: dict[str, Any]) -> UUID:
    async with transaction(pool) as tx:
        return await emit(tx, event_type, aggregate, payload)


async def outbox_event(pool: DbPool, event_id: UUID) -> OutboxEvent:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT id, seq, event_type, aggregate_type, aggregate_id, payload, created_at"
                " FROM outbox_events WHERE id = %s",
                (event_id,),
            )
        ).fetchone()
    assert row is not None
    return msgspec.convert(row, OutboxEvent)


async def relay_all(pool: DbPool, arq_redis: ArqRedis) -> list[UUID]:
    """Enqueue every unpublished outbox event as the relay does (job id = event id), and mark them published."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT id FROM outbox_events WHERE published_at IS NULL ORDER BY seq")
        ).fetchall()
    ids = [row["id"] for row in rows]
    for event_id in ids:
        event = await outbox_event(pool, event_id)
        await arq_redis.enqueue_job("dispatch_event", msgspec.json.encode(event).decode(), _job_id=str(event.id))
    async with pool.connection() as conn:
        await conn.execute("UPDATE outbox_events SET published_at = now() WHERE id = ANY(%s)", (ids,))
    return ids


async def dispatch(pool: DbPool, notifier: Notifier, event_id: UUID) -> None:
    """Run the handlers of one outbox event directly, as a ``dispatch_event`` job would."""
    event = await outbox_event(pool, event_id)
    await dispatch_event({"notifier": notifier, "redis": notifier.redis}, msgspec.json.encode(event).decode())


async def notifications(pool: DbPool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return list(await (await conn.execute("SELECT * FROM notifications ORDER BY created_at, id")).fetchall())


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__name__} not reached in {within}s")
        await asyncio.sleep(0.05)


class ConfirmedBooking(msgspec.Struct, frozen=True):
    id: str
    pnr: str
    contact_email: str
    customer: Account
    flight: SmallFlight


@pytest.fixture
async def reference_data(pool: DbPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
                ('JFK', 'John F Kennedy International Airport', 'New York', 'US', 'America/New_York', 40.64, -73.78),
                ('LHR', 'London Heathrow Airport', 'London', 'GB', 'Europe/London', 51.47, -0.45);
            """
        )


@pytest.fixture
def make_account(pool: DbPool, client: httpx.AsyncClient, reference_data: None) -> MakeAccount:
    numbers = itertools.count(1)

    async def make(role: Role = Role.CUSTOMER, *, full_name: str | None = None) -> Account:
        number = next(numbers)
        airline = "BA" if role is Role.AIRLINE_AGENT else None
        return await new_account(pool, client, role, number, full_name=full_name, airline_code=airline)

    return make


@pytest.fixture
async def customer(make_account: MakeAccount) -> Account:
    return await make_account(Role.CUSTOMER)


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    return await make_account(Role.ADMIN)


@pytest.fixture
async def flight(pool: DbPool, reference_data: None) -> SmallFlight:
    return await add_small_flight(pool)


async def book(
    pool: DbPool, client: httpx.AsyncClient, customer: Account, flight: SmallFlight, *passengers: dict[str, Any]
) -> ConfirmedBooking:
    """A booking made through the API, then confirmed as a succeeded payment would confirm it."""
    response = await client.post(
        "/api/v1/bookings", json=booking_request(flight, *(passengers or (adult(),))), headers=customer.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE bookings SET status = 'CONFIRMED', confirmed_at = now() WHERE id = %s", (body["id"],)
        )
        row = await (await conn.execute("SELECT contact_email FROM bookings WHERE id = %s", (body["id"],))).fetchone()
        # The booking.created event is not a mail; the tests write the events they mean.
        await conn.execute("UPDATE outbox_events SET published_at = now() WHERE published_at IS NULL")
    assert row is not None
    return ConfirmedBooking(
        id=body["id"], pnr=body["pnr"], contact_email=row["contact_email"], customer=customer, flight=flight
    )


@pytest.fixture
async def booking(pool: DbPool, client: httpx.AsyncClient, customer: Account, flight: SmallFlight) -> ConfirmedBooking:
    return await book(pool, client, customer, flight)


def payment_payload(booking: ConfirmedBooking, **extra: Any) -> dict[str, Any]:
    """A ``payment.*`` payload by the contract payments writes."""
    return {
        "payment_id": "pay_0001",
        "booking_id": booking.id,
        "pnr": booking.pnr,
        "amount": 45000,
        "currency": "USD",
        "customer_id": booking.customer.id,
        "contact_email": booking.contact_email,
        **extra,
    }
