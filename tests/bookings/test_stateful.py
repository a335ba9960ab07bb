"""A Hypothesis state machine over the booking API: customers book, change seats, cancel, start payments, pay or
fail them (through the sandbox's signed webhooks), an admin refunds, and holds lapse and expire, in any order;
after every step the database must still tell one consistent story.

Invariants, checked against the database itself:
- every fare bucket has ``seats_available = seats_total - seats of its live bookings`` (never below zero);
- every seat held in the seat map is held by a live booking, by one of its seated passengers (``HELD`` while it
  awaits payment, ``OCCUPIED`` once paid), and every seated passenger's seat is held by their booking (so no seat
  is held twice, none is lost);
- a confirmed booking has exactly one payment that succeeded, no booking more than one open intent, and what a
  payment counts as refunded is what its pending and succeeded refunds add up to, never more than it captured;
- no request answers 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import redis.asyncio as aioredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from core_api.app import create_app
from core_api.audit.service import SYSTEM
from core_api.bookings.service import BookingService, release_lapsed_holds
from core_api.security.crypto import load_cipher
from core_api.settings import Settings
from core_api.storage.db import create_pool, transaction
from core_api.users.schemas import Role
from core_api.users.service import create_user
from tests.bookings.conftest import BOOKINGS, SmallFlight, add_small_flight, adult, booking_request
from tests.support.accounts import PASSWORD
from tests.support.asgi import serve_in_loop

PAYMENTS = "/api/v1/payments"
ECONOMY_SEATS = [f"{row}{letter}" for row in range(2, 7) for letter in "ABCDEF"]
# The Y bucket's counter over three rows of two seats (migration 0015): takes of several seats cross stripes, and
# seats given back land on the main row; M and J stay one row each.
Y_STRIPES = 3

BUCKETS_CONSISTENT = """
SELECT p.fare_class, p.seats_total, fare_seats_available(p.id, p.seats_available, p.stripes) AS seats_available,
       coalesce(sum(b.seat_count) FILTER (WHERE b.status IN ('PENDING_PAYMENT', 'CONFIRMED')), 0) AS live_seats
FROM flight_prices AS p
LEFT JOIN bookings AS b ON b.fare_id = p.id
GROUP BY p.id
HAVING fare_seats_available(p.id, p.seats_available, p.stripes) <> p.seats_total - coalesce(sum(b.seat_count)
           FILTER (WHERE b.status IN ('PENDING_PAYMENT', 'CONFIRMED')), 0)
"""
SEATS_CONSISTENT = """
SELECT s.seat_no, s.status, b.status AS booking_status, p.id AS passenger
FROM seats AS s
LEFT JOIN bookings AS b ON b.id = s.booking_id
LEFT JOIN passengers AS p ON p.booking_id = s.booking_id AND p.seat_no = s.seat_no
WHERE s.booking_id IS NOT NULL
  AND (b.status NOT IN ('PENDING_PAYMENT', 'CONFIRMED') OR p.id IS NULL
       OR s.status <> CASE WHEN b.status = 'CONFIRMED' THEN 'OCCUPIED' ELSE 'HELD' END)
UNION ALL
SELECT p.seat_no, s.status, b.status, p.id
FROM passengers AS p
JOIN bookings AS b ON b.id = p.booking_id
LEFT JOIN seats AS s ON s.flight_id = p.flight_id AND s.seat_no = p.seat_no
WHERE p.seat_no IS NOT NULL AND (s.booking_id IS DISTINCT FROM p.booking_id OR b.status NOT IN ('PENDING_PAYMENT',
                                                                                              'CONFIRMED'))
