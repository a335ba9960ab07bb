"""The ``stripe`` provider: the real Stripe SDK against ``localstripe`` on a loopback port (with the additions of
``tests/support/localstripe_server.py``: idempotency keys, ``charge.refunded``, injected faults).

The whole confirmation path is real: our API creates the PaymentIntent through the SDK, the test confirms it at
localstripe as Stripe.js would, localstripe signs and POSTs ``payment_intent.succeeded`` to a loopback receiver
that hands it, as received, to our ``/webhooks/stripe``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe
from aiohttp import web
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.payments.service import PaymentService
from core_api.settings import Settings
from tests.conftest import REPO_ROOT
from tests.payments.conftest import (
    PAYMENTS,
    WEBHOOK,
    WEBHOOK_SECRET,
    Account,
    SmallFlight,
    book,
    intent_id,
    payment_settings,
    rows,
    start_payment,
)
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "tests.support.localstripe_server", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("localstripe did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def settings(database_url: str, redis_url: str, localstripe: str) -> Settings:
    return payment_settings(
        database_url,
        redis_url,
        FLIGHTDESK_PAYMENT_PROVIDER="stripe",
        FLIGHTDESK_STRIPE_API_BASE=localstripe,
        FLIGHTDESK_STRIPE_SECRET_KEY="sk_test_flightdesk",
        FLIGHTDESK_PAYMENT_PROVIDER_TIMEOUT_SECONDS="3",
    )


@pytest.fixture
def stripe_client(localstripe: str) -> stripe.StripeClient:
    """The customer's side (Stripe.js, in production), to confirm intents at localstripe."""
    return stripe.StripeClient(
        "sk_test_flightdesk", base_addresses={"api": localstripe}, http_client=stripe.HTTPXClient()
    )


@pytest.fixture
async def webhook_receiver(client: httpx.AsyncClient, localstripe: str) -> AsyncIterator[list[int]]:
    """A loopback URL registered with localstripe; what arrives goes on to our webhook path, bytes and headers as
    they are. Yields the statuses our endpoint answered.
    """
    statuses: list[int] = []

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            "Stripe-Signature": request.headers.get("Stripe-Signature", ""),
            "Content-Type": "application/json",
        }
        answer = await client.post(WEBHOOK, content=body, headers=headers)
        statuses.append(answer.status_code)
        return web.Response(status=answer.status_code)

    app = web.Application()
    app.router.add_post("/hook", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with httpx.AsyncClient() as http:
        registration = await http.post(
            f"{localstripe}/_config/webhooks/flightdesk",
            data={"url": f"http://127.0.0.1:{port}/hook", "secret": WEBHOOK_SECRET},
        )
        assert registration.status_code == 200
    try:
        yield statuses
    finally:
        await runner.cleanup()


async def _until(predicate_query: str, pool: AsyncConnectionPool, *params: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await rows(pool, predicate_query, *params):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for: {predicate_query}")


async def _pay_at_stripe(stripe_client: stripe.StripeClient, intent: str) -> None:
    method = await stripe_client.v1.payment_methods.create_async(
        {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    await stripe_client.v1.payment_intents.update_async(intent, {"payment_method": method.id})
    await stripe_client.v1.payment_intents.confirm_async(intent)


async def test_an_intent_paid_at_stripe_confirms_the_booking_through_the_signed_webhook(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    flight: SmallFlight,
    stripe_client: stripe.StripeClient,
    webhook_receiver: list[int],
) -> None:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    assert payment["provider"] == "stripe"
    intent = await intent_id(pool, payment["id"])
    at_stripe = await stripe_client.v1.payment_intents.retrieve_async(intent)
    assert at_stripe.amount == booking["total"]["amount"]
    assert at_stripe.metadata["booking_id"] == booking["id"]
    assert payment["client_secret"] == at_stripe.client_secret

    await _pay_at_stripe(stripe_client, intent)

    await _until("SELECT 1 FROM bookings WHERE id = %s AND status = 'CONFIRMED'", pool, booking["id"])
    assert 200 in webhook_receiver
    [stored] = await rows(pool, "SELECT status, provider_customer_enc, payment_method_enc FROM payments")
    assert stored["status"] == "SUCCEEDED"
    assert stored["payment_method_enc"] is not None


async def test_a_refund_goes_to_stripe_once_and_its_charge_refunded_event_changes_nothing_more(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    admin: Account,
    flight: SmallFlight,
    stripe_client: stripe.StripeClient,
    webhook_receiver: list[int],
) -> None:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    intent = await intent_id(pool, payment["id"])
    await _pay_at_stripe(stripe_client, intent)
    await _until("SELECT 1 FROM payments WHERE status = 'SUCCEEDED'", pool)

    response = await client.post(f"{PAYMENTS}/{payment['id']}/refund", json={"amount": 5000}, headers=admin.headers)

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "SUCCEEDED"
    refunds = await stripe_client.v1.refunds.list_async({"payment_intent": intent})
    assert [refund.amount for refund in refunds.data] == [5000]
    await _until("SELECT 1 FROM webhook_events WHERE type = 'charge.refunded' AND processed_at IS NOT NULL", pool)
    [stored] = await rows(pool, "SELECT amount_refunded FROM payments")
    assert stored["amount_refunded"] == 5000
    assert len(await rows(pool, "SELECT id FROM refunds")) == 1


async def test_a_stripe_that_does_not_answer_is_a_503_and_nothing_is_written(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight, localstripe: str
) -> None:
    booking = await book(client, customer, flight)
    before = await rows(pool, "SELECT count(*) AS n FROM outbox_events")
    async with httpx.AsyncClient() as http:
        injected = await http.post(
            f"{localstripe}/_test/fail/v1/payment_intents", headers={"Authorization": "Bearer sk_test_flightdesk"}
        )
        assert injected.status_code == 200
    response = await client.post(
        PAYMENTS, json={"booking_id": booking["id"]}, headers={**customer.headers, "Idempotency-Key": "k-503"}
    )
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert await rows(pool, "SELECT id FROM payments") == []
    assert await rows(pool, "SELECT count(*) AS n FROM outbox_events") == before
    assert await rows(pool, "SELECT key FROM idempotency_keys") == []
    created = await rows(pool, "SELECT id FROM audit_logs WHERE event_type = 'payment.created'")
    assert created == []
    retried = await client.post(
        PAYMENTS, json={"booking_id": booking["id"]}, headers={**customer.headers, "Idempotency-Key": "k-503"}
    )
    assert retried.status_code == 201


async def test_an_unreachable_stripe_is_a_503_and_nothing_is_written(
    app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight,
    database_url: str, redis_url: str,
) -> None:  # fmt: skip
    closed = payment_settings(
        database_url,
        redis_url,
        FLIGHTDESK_PAYMENT_PROVIDER="stripe",
        FLIGHTDESK_STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}",
        FLIGHTDESK_STRIPE_SECRET_KEY="sk_test_flightdesk",
    )
    live: PaymentService = app.state.payments
    app.state.payments = PaymentService(live.pool, closed, live.cipher)
    booking = await book(client, customer, flight)
    response = await client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=customer.headers)
    assert response.status_code == 503
    assert await rows(pool, "SELECT id FROM payments") == []
    assert await rows(pool, "SELECT id FROM outbox_events WHERE event_type = 'booking.payment_pending'") == []
