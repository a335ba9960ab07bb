"""``POST /webhooks/stripe``: signatures checked with the Stripe SDK, every event stored once by id and applied once,
whatever the replays (50 at once) or their order.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from psycopg_pool import AsyncConnectionPool

from tests.payments.conftest import (
    WEBHOOK,
    Account,
    SmallFlight,
    book,
    deliver,
    intent_id,
    rows,
    start_payment,
    stripe_event,
)


async def _pending_payment(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> tuple[dict, dict, str]:
    booking = await book(client, customer, flight)
    payment = await start_payment(client, customer, booking["id"])
    return booking, payment, await intent_id(pool, payment["id"])


def _intent(intent: str, payment: dict, status: str = "succeeded") -> dict:
    return {"id": intent, "object": "payment_intent", "amount": payment["amount"], "currency": "usd", "status": status}


async def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    _, payment, intent = await _pending_payment(client, pool, customer, flight)
    payload = stripe_event("payment_intent.succeeded", _intent(intent, payment), event_id="evt_forged")
    forged = await deliver(client, payload, secret="whsec_not_ours")
    assert forged.status_code == 401
    assert forged.json()["code"] == "INVALID_SIGNATURE"
    unsigned = await client.post(WEBHOOK, content=payload, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    tampered = await client.post(
        WEBHOOK,
        content=payload.replace(b"succeeded", b"succeeded "),
        headers={"Stripe-Signature": (await _signature(payload)), "Content-Type": "application/json"},
    )
    assert tampered.status_code == 401
    assert await rows(pool, "SELECT id FROM webhook_events") == []
    [stored] = await rows(pool, "SELECT status FROM payments")
    assert stored["status"] == "REQUIRES_PAYMENT"


async def _signature(payload: bytes) -> str:
    from core_api.payments.webhooks import sign
    from tests.payments.conftest import WEBHOOK_SECRET

    return sign(payload, WEBHOOK_SECRET)


async def test_a_stale_signature_is_refused_and_a_fresh_one_accepted(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    _, payment, intent = await _pending_payment(client, pool, customer, flight)
    payload = stripe_event("payment_intent.succeeded", _intent(intent, payment), event_id="evt_stale")
    stale = await deliver(client, payload, timestamp=int(time.time()) - 301)
    assert stale.status_code == 401
    fresh = await deliver(client, payload, timestamp=int(time.time()) - 250)
    assert fresh.status_code == 200
    assert fresh.json() == {
        "received": True,
        "duplicate": False,
        "event_id": "evt_stale",
        "type": "payment_intent.succeeded",
    }


async def test_fifty_concurrent_replays_confirm_once_and_emit_one_event(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking, payment, intent = await _pending_payment(client, pool, customer, flight)
    payload = stripe_event("payment_intent.succeeded", _intent(intent, payment), event_id="evt_replayed")

    answers = await asyncio.gather(*(deliver(client, payload) for _ in range(50)))

    assert {answer.status_code for answer in answers} == {200}
    assert sum(not answer.json()["duplicate"] for answer in answers) == 1
    events = await rows(pool, "SELECT event_type FROM outbox_events WHERE event_type IN "
                              "('booking.confirmed', 'payment.succeeded') ORDER BY seq")  # fmt: skip
    assert [row["event_type"] for row in events] == ["payment.succeeded", "booking.confirmed"]
    [stored] = await rows(pool, "SELECT processed_at, payment_id FROM webhook_events")
    assert stored["processed_at"] is not None
    assert str(stored["payment_id"]) == payment["id"]
    confirmations = await rows(
        pool, "SELECT count(*) AS n FROM audit_logs WHERE event_type = 'booking.confirmed' AND entity_id = %s",
        booking["id"],
    )  # fmt: skip
    assert confirmations[0]["n"] == 1


async def test_failed_after_succeeded_changes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking, payment, intent = await _pending_payment(client, pool, customer, flight)
    ok = stripe_event("payment_intent.succeeded", _intent(intent, payment), event_id="evt_ok")
    failed = stripe_event(
        "payment_intent.payment_failed", _intent(intent, payment, "requires_payment_method"), event_id="evt_late_fail"
    )
    assert (await deliver(client, ok)).status_code == 200
    assert (await deliver(client, failed)).status_code == 200
    [stored] = await rows(pool, "SELECT status FROM payments")
    assert stored["status"] == "SUCCEEDED"
    [kept] = await rows(pool, "SELECT status FROM bookings WHERE id = %s", booking["id"])
    assert kept["status"] == "CONFIRMED"
    failures = await rows(pool, "SELECT id FROM outbox_events WHERE event_type LIKE '%%failed'")
    assert failures == []


async def test_succeeded_after_failed_confirms(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking, payment, intent = await _pending_payment(client, pool, customer, flight)
    failed = stripe_event(
        "payment_intent.payment_failed", _intent(intent, payment, "requires_payment_method"), event_id="evt_fail"
    )
    ok = stripe_event("payment_intent.succeeded", _intent(intent, payment), event_id="evt_retry_ok")
    assert (await deliver(client, failed)).status_code == 200
    assert (await deliver(client, ok)).status_code == 200
    [kept] = await rows(pool, "SELECT status FROM bookings WHERE id = %s", booking["id"])
    assert kept["status"] == "CONFIRMED"


async def test_events_we_do_not_act_on_are_stored_and_acknowledged(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    for number, event_type in enumerate(
        ["customer.created", "payment_method.attached", "invoice.payment_succeeded", "balance.available"]
    ):
        obj = {"id": f"obj_{number}", "customer": "cus_secret", "email": "someone@example.com"}
        response = await deliver(client, stripe_event(event_type, obj, event_id=f"evt_other_{number}"))
        assert response.status_code == 200
        assert response.json()["duplicate"] is False
    stored = await rows(pool, "SELECT type, payload::text AS payload FROM webhook_events ORDER BY type")
    assert [row["type"] for row in stored] == [
        "balance.available",
        "customer.created",
        "invoice.payment_succeeded",
        "payment_method.attached",
    ]
    assert all("cus_secret" not in row["payload"] and "someone@" not in row["payload"] for row in stored)


async def test_a_refund_made_in_the_providers_dashboard_is_recorded(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    _, payment, intent = await _pending_payment(client, pool, customer, flight)
    await deliver(client, stripe_event("payment_intent.succeeded", _intent(intent, payment), event_id="evt_paid"))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": intent,
        "amount": payment["amount"],
        "amount_refunded": 1000,
        "refunds": {"object": "list", "data": [{"id": "re_dash", "amount": 1000, "status": "succeeded"}]},
    }
    for _ in range(2):  # the same refund reported twice (two events) is recorded once
        await deliver(client, stripe_event("charge.refunded", charge, event_id=f"evt_refund_{_}"))
    [stored] = await rows(pool, "SELECT status, amount_refunded FROM payments")
    assert stored["status"] == "PARTIALLY_REFUNDED"
    assert stored["amount_refunded"] == 1000
    [refund] = await rows(pool, "SELECT amount, source, status, provider_refund_id FROM refunds")
    assert refund == {"amount": 1000, "source": "provider", "status": "SUCCEEDED", "provider_refund_id": "re_dash"}
    assert len(await rows(pool, "SELECT id FROM outbox_events WHERE event_type = 'payment.refunded'")) == 1