"""

PAYMENTS_CONSISTENT = """
SELECT 'confirmed without one paid payment' AS problem, b.id::text
FROM bookings AS b
WHERE b.status = 'CONFIRMED' AND (SELECT count(*) FROM payments AS p WHERE p.booking_id = b.id
                                  AND p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED')) <> 1
UNION ALL
SELECT 'two open intents', booking_id::text FROM payments
WHERE status IN ('REQUIRES_PAYMENT', 'PROCESSING') GROUP BY booking_id HAVING count(*) > 1
UNION ALL
SELECT 'refunds do not add up', p.id::text
FROM payments AS p
WHERE p.amount_refunded > p.amount
   OR (p.status <> 'CANCELLED' AND p.amount_refunded <> (SELECT coalesce(sum(r.amount), 0) FROM refunds AS r
                                                          WHERE r.payment_id = p.id
                                                            AND r.status IN ('PENDING', 'SUCCEEDED')))
"""

MACHINE_SETTINGS = hypothesis_settings(
    max_examples=15, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class _World:
    """One app, pool and flight for the whole run, driven from a loop of the test's own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.headers: list[dict[str, str]] = []
        self.flights = 0
        self.run(self._open())

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    async def _open(self) -> None:
        assert self.settings.database.url
        assert self.settings.redis.url
        self.pool = create_pool(self.settings, self.settings.database.url, name="stateful")
        await self.pool.open(wait=True)
        self.stack.push_async_callback(self.pool.close)
        redis = aioredis.Redis.from_url(self.settings.redis.url)
        self.stack.push_async_callback(redis.aclose)
        self.bookings = BookingService(self.pool, redis, self.settings, load_cipher(self.settings))
        self.client: httpx.AsyncClient = await self.stack.enter_async_context(serve_in_loop(create_app(self.settings)))
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');"
                "INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES"
                " ('JFK', 'John F Kennedy', 'New York', 'US', 'America/New_York', 40.6, -73.8),"
                " ('LHR', 'Heathrow', 'London', 'GB', 'Europe/London', 51.5, -0.5)"
            )
        self.flight = await add_small_flight(self.pool, y_seats=6, y_stripes=Y_STRIPES)
        for number in range(3):
            async with transaction(self.pool) as tx:
                user = await create_user(
                    tx,
                    SYSTEM,
                    email=f"traveller{number}@example.com",
                    password=PASSWORD,
                    full_name=f"Traveller {number}",
                    role=Role.CUSTOMER,
                )
            response = await self.client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
            self.headers.append({"Authorization": f"Bearer {response.json()['access_token']}"})
        async with transaction(self.pool) as tx:
            admin = await create_user(
                tx, SYSTEM, email="refunds@example.com", password=PASSWORD, full_name="Rae Funds", role=Role.ADMIN
            )
        response = await self.client.post("/api/v1/auth/login", json={"email": admin.email, "password": PASSWORD})
        self.admin = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def close(self) -> None:
        self.run(self.stack.aclose())
        self.loop.close()


