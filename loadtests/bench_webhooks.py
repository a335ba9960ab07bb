"""Webhook receipt → ``booking:confirmed`` on the WebSocket (issue 10): latency p50/p95 over N payments, and webhook
throughput when 50 replays of each event arrive at once.

Run against a PostgreSQL and Redis of your own; a scratch database is created, migrated, given one flight with
``--payments`` bookings awaiting payment (each with an open sandbox intent, written in SQL: creating them is not
what is measured), and dropped:

    uv run python loadtests/bench_webhooks.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/5

The API runs as ``flightdesk api`` (granian, ``--workers``); the outbox relay runs in this process (as the worker
runs it); an admin's WebSocket receives every booking event. Measured:

1. latency: ``--concurrency`` senders POST a signed ``payment_intent.succeeded`` for each payment to
   ``/webhooks/stripe``; for each, the time from just before the POST to its ``booking:confirmed`` frame. The
   reference is the same clients' round trip to ``GET /api/v1/health`` on the same server, same run;
2. replays: ``--replay-events`` further payments, each event POSTed 50 times at once (all 50 in flight together),
   as webhook deliveries per second against the health endpoint's requests per second at the same concurrency; and
   a check that each booking was confirmed once and has one ``booking.confirmed`` outbox event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from arq.connections import RedisSettings, create_pool
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.audit.service import SYSTEM
from core_api.bookings.service import new_pnr
from core_api.outbox.relay import OutboxRelay
from core_api.payments.webhooks import sign
from core_api.storage.db import transaction
from core_api.storage.migrations import migrate
from core_api.users.schemas import Role
from core_api.users.service import create_user
from loadtests.bench_booking import Api
from loadtests.loadgen import api_environment, create_scratch_database, drop_database, run_closed_loop

SECRET = "whsec_bench_0123456789abcdef0123456789abcdef"  # noqa: S105 - the scratch API's webhook secret
PASSWORD = "benchmark password"  # noqa: S105 - the bench account's
REPLAYS = 50


_REFERENCE_DATA = [
    "INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB')",
    "INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES"
    " ('JFK', 'John F Kennedy', 'New York', 'US', 'America/New_York', 40.64, -73.78),"
    " ('LHR', 'Heathrow', 'London', 'GB', 'Europe/London', 51.47, -0.45)",
    "INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)"
    " VALUES ('BA', 'BA117', 'JFK', 'LHR', now() + interval '20 days', now() + interval '20 days 7 hours', 'B777')",
    "INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total, seats_available)"
    " SELECT id, 'ECONOMY', 'Y', 45000, 'USD', 1000000, 1000000 - %(n)s::int FROM flights",
]
_BOOKING = (
    "INSERT INTO bookings (id, pnr, flight_id, fare_id, cabin, fare_class, seat_count, total_amount, currency,"
    " contact_email, hold_expires_at, created_by)"
    " SELECT %(booking)s, %(pnr)s, f.id, p.id, 'ECONOMY', 'Y', 1, 45000, 'USD', 'traveller@example.com',"
    " now() + interval '2 hours', %(admin)s FROM flights AS f JOIN flight_prices AS p ON p.flight_id = f.id"
)
_PAYMENT = (
    "INSERT INTO payments (id, booking_id, provider, provider_payment_id, amount, currency)"
    " VALUES (%(payment)s, %(booking)s, 'sandbox', %(intent)s, 45000, 'USD')"
)


async def _setup(database_url: str, payments: int) -> tuple[list[tuple[str, str, int]], str]:
    """A flight, ``payments`` pending bookings each with an open sandbox intent, and an admin: (booking id, intent
    id, amount) of each, and the admin's email.
    """
    from core_api.settings import load_settings
    from core_api.storage.db import create_pool as create_db_pool

    settings = load_settings({"FLIGHTDESK_ENV": "test", "FLIGHTDESK_AUTH_JWT_KEYS": "bench:" + "k" * 48}, dotenv=None)
    pool = create_db_pool(settings, database_url, name="bench-setup")
    await pool.open(wait=True)
    rows: list[tuple[str, str, int]] = []
    try:
        async with transaction(pool) as tx:
            for statement in _REFERENCE_DATA:
                await tx.execute(statement, {"n": payments})
            admin = await create_user(
                tx, SYSTEM, email="bench-admin@example.com", password=PASSWORD, full_name="Bench Admin",
                role=Role.ADMIN, airline_code=None,
            )  # fmt: skip
            for _ in range(payments):
                booking_id, payment_id = uuid.uuid4(), uuid.uuid4()
                intent = f"pi_bench_{payment_id.hex[:20]}"
                params = {"booking": booking_id, "pnr": new_pnr(), "admin": admin.id, "payment": payment_id,
                          "intent": intent}  # fmt: skip
                await tx.execute(_BOOKING, params)
                await tx.execute(_PAYMENT, params)
                rows.append((str(booking_id), intent, 45000))
    finally:
        await pool.close()
    return rows, admin.email


def _event(intent: str, amount: int) -> bytes:
    event = {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount, "currency": "usd",
                            "status": "succeeded"}},
    }  # fmt: skip
    return json.dumps(event).encode()


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] * 1000 if len(values) > 1 else 0.0


class _Frames:
    """``booking:confirmed`` frames as they arrive: when each booking's came, and how many came twice."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.repeated = 0
        self.awaited: set[str] = set()
        self.all_arrived = asyncio.Event()

    async def listen(self, ws: Any) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["event"] != "booking:confirmed":
                continue
            booking_id = frame["data"]["booking_id"]
            self.repeated += booking_id in self.arrived
            self.arrived.setdefault(booking_id, time.perf_counter())
            self.awaited.discard(booking_id)
            if not self.awaited:
                self.all_arrived.set()


