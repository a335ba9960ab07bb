"""Fixtures for payment tests: the booking fixtures (accounts of every role, a small flight), the webhook secret,
booked and paid bookings through the API, and a signed delivery helper.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.payments.webhooks import sign
from core_api.settings import Settings, load_settings
from tests.bookings.conftest import (  # noqa: F401 - fixtures shared with the bookings tests
    BOOKINGS,
    Account,
    SmallFlight,
    admin,
    adult,
    agent,
    booking_request,
    customer,
    flight,
    make_account,
    other_customer,
    reference_data,
)
from tests.conftest import TEST_CRYPTO_KEYS, TEST_JWT_KEYS

PAYMENTS = "/api/v1/payments"
WEBHOOK = "/api/v1/webhooks/stripe"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef0123456789abcdef"


def payment_settings(database_url: str, redis_url: str, **extra: str) -> Settings:
    return load_settings(
        {
            "FLIGHTDESK_ENV": "test",
            "FLIGHTDESK_DATABASE_URL": database_url,
            "FLIGHTDESK_REDIS_URL": redis_url,
            "FLIGHTDESK_DATABASE_POOL_MIN": "1",
            "FLIGHTDESK_DATABASE_POOL_MAX": "30",
            "FLIGHTDESK_AUTH_JWT_KEYS": TEST_JWT_KEYS,
            "FLIGHTDESK_CRYPTO_KEYS": TEST_CRYPTO_KEYS,
            "FLIGHTDESK_RATE_LIMITS": "10000/second",
            "FLIGHTDESK_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **extra,
        },
        dotenv=None,
    )


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return payment_settings(database_url, redis_url)


async def book(client: httpx.AsyncClient, account: Account, on: SmallFlight, **fields: Any) -> dict[str, Any]:
    response = await client.post(BOOKINGS, json=booking_request(on, adult(), **fields), headers=account.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def start_payment(client: httpx.AsyncClient, account: Account, booking_id: str) -> dict[str, Any]:
    response = await client.post(PAYMENTS, json={"booking_id": booking_id}, headers=account.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def settle(
    client: httpx.AsyncClient, account: Account, payment_id: str, outcome: str = "succeeded"
) -> dict[str, Any]:
    response = await client.post(
        f"{PAYMENTS}/{payment_id}/sandbox/confirm", json={"outcome": outcome}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def paid_booking(
    client: httpx.AsyncClient, account: Account, on: SmallFlight, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    booking = await book(client, account, on, **fields)
    payment = await start_payment(client, account, booking["id"])
    return booking, await settle(client, account, payment["id"])


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


async def deliver(
    client: httpx.AsyncClient, payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> httpx.Response:
    headers = {"Stripe-Signature": sign(payload, secret, timestamp=timestamp), "Content-Type": "application/json"}
    return await client.post(WEBHOOK, content=payload, headers=headers)


async def intent_id(pool: AsyncConnectionPool, payment_id: str) -> str:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT provider_payment_id FROM payments WHERE id = %s", (payment_id,))
        ).fetchone()
    assert row is not None
    return str(row["provider_payment_id"])


async def rows(pool: AsyncConnectionPool, query: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await (await conn.execute(query, params)).fetchall()