class BookingMachine(RuleBasedStateMachine):
    world: _World

    bookings = Bundle("bookings")

    @initialize()
    def start(self) -> None:
        """Each example on a flight of its own, with no holds left from the last one (the per-customer cap on unpaid
        seats and a sold-out flight would otherwise turn every later example into refusals).
        """
        self.owner: dict[str, int] = {}

        async def fresh_start() -> SmallFlight:
            async with self.world.pool.connection() as conn:
                await conn.execute(
                    "UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE status = 'PENDING_PAYMENT'"
                )
            await release_lapsed_holds(self.world.bookings)
            self.world.flights += 1
            number = f"BA{8000 + self.world.flights}"
            return await add_small_flight(self.world.pool, y_seats=6, number=number, y_stripes=Y_STRIPES)

        self.flight = self.world.run(fresh_start())

    def _request(self, method: str, url: str, customer: int, body: dict[str, Any] | None = None) -> httpx.Response:
        response: httpx.Response = self.world.run(
            self.world.client.request(method, url, json=body, headers=self.world.headers[customer])
        )
        assert response.status_code < 500, response.text
        return response

    @rule(
        target=bookings,
        customer=st.integers(0, 2),
        travellers=st.integers(1, 3),
        fare_class=st.sampled_from(["Y", "M", None]),
        seats=st.lists(st.sampled_from(ECONOMY_SEATS), max_size=3, unique=True),
    )
    def book(self, customer: int, travellers: int, fare_class: str | None, seats: list[str]) -> str:
        passengers = [adult(f"Ann{'abc'[index]}") for index in range(travellers)]
        body = booking_request(self.flight, *passengers, fare_class=fare_class, seats=seats[:travellers])
        response = self._request("POST", BOOKINGS, customer, body)
        if response.status_code == 201:
            booking_id = str(response.json()["id"])
            self.owner[booking_id] = customer
            return booking_id
        assert response.json()["code"] in {"SOLD_OUT", "SEAT_TAKEN", "CONFLICT"}, response.text
        return ""

    @rule(booking=bookings, seats=st.lists(st.sampled_from(ECONOMY_SEATS), max_size=3, unique=True))
    def change_seats(self, booking: str, seats: list[str]) -> None:
        if not booking:
            return
        current = self._request("GET", f"{BOOKINGS}/{booking}", self.owner[booking]).json()
        seats = seats[: len(current["passengers"])]
        response = self._request("PATCH", f"{BOOKINGS}/{booking}", self.owner[booking], {"seats": seats})
        if response.status_code == 200:
            assert response.json()["seats"] == seats
        else:
            assert response.json()["code"] in {"SEAT_TAKEN", "INVALID_STATE", "HOLD_EXPIRED"}, response.text

    @rule(booking=bookings)
    def cancel(self, booking: str) -> None:
        if not booking:
            return
        response = self._request("DELETE", f"{BOOKINGS}/{booking}", self.owner[booking])
        assert response.status_code in (200, 409), response.text

    @rule(booking=bookings)
    def expire(self, booking: str) -> None:
        if not booking:
            return

        async def lapse_and_sweep() -> None:
            async with self.world.pool.connection() as conn:
                await conn.execute(
                    "UPDATE bookings SET hold_expires_at = now() - interval '1 second'"
                    " WHERE id = %s AND status = 'PENDING_PAYMENT'",
                    (booking,),
                )
            await release_lapsed_holds(self.world.bookings)

        self.world.run(lapse_and_sweep())
        status = self._request("GET", f"{BOOKINGS}/{booking}", self.owner[booking]).json()["status"]
        assert status in {"EXPIRED", "CANCELLED", "CONFIRMED"}  # a paid booking has no hold to lapse

    @rule(booking=bookings)
    def start_payment(self, booking: str) -> None:
        if not booking:
            return
        response = self._request("POST", PAYMENTS, self.owner[booking], {"booking_id": booking})
        if response.status_code != 201:
            assert response.json()["code"] in {"INVALID_STATE", "HOLD_EXPIRED"}, response.text

    def _payments(self, booking: str) -> list[dict[str, Any]]:
        response = self.world.run(
            self.world.client.get(PAYMENTS, params={"booking_id": booking}, headers=self.world.admin)
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    @rule(booking=bookings, outcome=st.sampled_from(["succeeded", "succeeded", "failed"]))
    def pay(self, booking: str, outcome: str) -> None:
        """Start paying (when the booking still awaits payment) and get the bank's answer at once."""
        self.start_payment(booking)
        self.settle_payment(booking, outcome)

    @rule(booking=bookings, outcome=st.sampled_from(["succeeded", "failed"]))
    def settle_payment(self, booking: str, outcome: str) -> None:
        """The bank's answer to the booking's latest intent, whatever became of the booking meanwhile."""
        if not booking or not (payments := self._payments(booking)):
            return
        url = f"{PAYMENTS}/{payments[0]['id']}/sandbox/confirm"
        response = self._request("POST", url, self.owner[booking], {"outcome": outcome})
        if response.status_code != 200:
            assert response.json()["code"] == "INVALID_STATE", response.text

    @rule(booking=bookings, amount=st.sampled_from([None, 100, 10**9]))
    def refund(self, booking: str, amount: int | None) -> None:
        paid = (
            [p for p in self._payments(booking) if p["status"] in ("SUCCEEDED", "PARTIALLY_REFUNDED")]
            if booking
            else []
        )
        if not paid:
            return
        body = {} if amount is None else {"amount": amount}
        response = self.world.run(
            self.world.client.post(f"{PAYMENTS}/{paid[0]['id']}/refund", json=body, headers=self.world.admin)
        )
        assert response.status_code in (201, 409), response.text

    @invariant()
    def inventory_matches_live_bookings(self) -> None:
        async def check() -> None:
            async with self.world.pool.connection() as conn:
                assert await (await conn.execute(BUCKETS_CONSISTENT)).fetchall() == []
                assert await (await conn.execute(SEATS_CONSISTENT)).fetchall() == []
                assert await (await conn.execute(PAYMENTS_CONSISTENT)).fetchall() == []

        self.world.run(check())


def test_bookings_stay_consistent_through_any_sequence_of_changes(settings: Settings) -> None:
    world = _World(settings)
    BookingMachine.world = world
    try:
        run_state_machine_as_test(BookingMachine, settings=MACHINE_SETTINGS)
    finally:
        world.close()
