"""Refunds: never more than was captured, concurrent ones included; who may refund; cancelling a paid booking
refunds per its fare and releases its seats.
"""

from __future__ import annotations

import asyncio

import httpx
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.payments.conftest import PAYMENTS, Account, SmallFlight, paid_booking, rows
from tests.support.accounts import MakeAccount


async def test_an_admin_refunds_in_part_then_the_rest_and_no_more(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, admin: Account, flight: SmallFlight
) -> None:
    _, payment = await paid_booking(client, customer, flight)
    url = f"{PAYMENTS}/{payment['id']}/refund"
    part = await client.post(url, json={"amount": 10000, "reason": "goodwill"}, headers=admin.headers)
    assert part.status_code == 201, part.text
    assert part.json()["status"] == "SUCCEEDED"
    assert part.json()["amount"] == 10000
    over = await client.post(url, json={"amount": payment["amount"]}, headers=admin.headers)
    assert over.status_code == 409
    assert over.json()["code"] == "CONFLICT"
    rest = await client.post(url, json={}, headers=admin.headers)
    assert rest.json()["amount"] == payment["amount"] - 10000
    done = (await client.get(f"{PAYMENTS}/{payment['id']}", headers=customer.headers)).json()
    assert done["status"] == "REFUNDED"
    assert done["amount_refunded"] == payment["amount"]
    assert [refund["status"] for refund in done["refunds"]] == ["SUCCEEDED", "SUCCEEDED"]
    again = await client.post(url, json={}, headers=admin.headers)
    assert again.status_code == 409
    events = await rows(pool, "SELECT payload FROM outbox_events WHERE event_type = 'payment.refunded' ORDER BY seq")
    assert [event["payload"]["amount"] for event in events] == [10000, payment["amount"] - 10000]
    assert set(events[0]["payload"]) == {
        "payment_id", "booking_id", "pnr", "amount", "currency", "refund_id", "customer_id", "contact_email",
    }  # fmt: skip


async def test_two_concurrent_refunds_that_together_exceed_the_capture_one_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, admin: Account, flight: SmallFlight
) -> None:
    _, payment = await paid_booking(client, customer, flight)
    url = f"{PAYMENTS}/{payment['id']}/refund"
    share = payment["amount"] // 2 + 1
    answers = await asyncio.gather(*(client.post(url, json={"amount": share}, headers=admin.headers) for _ in range(2)))
    assert sorted(answer.status_code for answer in answers) == [201, 409]
    [stored] = await rows(pool, "SELECT amount_refunded FROM payments")
    assert stored["amount_refunded"] == share


async def test_a_card_number_in_the_reason_is_refused(
    client: httpx.AsyncClient, customer: Account, admin: Account, flight: SmallFlight
) -> None:
    _, payment = await paid_booking(client, customer, flight)
    response = await client.post(
        f"{PAYMENTS}/{payment['id']}/refund", json={"reason": "card 4242 4242 4242 4242"}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "reason"
    assert "4242" not in response.text


async def test_the_owner_refunds_only_a_refundable_fare_and_the_airline_any(
    client: httpx.AsyncClient, make_account: MakeAccount, customer: Account, flight: SmallFlight
) -> None:
    _, economy = await paid_booking(client, customer, flight)
    refused = await client.post(f"{PAYMENTS}/{economy['id']}/refund", json={}, headers=customer.headers)
    assert refused.status_code == 403
    airline_agent = await make_account(Role.AIRLINE_AGENT)
    allowed = await client.post(f"{PAYMENTS}/{economy['id']}/refund", json={}, headers=airline_agent.headers)
    assert allowed.status_code == 201
    _, business = await paid_booking(client, customer, flight, cabin="BUSINESS")
    own = await client.post(f"{PAYMENTS}/{business['id']}/refund", json={"amount": 100}, headers=customer.headers)
    assert own.status_code == 201


async def test_cancelling_a_paid_refundable_booking_refunds_it_and_releases_its_seats(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking, payment = await paid_booking(client, customer, flight, cabin="BUSINESS", seats=["1A"])
    response = await client.delete(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    refunded = (await client.get(f"{PAYMENTS}/{payment['id']}", headers=customer.headers)).json()
    assert refunded["status"] == "REFUNDED"
    assert refunded["refunds"][0]["source"] == "cancellation"
    [seat] = await rows(pool, "SELECT status FROM seats WHERE flight_id = %s AND seat_no = '1A'", flight.id)
    assert seat["status"] == "AVAILABLE"
    [fare] = await rows(pool, "SELECT seats_available FROM flight_prices WHERE flight_id = %s AND fare_class = 'J'",
                        flight.id)  # fmt: skip
    assert fare["seats_available"] == 4


async def test_cancelling_a_paid_non_refundable_booking_keeps_the_money(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking, payment = await paid_booking(client, customer, flight)
    response = await client.delete(f"/api/v1/bookings/{booking['id']}", headers=customer.headers)
    assert response.status_code == 200
    kept = (await client.get(f"{PAYMENTS}/{payment['id']}", headers=customer.headers)).json()
    assert kept["status"] == "SUCCEEDED"
    assert kept["refunds"] == []
    assert await rows(pool, "SELECT id FROM outbox_events WHERE event_type = 'payment.refunded'") == []


async def test_a_refund_retried_under_its_idempotency_key_refunds_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, admin: Account, flight: SmallFlight
) -> None:
    _, payment = await paid_booking(client, customer, flight)
    url = f"{PAYMENTS}/{payment['id']}/refund"
    headers = {**admin.headers, "Idempotency-Key": "refund-once"}
    first = await client.post(url, json={"amount": 1000}, headers=headers)
    again = await client.post(url, json={"amount": 1000}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["status"] == "SUCCEEDED"
    [stored] = await rows(pool, "SELECT amount_refunded FROM payments")
    assert stored["amount_refunded"] == 1000
    other = await client.post(url, json={"amount": 2000}, headers=headers)
    assert other.status_code == 422
