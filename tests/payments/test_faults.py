"""Faults at the worst moment: a webhook whose database connection dies mid-transaction, and a provider that
declines a refund.
"""

from __future__ import annotations

import asyncio

import httpx
import psycopg
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.payments.providers import ProviderRefused
from tests.payments.conftest import (
    PAYMENTS,
    Account,
    SmallFlight,
    book,
    deliver,
    intent_id,
    paid_booking,
    rows,
    start_payment,
    stripe_event,
)
from tests.support.waits import backend_waiting_on_the_outbox


async def test_a_webhook_whose_connection_dies_before_commit_leaves_nothing_and_its_retry_applies_once(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    database_url: str,
    customer: Account,
    flight: SmallFlight,
) -> None:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    intent = await intent_id(pool, payment["id"])
    payload = stripe_event("payment_intent.succeeded", {"id": intent, "object": "payment_intent"}, event_id="evt_k")
    async with await psycopg.AsyncConnection.connect(database_url) as blocker:
        await blocker.execute("LOCK TABLE outbox_events IN SHARE MODE")
        pending = asyncio.ensure_future(deliver(client, payload))
        pid = await backend_waiting_on_the_outbox(database_url)
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        response = await pending
        await blocker.rollback()

    assert response.status_code == 503  # the provider retries any non-2xx
    assert await rows(pool, "SELECT id FROM webhook_events") == []
    [kept] = await rows(pool, "SELECT status FROM bookings WHERE id = %s", booking["id"])
    assert kept["status"] == "PENDING_PAYMENT"
    assert await rows(pool, "SELECT status FROM seats WHERE status = 'OCCUPIED'") == []

    retried = await deliver(client, payload)
    assert retried.status_code == 200
    assert retried.json()["duplicate"] is False
    assert (await deliver(client, payload)).json()["duplicate"] is True
    confirmed = await rows(pool, "SELECT id FROM outbox_events WHERE event_type = 'booking.confirmed'")
    assert len(confirmed) == 1


class _Declining:
    name = "sandbox"

    def __init__(self, real: object) -> None:
        self.real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    async def refund(self, **_: object) -> None:
        raise ProviderRefused("Stripe refused: charge already disputed")


async def test_a_refund_the_provider_declines_is_failed_and_no_longer_counts(
    app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, admin: Account,
    flight: SmallFlight,
) -> None:  # fmt: skip
    _, payment = await paid_booking(client, customer, flight)
    app.state.payments.provider = _Declining(app.state.payments.provider)
    response = await client.post(f"{PAYMENTS}/{payment['id']}/refund", json={"amount": 500}, headers=admin.headers)
    assert response.status_code == 201
    assert response.json()["status"] == "FAILED"
    [row] = await rows(pool, "SELECT status, amount_refunded FROM payments")
    assert row == {"status": "SUCCEEDED", "amount_refunded": 0}
    assert await rows(pool, "SELECT id FROM outbox_events WHERE event_type = 'payment.refunded'") == []
    failed = await rows(
        pool, "SELECT event_type FROM audit_logs WHERE event_type IN ('refund.failed', 'payment.refund_failed')"
    )
    assert len(failed) == 2