def _signed(intent: str, amount: int) -> tuple[bytes, dict[str, str]]:
    payload = _event(intent, amount)
    return payload, {"Stripe-Signature": sign(payload, SECRET), "Content-Type": "application/json"}


async def _latency(
    http: httpx.AsyncClient, base: str, frames: _Frames, rows: list[tuple[str, str, int]], concurrency: int
) -> None:
    """Webhook POST -> its booking:confirmed frame, ``concurrency`` senders at a time."""
    sent: dict[str, float] = {}
    frames.awaited = {row[0] for row in rows}
    frames.all_arrived.clear()
    queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)

    async def sender() -> None:
        while not queue.empty():
            booking_id, intent, amount = queue.get_nowait()
            payload, headers = _signed(intent, amount)
            sent[booking_id] = time.perf_counter()
            response = await http.post("/api/v1/webhooks/stripe", content=payload, headers=headers)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(frames.all_arrived.wait(), 30)
    elapsed = time.perf_counter() - started
    latencies = [frames.arrived[b] - sent[b] for b in sent if b in frames.arrived]
    reference = await run_closed_loop(base, "GET", "/api/v1/health", concurrency=concurrency, seconds=5)
    p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
    print(
        f"latency webhook -> booking:confirmed over {len(latencies)}/{len(sent)} payments "
        f"({concurrency} senders, {len(latencies) / elapsed:.0f} confirmations/s): p50 {p50:.1f} ms  p95 {p95:.1f} ms"
    )
    print(
        f"reference GET /api/v1/health round trip: p50 {reference.percentile(50):.1f} ms  "
        f"p95 {reference.percentile(95):.1f} ms  -> ratio p50 {p50 / reference.percentile(50):.1f}x  "
        f"p95 {p95 / reference.percentile(95):.1f}x"
    )


async def _replays(http: httpx.AsyncClient, base: str, rows: list[tuple[str, str, int]]) -> None:
    """Each event POSTed 50 times at once, one event after another."""
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    for _booking, intent, amount in rows:
        payload, headers = _signed(intent, amount)
        answers = await asyncio.gather(
            *(http.post("/api/v1/webhooks/stripe", content=payload, headers=headers) for _ in range(REPLAYS))
        )
        for answer in answers:
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    seconds = time.perf_counter() - started
    deliveries = len(rows) * REPLAYS
    reference = await run_closed_loop(base, "GET", "/api/v1/health", concurrency=REPLAYS, seconds=5)
    print(
        f"replays: {len(rows)} events x {REPLAYS} at once = {deliveries} deliveries in {seconds:.1f} s: "
        f"{deliveries / seconds:.0f} deliveries/s ({len(rows) / seconds:.1f} events/s), statuses {statuses}"
    )
    print(
        f"reference GET /api/v1/health at {REPLAYS} connections: {reference.rps:.0f} req/s -> ratio "
        f"{deliveries / seconds / reference.rps:.2f}"
    )


async def _run(args: argparse.Namespace) -> None:
    name, database_url = create_scratch_database(args.database_url, "bench_i10_payments_webhooks")
    relay = None
    api = None
    arq = None
    try:
        await migrate(database_url)
        total = args.payments + args.replay_events
        print(f"setting up {total} bookings awaiting payment ...", flush=True)
        rows, admin_email = await _setup(database_url, total)
        env = api_environment(
            database_url, args.redis_url, stripe_webhook_secret=SECRET, crypto_keys="1:" + "A" * 43 + "="
        )
        api = Api(env, args.workers, Path(args.log))
        await api.up()
        arq = await create_pool(RedisSettings.from_dsn(args.redis_url))
        relay = OutboxRelay(database_url, arq)
        await relay.start()
        limits = httpx.Limits(max_connections=REPLAYS + args.concurrency)
        async with httpx.AsyncClient(base_url=api.base, limits=limits, timeout=30) as http:
            login = await http.post("/api/v1/auth/login", json={"email": admin_email, "password": PASSWORD})
            token = login.json()["access_token"]
            frames = _Frames()
            offered = [Subprotocol("bearer"), Subprotocol(token)]
            async with connect(f"ws://127.0.0.1:{api.port}/api/v1/ws", subprotocols=offered, max_queue=None) as ws:
                listener = asyncio.create_task(frames.listen(ws))
                await asyncio.sleep(0.5)

                await _latency(http, api.base, frames, rows[: args.payments], args.concurrency)
                await _replays(http, api.base, rows[args.payments :])
                await asyncio.sleep(2)
                listener.cancel()
        with psycopg.connect(database_url) as conn:
            outbox = conn.execute(
                "SELECT count(*), count(DISTINCT aggregate_id) FROM outbox_events"
                " WHERE event_type = 'booking.confirmed'"
            ).fetchone()
            bookings = conn.execute("SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'").fetchone()
        assert outbox is not None
        assert bookings is not None
        print(
            f"check: {bookings[0]}/{total} bookings confirmed, {outbox[0]} booking.confirmed outbox events for "
            f"{outbox[1]} bookings, {frames.repeated} repeated frames"
        )
    finally:
        if relay is not None:
            await relay.stop()
        if arq is not None:
            await arq.aclose()
        if api is not None:
            api.stop()
        drop_database(args.database_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--replay-events", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log", default="/tmp/bench_webhooks_api.log")  # noqa: S108 - a log path, not a secret
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
