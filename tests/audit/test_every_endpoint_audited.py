"""Every state-changing endpoint writes its audit row: the OpenAPI document is walked, each POST/PUT/PATCH/DELETE
operation is called successfully, and the row written under that request's id must be there, of an expected type.

The operations come from the document itself, so a route added later (payments, notifications …) shows up here as
a case of its own, and fails until it has a scenario in :data:`SCENARIOS` saying how to call it successfully and
which events it records.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.app import create_app
from core_api.audit.schemas import EventType
from core_api.audit.service import SYSTEM
from core_api.auth import service as auth_service
from core_api.settings import load_settings
from core_api.users.schemas import Role
from tests.bookings.conftest import SmallFlight, add_small_flight, adult, booking_request
from tests.support.accounts import PASSWORD, Account, new_account

_MUTATING = ("post", "put", "patch", "delete")


def _operations() -> dict[str, tuple[str, str]]:
    """operation id -> (method, path) of every state-changing operation of the OpenAPI document."""
    settings = load_settings(
        {"FLIGHTDESK_ENV": "test", "FLIGHTDESK_AUTH_JWT_KEYS": "walk:" + "k" * 40,
         "FLIGHTDESK_CRYPTO_KEYS": "1:" + "A" * 43 + "="},
        dotenv=None,
    )  # fmt: skip
    # The document is built from the routes alone; no server is reached.
    app = create_app(settings, database_url="postgresql://unused", redis_url="redis://unused")
    document = app.openapi_schema.to_schema()
    found = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in _MUTATING:
                found[operation["operationId"]] = (method.upper(), path)
    return found


OPERATIONS = _operations()


@dataclass
class World:
    app: Litestar
    client: httpx.AsyncClient
    pool: AsyncConnectionPool
    admin: Account
    customer: Account
    airline_agent: Account
    flight: SmallFlight
    numbers: itertools.count[int]

    async def account(self, role: Role = Role.CUSTOMER) -> Account:
        return await new_account(self.pool, self.client, role, 100 + next(self.numbers))

    async def booking(self) -> str:
        response = await self.client.post(
            "/api/v1/bookings", json=booking_request(self.flight, adult()), headers=self.customer.headers
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def login_pair(self) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": self.customer.user.email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


Call = Callable[[World], Awaitable[httpx.Response]]


async def _register(w: World) -> httpx.Response:
    body = {"email": "walker@example.com", "password": "a long password", "full_name": "Wanda Walker"}
    return await w.client.post("/api/v1/auth/register", json=body)


async def _login(w: World) -> httpx.Response:
    return await w.client.post("/api/v1/auth/login", json={"email": w.customer.user.email, "password": PASSWORD})


async def _refresh(w: World) -> httpx.Response:
    pair = await w.login_pair()
    return await w.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})


async def _logout(w: World) -> httpx.Response:
    pair = await w.login_pair()
    return await w.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})


async def _request_reset(w: World) -> httpx.Response:
    return await w.client.post("/api/v1/auth/password-reset/request", json={"email": w.customer.user.email})


async def _confirm_reset(w: World) -> httpx.Response:
    token = await auth_service.request_password_reset(w.app.state.auth, SYSTEM, email=w.customer.user.email)
    body = {"token": token, "new_password": "another long password"}
    return await w.client.post("/api/v1/auth/password-reset/confirm", json=body)


async def _create_user(w: World) -> httpx.Response:
    body = {"email": "made@example.com", "password": "a long password", "full_name": "Made", "role": "TRAVEL_AGENT"}
    return await w.client.post("/api/v1/users", json=body, headers=w.admin.headers)


async def _update_user(w: World) -> httpx.Response:
    return await w.client.put(f"/api/v1/users/{w.customer.id}", json={"full_name": "Renamed"}, headers=w.admin.headers)


async def _delete_user(w: World) -> httpx.Response:
    doomed = await w.account()
    return await w.client.delete(f"/api/v1/users/{doomed.id}", headers=w.admin.headers)


async def _create_flight(w: World) -> httpx.Response:
    departure = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)
    body = {
        "airline_code": "BA",
        "flight_number": "BA4242",
        "origin": "JFK",
        "destination": "LHR",
        "departure_at": departure.isoformat(),
        "arrival_at": (departure + timedelta(hours=7)).isoformat(),
        "aircraft": "A320",
        "fares": [
            {"cabin": "ECONOMY", "fare_class": "Y", "price": {"amount": 30000, "currency": "USD"}, "seats": 162},
            {"cabin": "BUSINESS", "fare_class": "J", "price": {"amount": 200000, "currency": "USD"}, "seats": 12},
        ],
    }
    return await w.client.post("/api/v1/flights", json=body, headers=w.airline_agent.headers)


async def _update_flight(w: World) -> httpx.Response:
    later = (w.flight.departure_at + timedelta(hours=2)).isoformat()
    body = {"status": "DELAYED", "departure_at": later}
    return await w.client.patch(f"/api/v1/flights/{w.flight.id}", json=body, headers=w.airline_agent.headers)


async def _create_booking(w: World) -> httpx.Response:
    return await w.client.post("/api/v1/bookings", json=booking_request(w.flight, adult()), headers=w.customer.headers)


async def _update_booking(w: World) -> httpx.Response:
    booking = await w.booking()
    body = {"contact_email": "new.contact@example.com"}
    return await w.client.patch(f"/api/v1/bookings/{booking}", json=body, headers=w.customer.headers)


async def _cancel_booking(w: World) -> httpx.Response:
    booking = await w.booking()
    return await w.client.delete(f"/api/v1/bookings/{booking}", headers=w.customer.headers)


async def _payment(w: World) -> str:
    response = await w.client.post(
        "/api/v1/payments", json={"booking_id": await w.booking()}, headers=w.customer.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _create_payment(w: World) -> httpx.Response:
    return await w.client.post("/api/v1/payments", json={"booking_id": await w.booking()}, headers=w.customer.headers)


async def _confirm_sandbox_payment(w: World) -> httpx.Response:
    payment = await _payment(w)
    body = {"outcome": "succeeded"}
    return await w.client.post(f"/api/v1/payments/{payment}/sandbox/confirm", json=body, headers=w.customer.headers)


async def _refund_payment(w: World) -> httpx.Response:
    payment = await _payment(w)
    confirm = f"/api/v1/payments/{payment}/sandbox/confirm"
    assert (await w.client.post(confirm, json={"outcome": "succeeded"}, headers=w.customer.headers)).is_success
    return await w.client.post(f"/api/v1/payments/{payment}/refund", json={"amount": 100}, headers=w.admin.headers)


async def _stripe_webhook(w: World) -> httpx.Response:
    from core_api.payments.webhooks import sign

    payload = b'{"id": "evt_walk", "object": "event", "type": "customer.created", "data": {"object": {}}}'
    headers = {
        "Stripe-Signature": sign(payload, w.app.state.payments.webhook_secret),
        "Content-Type": "application/json",
    }
    return await w.client.post("/api/v1/webhooks/stripe", content=payload, headers=headers)


async def _cleanup(w: World) -> httpx.Response:
    return await w.client.delete("/api/v1/audit/logs/cleanup", params={"older_than_days": 90}, headers=w.admin.headers)


async def _send_notification(w: World) -> httpx.Response:
    body = {"template": "welcome", "recipient": "guest@example.com", "context": {"full_name": "Guest"}}
    return await w.client.post("/api/v1/notifications/send", json=body, headers=w.admin.headers)


async def _clear_notifications(w: World) -> httpx.Response:
    return await w.client.post("/api/v1/notifications/clear-completed", headers=w.admin.headers)


async def _retry_notifications(w: World) -> httpx.Response:
    return await w.client.post("/api/v1/notifications/retry-failed", headers=w.admin.headers)


SCENARIOS: dict[str, tuple[Call, set[EventType]]] = {
    "register": (_register, {EventType.AUTH_REGISTER, EventType.USER_CREATED}),
    "login": (_login, {EventType.AUTH_LOGIN}),
    "refreshTokens": (_refresh, {EventType.AUTH_REFRESH}),
    "logout": (_logout, {EventType.AUTH_LOGOUT}),
    "requestPasswordReset": (_request_reset, {EventType.AUTH_PASSWORD_RESET_REQUESTED}),
    "confirmPasswordReset": (_confirm_reset, {EventType.AUTH_PASSWORD_RESET_COMPLETED}),
    "createUser": (_create_user, {EventType.USER_CREATED}),
    "updateUser": (_update_user, {EventType.USER_UPDATED}),
    "deleteUser": (_delete_user, {EventType.USER_DELETED}),
    "createFlight": (_create_flight, {EventType.FLIGHT_CREATED}),
    "updateFlight": (_update_flight, {EventType.FLIGHT_DELAYED}),
    "createBooking": (_create_booking, {EventType.BOOKING_CREATED}),
    "updateBooking": (_update_booking, {EventType.BOOKING_UPDATED}),
    "cancelBooking": (_cancel_booking, {EventType.BOOKING_CANCELLED}),
    "cleanupAuditLogs": (_cleanup, {EventType.SYSTEM_AUDIT_CLEANUP}),
    "createPayment": (_create_payment, {EventType.PAYMENT_CREATED}),
    "confirmSandboxPayment": (_confirm_sandbox_payment, {EventType.WEBHOOK_RECEIVED, EventType.PAYMENT_SUCCEEDED}),
    "refundPayment": (_refund_payment, {EventType.REFUND_REQUESTED, EventType.PAYMENT_REFUNDED}),
    "receiveStripeWebhook": (_stripe_webhook, {EventType.WEBHOOK_RECEIVED}),
    "sendNotification": (_send_notification, {EventType.NOTIFICATION_QUEUED}),
    "clearCompletedNotifications": (_clear_notifications, {EventType.NOTIFICATION_CLEARED}),
    "retryFailedNotifications": (_retry_notifications, {EventType.NOTIFICATION_RETRIED}),
}


@pytest.fixture
async def world(app: Litestar, client: httpx.AsyncClient, pool: AsyncConnectionPool) -> World:
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
                ('JFK', 'John F Kennedy International Airport', 'New York', 'US', 'America/New_York', 40.64, -73.78),
                ('LHR', 'London Heathrow Airport', 'London', 'GB', 'Europe/London', 51.47, -0.45);
            """
        )
    return World(
        app=app,
        client=client,
        pool=pool,
        admin=await new_account(pool, client, Role.ADMIN, 1),
        customer=await new_account(pool, client, Role.CUSTOMER, 2),
        airline_agent=await new_account(pool, client, Role.AIRLINE_AGENT, 3, airline_code="BA"),
        flight=await add_small_flight(pool),
        numbers=itertools.count(),
    )


def test_the_walk_finds_the_state_changing_operations() -> None:
    assert {"createBooking", "updateUser", "deleteUser", "updateFlight", "cleanupAuditLogs"} <= set(OPERATIONS)


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
async def test_a_successful_call_writes_its_audit_row(world: World, operation_id: str) -> None:
    method, path = OPERATIONS[operation_id]
    if operation_id not in SCENARIOS:
        pytest.fail(f"{method} {path} ({operation_id}) changes state: add a scenario for it to SCENARIOS")
    call, expected = SCENARIOS[operation_id]
    response = await call(world)
    assert 200 <= response.status_code < 300, response.text
    request_id = response.headers["x-request-id"]
    async with world.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT event_type FROM audit_logs WHERE request_id = %s", (request_id,))
        ).fetchall()
    written = {row["event_type"] for row in rows}
    assert written, f"{method} {path} answered {response.status_code} and wrote no audit row"
    assert written & {event.value for event in expected}, (written, expected)
