"""Paying for a booking through the sandbox: the intent, its signed webhook, the confirmation, and who may do what."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.payments.conftest import (
    PAYMENTS,
    Account,
    SmallFlight,
    book,
    paid_booking,
    rows,
    settle,
    start_payment,
)
from tests.support.accounts import MakeAccount


async def test_a_sandbox_payment_confirms_the_booking_and_occupies_its_seats(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight, seats=["3A"])
    payment = await start_payment(client, customer, booking["id"])
    assert payment["status"] == "REQUIRES_PAYMENT"
    assert payment["amount"] == booking["total"]["amount"]
    assert payment["currency"] == "USD"
    assert payment["client_secret"].startswith("pi_sandbox_")

    settled = await settle(client, customer, payment["id"])

    assert settled["status"] == "SUCCEEDED"
    confirmed = (await client.get(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).json()
    assert confirmed["status"] == "CONFIRMED"
    assert confirmed["confirmed_at"]
    [seat] = await rows(pool, "SELECT status FROM seats WHERE flight_id = %s AND seat_no = '3A'", flight.id)
    assert seat["status"] == "OCCUPIED"
    events = await rows(pool, "SELECT event_type FROM outbox_events ORDER BY seq")
    types = [row["event_type"] for row in events]
    assert types.count("booking.confirmed") == 1
    assert types.count("payment.succeeded") == 1
    assert "booking.payment_pending" in types


async def test_a_failed_payment_leaves_the_booking_awaiting_payment_and_a_new_intent_pays_it(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    first = await start_payment(client, customer, booking["id"])
    failed = await settle(client, customer, first["id"], "failed")
    assert failed["status"] == "FAILED"
    assert failed["failure_code"] == "generic_decline"
    again = (await client.get(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)).json()
    assert again["status"] == "PENDING_PAYMENT"
    types = [row["event_type"] for row in await rows(pool, "SELECT event_type FROM outbox_events ORDER BY seq")]
    assert types.count("booking.payment_failed") == 1
    assert types.count("payment.failed") == 1

    second = await start_payment(client, customer, booking["id"])
    assert second["id"] != first["id"]
    assert (await settle(client, customer, second["id"]))["status"] == "SUCCEEDED"


async def test_one_open_intent_per_booking(client: httpx.AsyncClient, customer: Account, flight: SmallFlight) -> None:
    booking = await book(client, customer, flight)
    first = await start_payment(client, customer, booking["id"])
    second = await start_payment(client, customer, booking["id"])
    assert second["id"] == first["id"]
    assert second["client_secret"] == first["client_secret"]


async def test_the_client_cannot_set_the_amount(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    body = {"booking_id": booking["id"], "amount": 1}
    response = await client.post(PAYMENTS, json=body, headers=customer.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_a_body_carrying_a_card_number_or_cvc_is_refused_without_echoing_it(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    for extra in ({"card_number": "4242424242424242"}, {"cvc": "123"}):
        response = await client.post(PAYMENTS, json={"booking_id": booking["id"], **extra}, headers=customer.headers)
        assert response.status_code == 422
        assert "4242424242424242" not in response.text


async def test_a_paid_booking_cannot_be_paid_again(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight
) -> None:
    booking, _ = await paid_booking(client, customer, flight)
    response = await client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=customer.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "INVALID_STATE"


async def test_the_idempotency_key_replays_the_first_answer(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    headers = {**customer.headers, "Idempotency-Key": "pay-once"}
    first = await client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=headers)
    again = await client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await book(client, customer, flight)
    reused = await client.post(PAYMENTS, json={"booking_id": other["id"]}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_payments_are_scoped_like_bookings(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    customer: Account,
    other_customer: Account,
    agent: Account,
    flight: SmallFlight,
) -> None:
    """BOLA on every route: a payment someone may not see is 404 on each of them, never 403 and never theirs."""
    _, payment = await paid_booking(client, customer, flight)
    airline_agent = await make_account(Role.AIRLINE_AGENT)
    owner = await make_account(Role.BUSINESS_OWNER)
    for stranger in (other_customer, agent):
        assert (await client.get(f"{PAYMENTS}/{payment['id']}", headers=stranger.headers)).status_code == 404
        listed = (await client.get(PAYMENTS, headers=stranger.headers)).json()
        assert listed["total"] == 0
        assert listed["items"] == []
        refund = await client.post(f"{PAYMENTS}/{payment['id']}/refund", json={}, headers=stranger.headers)
        assert refund.status_code == 404
        confirm = await client.post(
            f"{PAYMENTS}/{payment['id']}/sandbox/confirm", json={"outcome": "failed"}, headers=stranger.headers
        )
        assert confirm.status_code == 404
    booking = await book(client, customer, flight)
    for stranger in (other_customer, agent):
        response = await client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=stranger.headers)
        assert response.status_code == 404
    mine = (await client.get(PAYMENTS, headers=customer.headers)).json()
    assert [item["id"] for item in mine["items"]] == [payment["id"]]
    assert mine["page_size"] == 20
    seen = (await client.get(f"{PAYMENTS}/{payment['id']}", headers=airline_agent.headers)).json()
    assert seen["id"] == payment["id"]
    assert seen["client_secret"] is None
    assert (await client.get(PAYMENTS, headers=owner.headers)).json()["total"] == 1
    refused = await client.post(f"{PAYMENTS}/{payment['id']}/refund", json={}, headers=owner.headers)
    assert refused.status_code == 403
    # Airline agents cannot start payments (403 by role), nor settle the sandbox.
    assert (
        await client.post(PAYMENTS, json={"booking_id": booking["id"]}, headers=airline_agent.headers)
    ).status_code == 403


async def test_an_agent_pays_for_the_booking_it_made(
    client: httpx.AsyncClient, agent: Account, flight: SmallFlight
) -> None:
    _, payment = await paid_booking(client, agent, flight, contact_email="traveller@example.com")
    assert payment["status"] == "SUCCEEDED"
