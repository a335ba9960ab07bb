"""A payment against the clock and at rest: money after the hold lapsed (seats free again, or sold), refunds the
provider did not answer (the reconciler), and the provider's ids encrypted in the database.
"""

from __future__ import annotations

import asyncio
import base64

import httpx
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.bookings.service import release_lapsed_holds
from core_api.payments.providers import ProviderRefund, ProviderUnavailable
from core_api.payments.service import reconcile_pending_refunds
from core_api.security.crypto import parse_keys
from tests.conftest import TEST_CRYPTO_KEYS
from tests.payments.conftest import (
    PAYMENTS,
    Account,
    SmallFlight,
    book,
    deliver,
    paid_booking,
    rows,
    settle,
    start_payment,
    stripe_event,
)


async def _lapse(app: Litestar, pool: AsyncConnectionPool, booking_id: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE bookings SET hold_expires_at = now() - interval '1 minute' WHERE id = %s", (booking_id,)
        )
    assert await release_lapsed_holds(app.state.bookings) == 1


async def test_money_after_the_hold_lapsed_retakes_free_seats(
    app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    await _lapse(app, pool, booking["id"])

    await settle(client, customer, payment["id"])

    late = (await client.get(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).json()
    assert late["status"] == "CONFIRMED"
    assert "hold lapsed" in late["status_reason"]
    [fare] = await rows(pool, "SELECT seats_available FROM flight_prices WHERE flight_id = %s AND fare_class = 'M'",
                        flight.id)  # fmt: skip
    assert fare["seats_available"] == 2


async def test_money_after_the_hold_lapsed_and_the_seats_sold_is_refunded_automatically(
    app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    await _lapse(app, pool, booking["id"])
    async with pool.connection() as conn:
        await conn.execute("UPDATE flight_prices SET seats_available = 0 WHERE flight_id = %s", (flight.id,))

    settled = await settle(client, customer, payment["id"])

    assert settled["status"] == "REFUNDED"
    assert settled["refunds"][0]["source"] == "automatic"
    late = (await client.get(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).json()
    assert late["status"] == "EXPIRED"
    assert "refunded automatically" in late["status_reason"]
    types = [row["event_type"] for row in await rows(pool, "SELECT event_type FROM outbox_events ORDER BY seq")]
    assert "booking.confirmed" not in types
    assert types[-2:] == ["payment.succeeded", "payment.refunded"]


class _Outage:
    """A provider whose refunds do not answer until it is told to come back."""

    name = "sandbox"

    def __init__(self, real: object) -> None:
        self.real = real
        self.down = True
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderRefund:
        self.calls.append(idempotency_key)
        if self.down:
            raise ProviderUnavailable("connection refused")
        return ProviderRefund(id=f"re_{idempotency_key[-12:]}", status="succeeded")


async def test_a_refund_the_provider_did_not_answer_stays_pending_and_the_reconciler_settles_it_once(
    app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, admin: Account,
    flight: SmallFlight,
) -> None:  # fmt: skip
    _, payment = await paid_booking(client, customer, flight)
    payments = app.state.payments
    outage = _Outage(payments.provider)
    payments.provider = outage

    response = await client.post(f"{PAYMENTS}/{payment['id']}/refund", json={"amount": 700}, headers=admin.headers)

    assert response.status_code == 201
    assert response.json()["status"] == "PENDING"
    async with pool.connection() as conn:
        await conn.execute("UPDATE refunds SET updated_at = now() - interval '1 hour'")
    assert await reconcile_pending_refunds(payments) == 1  # still down: asked again, still pending
    outage.down = False
    async with pool.connection() as conn:
        await conn.execute("UPDATE refunds SET updated_at = now() - interval '1 hour'")
    assert await reconcile_pending_refunds(payments) == 1
    assert await reconcile_pending_refunds(payments) == 0
    [refund] = await rows(pool, "SELECT status, attempts FROM refunds")
    assert refund == {"status": "SUCCEEDED", "attempts": 2}
    assert len(set(outage.calls)) == 1  # one idempotency key for every attempt
    assert len(await rows(pool, "SELECT id FROM outbox_events WHERE event_type = 'payment.refunded'")) == 1


async def test_provider_ids_are_encrypted_at_rest_and_open_after_a_key_rotation(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    _, payment = await paid_booking(client, customer, flight)
    [row] = await rows(
        pool, "SELECT provider_customer_enc, payment_method_enc, client_secret_enc, crypto_key_version FROM payments"
    )
    customer_enc = bytes(row["provider_customer_enc"])
    assert b"cus_" not in customer_enc
    assert b"pm_" not in bytes(row["payment_method_enc"])
    assert b"secret" not in bytes(row["client_secret_enc"])
    assert row["crypto_key_version"] == 1
    assert customer_enc[0] == 1  # the key id travels with the ciphertext
    new_key = base64.b64encode(b"n" * 32).decode()
    rotated = parse_keys(f"2:{new_key},{TEST_CRYPTO_KEYS}")
    opened = rotated.open(customer_enc, context=f"payments.customer:{payment['id']}")
    assert opened.startswith("cus_sandbox_")
    again = await client.get(f"{PAYMENTS}/{payment['id']}", headers=customer.headers)
    assert again.json()["client_secret"].startswith("pi_sandbox_")
    [other] = await rows(pool, "SELECT count(*) AS n FROM payments WHERE provider_customer_enc = %s", customer_enc)
    assert other["n"] == 1


async def test_cancelling_an_unpaid_booking_cancels_its_intent_and_money_arriving_later_is_refunded(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    assert (await client.delete(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).status_code == 200
    cancelled = (await client.get(f"{PAYMENTS}/{payment['id']}", headers=customer.headers)).json()
    assert cancelled["status"] == "CANCELLED"
    refused = await client.post(
        f"{PAYMENTS}/{payment['id']}/sandbox/confirm", json={"outcome": "succeeded"}, headers=customer.headers
    )
    assert refused.status_code == 409
    # The customer's bank paid anyway (Stripe.js raced the cancel): the money goes back.
    intent = (await rows(pool, "SELECT provider_payment_id FROM payments"))[0]["provider_payment_id"]
    event = stripe_event("payment_intent.succeeded", {"id": intent, "object": "payment_intent"}, event_id="evt_race")
    assert (await deliver(client, event)).status_code == 200
    [row] = await rows(pool, "SELECT status, amount_refunded, amount FROM payments")
    assert row["status"] == "REFUNDED"
    assert row["amount_refunded"] == row["amount"]
    late = (await client.get(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).json()
    assert late["status"] == "CANCELLED"
    assert "refunded automatically" in late["status_reason"]


async def test_concurrent_requests_for_one_booking_make_one_intent(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    answers = await asyncio.gather(
        *(client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=customer.headers) for _ in range(10))
    )
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert len(await rows(pool, "SELECT id FROM payments")) == 1


async def test_a_second_payment_for_a_paid_booking_is_refunded_in_full(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    first = await start_payment(client, customer, booking["id"])
    await settle(client, customer, first["id"], "failed")
    second = await start_payment(client, customer, booking["id"])
    await settle(client, customer, second["id"])
    # The first intent's retry succeeds too, late: the booking is paid already.
    intent = (await rows(pool, "SELECT provider_payment_id FROM payments WHERE id = %s", first["id"]))[0]
    event = stripe_event(
        "payment_intent.succeeded", {"id": intent["provider_payment_id"], "object": "payment_intent"}, event_id="evt_2"
    )
    assert (await deliver(client, event)).status_code == 200
    statuses = {row["id"]: row["status"] for row in await rows(pool, "SELECT id::text, status FROM payments")}
    assert statuses == {first["id"]: "CANCELLED", second["id"]: "SUCCEEDED"}
    [refund] = await rows(pool, "SELECT payment_id::text, status, source FROM refunds")
    assert refund == {"payment_id": first["id"], "status": "SUCCEEDED", "source": "automatic"}
