"""``flightdesk rotate-keys``: values sealed with the old key are sealed again with the new one, and open with it
alone.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from core_api.security.crypto import parse_keys
from core_api.security.rotation import rotate_keys
from tests.conftest import TEST_CRYPTO_KEYS
from tests.payments.conftest import PAYMENTS, Account, SmallFlight, adult, booking_request, paid_booking, rows

NEW_KEY = "2:" + base64.b64encode(b"rotated-key-0123456789abcdef0123").decode()


async def test_rotation_reseals_every_encrypted_field_with_the_new_key(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight, database_url: str
) -> None:
    traveller = {**adult(), "document": "P1234567"}
    body = booking_request(flight, traveller)
    booked = await client.post("/api/v1/bookings", json=body, headers=customer.headers)
    assert booked.status_code == 201
    _, payment = await paid_booking(client, customer, flight)
    before = await rows(pool, "SELECT client_secret_enc, provider_customer_enc FROM payments")

    rotated = parse_keys(f"{NEW_KEY},{TEST_CRYPTO_KEYS}")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        done = await rotate_keys(conn, rotated, batch=1)
        again = await rotate_keys(conn, rotated, batch=1)

    assert done["passengers.document_enc"] == 1
    assert done["payments.client_secret_enc"] == done["payments.provider_customer_enc"] == 1
    assert set(again.values()) == {0}
    new_only = parse_keys(NEW_KEY)
    [row] = await rows(pool, "SELECT id, client_secret_enc, provider_customer_enc, crypto_key_version FROM payments")
    assert row["crypto_key_version"] == 2
    assert bytes(row["client_secret_enc"])[0] == 2
    assert bytes(row["client_secret_enc"]) != bytes(before[0]["client_secret_enc"])
    opened = new_only.open(bytes(row["client_secret_enc"]), context=f"payments.client_secret:{row['id']}")
    assert opened == payment["client_secret"]
    customer_id = new_only.open(bytes(row["provider_customer_enc"]), context=f"payments.customer:{row['id']}")
    assert customer_id.startswith("cus_sandbox_")
    [passenger] = await rows(pool, "SELECT booking_id, document_enc FROM passengers WHERE document_enc IS NOT NULL")
    document: Any = passenger["document_enc"]
    assert new_only.open(bytes(document), context=f"passengers.document:{passenger['booking_id']}") == "P1234567"
    # A process not yet given the new key (against the procedure: list it everywhere first) still answers, without
    # the secret it cannot open; it never fails.
    read = await client.get(f"{PAYMENTS}/{payment['id']}", headers=customer.headers)
    assert read.status_code == 200
    assert read.json()["client_secret"] is None
