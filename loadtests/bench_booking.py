"""Hot-flight booking throughput (SPEC §5, §11): ``POST /api/v1/bookings`` over HTTP against pgbench running the
same inventory transaction in SQL, on one fare bucket that every booking locks.

Run against a PostgreSQL and Redis of your own; a scratch database is created, seeded with the small demo history
(``flightdesk seed --scale small``: 40 k bookings, their passengers and audit trail, so that what grows with
history shows; ``--history none`` starts empty), given one flight whose ECONOMY Y bucket has a million seats (the
run never sells out, so it measures the contended path), and dropped:

    uv run python loadtests/bench_booking.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/14 --workers 1

For each ``--workers`` count it runs, interleaved so that all see the same machine (each reference half before
and half after the HTTP run):

0. the ceiling: pgbench, ``--concurrency`` clients, ``UPDATE`` of one counter row and ``COMMIT`` — the most
   transactions per second that serialise on one row this server allows; every ratio is against it;
1. the inventory reference: pgbench, ``--concurrency`` clients, the inventory transaction in SQL — insert the
   booking and its passenger, then in one pipeline the audit row, the fare bucket's seats with the outbox event,
   and the commit. The statements are the application's own named queries (``sql/queries``), rendered into a
   pgbench script;
2. the API started with granian (``flightdesk api --workers N``) and driven by a closed loop of as many connections,
   each logged in as its own customer, all on 127.0.0.1: ``wrk`` where it is installed (``--driver``; apt's ``wrk``),
   else this process's httpx loop, which costs the machine about ten times the CPU per request. Each worker's pool
   is the default size, or ``ceil(concurrency / workers) + 2`` connections when that is smaller (a worker never has
   more requests in flight), so that four workers do not hold 80 connections of a server other work shares.

Then, to tell where the time goes: pgbench running every statement ``create_booking`` sends (the token check, the
reads before the fare bucket, and the booking read back after it where the checkout still does) and the inventory
transaction without the audit row; a sampler of ``pg_stat_activity`` during every run, telling what the transaction
holding the fare bucket's row lock is doing while the others queue behind it; and, with ``--profile``, ``py-spy`` on
the API during an extra run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.audit._personal import split_personal
from core_api.audit.service import SYSTEM
from core_api.bookings.service import PNR_ALPHABET
from core_api.settings import BookingSettings, DatabaseSettings
from core_api.storage.db import load_queries
from core_api.users.schemas import Role
from core_api.users.service import create_user
from loadtests.loadgen import (
    LoadResult,
    api_environment,
    create_scratch_database,
    drop_database,
    free_port,
    run_closed_loop,
    run_wrk,
    wait_until_up,
    wrk_available,
)

BOOKINGS = "/api/v1/bookings"
PASSWORD = "benchmark password"  # noqa: S105 - the bench accounts'
HOT_SEATS = 1_000_000
FARE_CLASS = "Y"
FARE_AMOUNT = 45000
DEFAULT_POOL_MAX = DatabaseSettings().pool_max
BOOKINGS_SQL, AUDIT_SQL, OUTBOX_SQL, AUTH_SQL = (load_queries(d) for d in ("bookings", "audit", "outbox", "auth"))
# Before issue 12 the cap was one query for both kinds of holder and the outbox insert a statement of its own; the
# scripts follow whichever the checkout has, so that the harness measures the commit before the change too.
SPLIT_CAP = "unpaid_seats_of_customer" in BOOKINGS_SQL
ANNOUNCED = "take_fare_seats_announced" in BOOKINGS_SQL
# Until issue 12 the service read the new booking back (booking_detail); since, its answer is built from the insert's.
READS_BACK = "created_at" not in BOOKINGS_SQL["insert_booking"]
# ... and wrote the booking and its passengers in one statement.
FUSED_INSERT = "insert_unseated_booking" in BOOKINGS_SQL
# ... and then sent it in the pipeline that takes the seats and commits (the statement answers nothing).
PIPELINED_INSERT = FUSED_INSERT and "ON CONFLICT" not in BOOKINGS_SQL["insert_unseated_booking"]
# Since, a big bucket's counter can be split over stripes (migration 0015).
STRIPED = "take_fare_seats(" in BOOKINGS_SQL["take_fare_seats_announced"]
# The ceiling: one counter row, decremented and committed by every client.
CEILING_TABLE = (
    "CREATE TABLE bench_ceiling (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO bench_ceiling VALUES (1, 0);"
)


# -- The hot flight and its customers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HotFlight:
    id: int
    fare_id: int
    departure_at: datetime


async def add_hot_flight(conn: psycopg.AsyncConnection[Any], stripes: int) -> HotFlight:
    """Reference data (an airline, two airports) and a flight whose one ECONOMY bucket never sells out."""
    departure = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB') ON CONFLICT DO NOTHING;
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
                ('JFK', 'John F Kennedy International Airport', 'New York', 'US', 'America/New_York', 40.64, -73.78),
                ('LHR', 'London Heathrow Airport', 'London', 'GB', 'Europe/London', 51.47, -0.45)
            ON CONFLICT DO NOTHING;
            """
        )
        cursor = await conn.execute(
            "INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at,"
            " aircraft) VALUES ('BA', 'BA9001', 'JFK', 'LHR', %s, %s, 'A320') RETURNING id",
            (departure, departure + timedelta(hours=7)),
        )
        flight = await cursor.fetchone()
        assert flight is not None
        cursor = await conn.execute(
            "INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,"
            " seats_available) VALUES (%s, 'ECONOMY', %s, %s, 'USD', %s, %s) RETURNING id",
            (flight["id"], FARE_CLASS, FARE_AMOUNT, HOT_SEATS, HOT_SEATS),
        )
        fare = await cursor.fetchone()
        assert fare is not None
        if stripes > 1:  # the counter over several rows (migration 0015), as the flights API splits a big bucket
            await conn.execute("SELECT split_fare_seats(ARRAY[%s::bigint], %s, 1)", (fare["id"], stripes))
    return HotFlight(flight["id"], fare["id"], departure)


async def add_customers(conn: psycopg.AsyncConnection[Any], prefix: str, count: int) -> list[uuid.UUID]:
    """``count`` customers ``<prefix><n>@example.com``, made as the CLI makes them."""
    ids = []
    async with conn.transaction():
        for number in range(count):
            user = await create_user(
                conn,
                SYSTEM,
                email=f"{prefix}{number}@example.com",
                password=PASSWORD,
                full_name=f"Bench Customer {number}",
                role=Role.CUSTOMER,
            )
            ids.append(user.id)
    return ids


async def log_in(base: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(number: int) -> str:
            credentials = {"email": f"http{number}@example.com", "password": PASSWORD}
            response = await client.post("/api/v1/auth/login", json=credentials)
            response.raise_for_status()
            return str(response.json()["access_token"])

        return list(await asyncio.gather(*(one(number) for number in range(count))))


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


# -- The pgbench scripts: the application's named queries, rendered ----------------------------------------------


@dataclass(frozen=True)
class Var:
    """A pgbench variable (``:name``), set per transaction by the script's first command."""

    name: str


@dataclass(frozen=True)
class Step:
    label: str
    command: str


_PARAM = re.compile(r"%\((\w+)\)s")
_PGBENCH_VARIABLE = re.compile(r"(?<!:):(?=\w)")

# Fresh ids for each transaction, as the service draws them in Python: a booking id, a PNR not yet taken (up to eight
# draws, like the service's retries), the passenger and event ids, and the client's own customer. Outside the
# transaction.
_DRAW = """SELECT booking.id AS booking_id, '{' || booking.id || '}' AS booking_ids,
       ARRAY[gen_random_uuid()]::text AS passenger_ids, gen_random_uuid() AS event_id, free.pnr,
       customer.id AS customer_id
FROM (SELECT gen_random_uuid() AS id) AS booking,
     (SELECT id FROM users WHERE lower(email) = 'pgbench' || :client_id::text || '@example.com') AS customer,
     LATERAL (SELECT draw.candidate AS pnr
              FROM generate_series(1, 8) AS attempt (n),
                   LATERAL (SELECT string_agg(substr('ABCDEFGHJKMNPQRSTUVWXYZ23456789',
                                                     1 + floor(random() * 31)::int, 1), '') AS candidate
                            FROM generate_series(1, 6) WHERE attempt.n > 0) AS draw
              WHERE NOT EXISTS (SELECT 1 FROM bookings WHERE bookings.pnr = draw.candidate)
              LIMIT 1) AS free
\\gset"""
assert f"'{PNR_ALPHABET}'" in _DRAW, "the PNR alphabet changed: change it in _DRAW too"


def spell_colons(literal: str) -> str:
    """``literal`` with any colon in its quoted text spelt ``chr(58)``: with -M prepared pgbench takes every
    ``:word`` for a variable, even inside a string (a ``pii:…`` reference, say).
    """
    end = literal.rfind("'")
    quoted, suffix = literal[: end + 1], literal[end + 1 :]
    if end < 0 or not _PGBENCH_VARIABLE.search(quoted):
        return literal
    return f"replace({quoted.replace(':', '~~')}, '~~', chr(58)){suffix}"


def render(conn: psycopg.Connection[Any], label: str, query: str, params: dict[str, Any]) -> Step:
    """A named query as a pgbench command: variables as ``:name``, the rest as SQL literals."""

    def value(match: re.Match[str]) -> str:
        bound = params[match[1]]
        if isinstance(bound, Var):
            return f":{bound.name}"
        literal = sql.Literal(bound).as_string(conn)
        return spell_colons(literal)

    return Step(label, _PARAM.sub(value, query) + ";")


def booking_steps(
    conn: psycopg.Connection[Any], flight: HotFlight, claims: dict[str, Any], *, reads: bool, audit: bool
) -> list[Step]:
    """The transaction ``create_booking`` runs for one adult: with ``reads``, every statement it sends (and the
    token check before it); without, the inventory statements only. Parameters are what the service binds.
    """
    booking, customer = Var("booking_id"), Var("customer_id")
    fare = {"flight_id": flight.id, "cabin": "ECONOMY", "fare_class": FARE_CLASS}
    snapshot = {
        "status": "PENDING_PAYMENT",
        "pnr": "ABC234",
        "flight_id": flight.id,
        "cabin": "ECONOMY",
        "fare_class": FARE_CLASS,
        "seat_count": 1,
        "total": {"amount": FARE_AMOUNT, "currency": "USD"},
        "customer_id": str(uuid.uuid4()),
        "agent_id": None,
        "contact_email": "pgbench0@example.com",
    }
    event = {
        "booking_id": str(uuid.uuid4()),
        **{key: snapshot[key] for key in ("pnr", "status", "flight_id")},
        "airline_code": "BA",
        **{key: snapshot[key] for key in ("customer_id", "agent_id", "seat_count", "total")},
        "availability": {**fare, "seats_available": HOT_SEATS - 1},
    }
    audit_row = {
        "occurred_at": None,
        "event_type": "booking.created",
        "actor_id": customer,
        "actor_role": "CUSTOMER",
        "ip": "127.0.0.1",
        "user_agent": f"python-httpx/{httpx.__version__}",
        "request_id": uuid.uuid4().hex,
        "entity_type": "booking",
        "entity_id": booking,
        "before": None,
        "after": json.dumps(snapshot),  # ": " rather than ":", which pgbench would read as a variable
        "metadata": json.dumps({"seats": [], "passengers": 1, "on_behalf": False}),
    }
    steps = [Step("draw ids (bench)", _DRAW)]
    if reads:
        principal = {"sub": uuid.UUID(claims["sub"]), "sid": uuid.UUID(claims["sid"]), "jti": claims["jti"]}
        steps.append(render(conn, "principal_state", AUTH_SQL["principal_state"], principal))
    steps.append(Step("BEGIN", "BEGIN;"))
    if reads:
        steps += [
            render(conn, "bookable_flight", BOOKINGS_SQL["bookable_flight"], {"flight_id": flight.id}),
            render(conn, "customer", BOOKINGS_SQL["customer"], {"id": customer}),
            render(conn, "lock_holder", BOOKINGS_SQL["lock_holder"], {"id": customer}),
            render(conn, "unpaid_seats_of_customer", BOOKINGS_SQL["unpaid_seats_of_customer"], {"holder": customer})
            if SPLIT_CAP
            else render(conn, "unpaid_seats", BOOKINGS_SQL["unpaid_seats"], {"holder": customer, "as_agent": False}),
            render(conn, "fare_buckets", BOOKINGS_SQL["fare_buckets"], fare),
        ]
    # In the service's order: the booking's rows first, the fare bucket's seats last (its row lock is the queue), then
    # the outbox and audit rows in one pipeline, then COMMIT.
    new_booking = {
        "id": booking,
        "pnr": Var("pnr"),
        "flight_id": flight.id,
        "fare_id": flight.fare_id,
        "cabin": "ECONOMY",
        "fare_class": FARE_CLASS,
        "customer_id": customer,
        "agent_id": None,
        "created_by": customer,
        "seat_count": 1,
        "total_amount": FARE_AMOUNT,
        "currency": "USD",
        "contact_email": "pgbench0@example.com",
        "contact_phone": None,
        "hold_minutes": 15,
    }
    travellers = {
        "booking_id": booking,
        "flight_id": flight.id,
        "ids": Var("passenger_ids"),
        "first_names": ["Ann"],
        "last_names": ["Example"],
        "dates_of_birth": [date(1985, 4, 2)],
        "types": ["ADULT"],
        "documents": [None],
        "seat_nos": [None],
    }
    fused = {**new_booking, **travellers, "passenger_ids": Var("passenger_ids")}
    if PIPELINED_INSERT:
        fused["hold_expires_at"] = datetime.now(UTC) + timedelta(minutes=15)
    elif FUSED_INSERT:
        steps.append(render(conn, "insert_unseated_booking", BOOKINGS_SQL["insert_unseated_booking"], fused))
    else:
        steps.append(render(conn, "insert_booking", BOOKINGS_SQL["insert_booking"], new_booking))
        steps.append(render(conn, "insert_passengers", BOOKINGS_SQL["insert_passengers"], travellers))
    if reads and READS_BACK:
        steps.append(render(conn, "booking_detail", BOOKINGS_SQL["booking_detail"], {"ids": Var("booking_ids")}))
    payload = json.dumps(event)
    outbox = {
        "id": Var("event_id"),
        "event_type": "booking.created",
        "booking_id": booking,
        "fare_id": flight.fare_id,
        "payload": payload,
    }
    # The fare bucket last, in one pipeline with the outbox event, the audit row and the COMMIT, as the service
    # sends them: the bucket's row lock is held for that one round trip.
    steps.append(Step("pipeline: \\startpipeline", "\\startpipeline"))
    if PIPELINED_INSERT:
        steps.append(render(conn, "insert_unseated_booking", BOOKINGS_SQL["insert_unseated_booking"], fused))
    if audit:
        # As record_in_pipeline writes it, first in the pipeline (it takes no lock): one insert with the row's
        # personal data (contact email, address) apart.
        texts, personal = split_personal(
            {"before": None, "after": snapshot, "metadata": json.loads(audit_row["metadata"])},
            actor_id=uuid.uuid4(), ip=audit_row["ip"], user_agent=audit_row["user_agent"], entity=("booking", "x"),
        )  # fmt: skip
        assert personal is not None
        row = audit_row | texts | personal.params()
        steps.append(render(conn, "record_event_with_personal_data", AUDIT_SQL["record_event_with_personal_data"], row))
    take = {"fare_id": flight.fare_id, "seats": 1}
    if ANNOUNCED:
        announced = {**outbox, **take}
        steps.append(render(conn, "take_fare_seats_announced", BOOKINGS_SQL["take_fare_seats_announced"], announced))
    else:
        steps += [
            render(conn, "take_fare_seats", BOOKINGS_SQL["take_fare_seats"], take),
            render(conn, "outbox insert_booking_event", BOOKINGS_SQL["insert_booking_event"], outbox),
        ]
    steps += [
        Step("COMMIT", "COMMIT;"),
        Step("pipeline: \\endpipeline (the round trip of all)", "\\endpipeline"),
    ]
    return steps


# -- pgbench -------------------------------------------------------------------------------------------------------


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    latencies_ms: list[float] = field(repr=False)
    statements: list[tuple[str, float]]
    """Each command's label and its average latency in ms, in script order (``-r``)."""

    def __add__(self, other: PgbenchResult) -> PgbenchResult:
        """Two runs of one script taken as one: throughput over both, all their latencies."""
        total = self.transactions + other.transactions
        seconds = self.transactions / self.tps + other.transactions / other.tps
        statements = [
            (label, (mine * self.transactions + theirs * other.transactions) / total)
            for (label, mine), (_, theirs) in zip(self.statements, other.statements, strict=True)
        ]
        latencies = self.latencies_ms + other.latencies_ms
        return PgbenchResult(total / seconds, total, self.failed + other.failed, latencies, statements)

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[p - 1] if len(self.latencies_ms) > 1 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.tps:8.1f} tps    p50 {self.percentile(50):6.1f} ms  p95 {self.percentile(95):6.1f} ms  "
            f"p99 {self.percentile(99):6.1f} ms  failed {self.failed}"
        )


def run_pgbench(
    database_url: str, steps: list[Step], *, clients: int, seconds: float, workdir: Path, name: str
) -> PgbenchResult:
    script = workdir / f"{name}.sql"
    script.write_text("\n".join(step.command for step in steps) + "\n", encoding="utf-8")
    logs = workdir / f"{name}-log"
    command = ["pgbench", "-n", "-M", "prepared", "-r", "-f", str(script), "-c", str(clients), "-j", "2"]
    command += ["-T", str(max(1, round(seconds))), "--log", f"--log-prefix={logs}", database_url]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {name} failed ({done.returncode}):\n{done.stderr[-3000:]}\n{done.stdout[-3000:]}")
    out = done.stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"pgbench {name}: no {pattern!r} in its output:\n{out}")
        return float(match[1])

    latencies = []
    for log in workdir.glob(f"{logs.name}.*"):
        latencies += [int(line.split()[2]) / 1000 for line in log.read_text().splitlines() if line.strip()]
        log.unlink()
    averages = [
        float(m[1]) for m in re.finditer(r"^\s+([\d.]+)\s+\d+\s+\S", out.split("statement latencies")[-1], re.M)
    ]
    if len(averages) != len(steps):
        raise RuntimeError(f"pgbench {name}: {len(averages)} statement latencies for {len(steps)} commands:\n{out}")
    return PgbenchResult(
        tps=number(r"tps = ([\d.]+) \(without initial connection time\)"),
        transactions=int(number(r"number of transactions actually processed: (\d+)")),
        failed=int(number(r"number of failed transactions: (\d+)")),
        latencies_ms=latencies,
        statements=[(step.label, average) for step, average in zip(steps, averages, strict=True)],
    )


# -- What the holder of the fare bucket's row lock is doing ----------------------------------------------------------

_SAMPLE = """
SELECT pid, state, wait_event_type, wait_event, query,
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blockers
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


def _first_line(query: str) -> str:
    return query.strip().splitlines()[0].strip().rstrip(";") if query.strip() else ""


# What is left of a statement without its parameters and literals: the same for the application's text (``$1``) and
# the rendered pgbench one (literals inline), so that either maps back to the named query.
_BOUND = re.compile(r"%\(\w+\)s|\$\d+|'(?:[^']|'')*'|\b\d+\b|\b(?:NULL|true|false)\b|\s+|;")


def _shape(query: str) -> str:
    return _BOUND.sub("", query)


class StatementNames:
    """The named query behind a statement text seen in ``pg_stat_activity``."""

    def __init__(self) -> None:
        by_shape: dict[str, list[str]] = {}
        by_line: dict[str, list[str]] = {}
        for queries in (BOOKINGS_SQL, AUDIT_SQL, OUTBOX_SQL, AUTH_SQL):
            for name, text in queries.items():
                by_shape.setdefault(_shape(text), []).append(name)
                by_line.setdefault(_first_line(text), []).append(name)
        for name, text in (("BEGIN", "BEGIN"), ("COMMIT", "COMMIT"), ("draw ids (bench)", _DRAW)):
            by_shape[_shape(text)] = by_line[_first_line(text)] = [name]
        self.by_shape = {shape: "/".join(names) for shape, names in by_shape.items()}
        self.by_line = {line: "/".join(names) for line, names in by_line.items()}

    def __call__(self, query: str | None) -> str:
        query = query or ""
        line = _first_line(query)
        return self.by_shape.get(_shape(query)) or self.by_line.get(line) or line[:40]


@dataclass
class LockProfile:
    samples: int = 0
    queued: int = 0
    fare_waiters: int = 0
    audit_waiters: int = 0
    holder: Counter[str] = field(default_factory=Counter)
    holder_kind: Counter[str] = field(default_factory=Counter)
    backends: Counter[str] = field(default_factory=Counter)
    """Every sampled backend of the database: its state, or what it waits for."""

    def __add__(self, other: LockProfile) -> LockProfile:
        return LockProfile(
            self.samples + other.samples,
            self.queued + other.queued,
            self.fare_waiters + other.fare_waiters,
            self.audit_waiters + other.audit_waiters,
            self.holder + other.holder,
            self.holder_kind + other.holder_kind,
            self.backends + other.backends,
        )

    def backend_states(self, n: int = 8) -> list[str]:
        """The share of sampled backends in each state: idle (waiting for the API), running, or waiting on what."""
        total = max(sum(self.backends.values()), 1)
        return [f"{count / total:5.0%}  {what}" for what, count in self.backends.most_common(n)]

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        share = self.queued / self.samples
        kinds = ", ".join(f"{kind} {count / max(self.queued, 1):.0%}" for kind, count in self.holder_kind.most_common())
        return (
            f"fare row queue in {share:.0%} of samples, {self.fare_waiters / self.samples:.1f} waiting on average "
            f"(audit head: {self.audit_waiters / self.samples:.1f}); its holder: {kinds}"
        )

    def top(self, n: int = 6) -> list[str]:
        return [f"{count / max(self.queued, 1):5.0%}  {what}" for what, count in self.holder.most_common(n)]


def _takes_fare_seats(query: str) -> bool:
    """A statement that waits for the fare bucket's row, or for one of its stripes (``take_fare_seats()``, 0015)."""
    return "flight_prices" in query or "take_fare_seats(" in query


class LockSampler:
    """Samples ``pg_stat_activity`` of the scratch database every ``interval`` seconds on a thread of its own: how
    many transactions queue for the fare bucket's row (and the audit chain head), and what the one holding the
    fare row is doing — running SQL, waiting for its client between statements, or waiting in the server.
    """

    def __init__(self, database_url: str, interval: float = 0.02) -> None:
        self.database_url = database_url
        self.interval = interval
        self.name = StatementNames()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.profile = LockProfile()

    def __enter__(self) -> LockSampler:
        self.profile = LockProfile()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lock-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                self._record(conn.execute(_SAMPLE).fetchall())

    def _record(self, rows: list[tuple[Any, ...]]) -> None:
        profile = self.profile
        profile.samples += 1
        by_pid = {row[0]: row for row in rows}
        for _, state, wait_type, wait_event, _, _ in rows:
            if state == "active":
                profile.backends["running" if wait_type is None else f"waiting {wait_type}:{wait_event}"] += 1
            else:
                profile.backends[str(state)] += 1
        fare_waiters = {row[0] for row in rows if row[2] == "Lock" and _takes_fare_seats(row[4] or "")}
        profile.fare_waiters += len(fare_waiters)
        profile.audit_waiters += sum(row[2] == "Lock" and "audit_chain_head" in (row[4] or "") for row in rows)
        if not fare_waiters:
            return
        profile.queued += 1
        heads = {pid for waiter in fare_waiters for pid in by_pid[waiter][5] or ()} - fare_waiters
        holders = [by_pid[pid] for pid in heads if pid in by_pid]
        if not holders:
            profile.holder["(holder just committed)"] += 1
            profile.holder_kind["just committed"] += 1
            return
        _, state, wait_type, wait_event, query, _ = holders[0]
        statement = self.name(query)
        if state == "idle in transaction":
            kind, what = "client's turn", f"client's turn after {statement}"
        elif state == "active" and wait_type is None:
            kind, what = "running SQL", f"running {statement}"
        elif state == "active":
            kind, what = f"waiting {wait_type}", f"waiting {wait_type}:{wait_event} in {statement}"
        else:
            kind, what = str(state), f"{state} ({statement})"
        profile.holder[what] += 1
        profile.holder_kind[kind] += 1


# -- What each statement cost the server ------------------------------------------------------------------------------

_STATEMENT_STATS = """
SELECT s.query, s.calls, s.total_exec_time, s.total_plan_time, s.shared_blks_hit + s.shared_blks_read AS blocks,
       s.wal_bytes
FROM pg_stat_statements AS s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.calls > 0
ORDER BY s.total_exec_time DESC
"""


class StatementStats:
    """``pg_stat_statements`` over one run, for the scratch database only, where the server preloads it
    (``shared_preload_libraries``: a restart, so a shared server may not); else :attr:`available` is false.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.rows: list[tuple[Any, ...]] = []
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1")
            self.available = True
        except psycopg.Error:
            self.available = False

    def __enter__(self) -> StatementStats:
        if self.available:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_stat_statements_reset(0, oid, 0) FROM pg_database WHERE datname = current_database()"
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                self.rows = conn.execute(_STATEMENT_STATS).fetchall()

    def lines(self, bookings: int, top: int = 12) -> list[str]:
        if not self.available:
            return ["  pg_stat_statements is not preloaded on this server: no per-statement figures"]
        names = StatementNames()
        per = 1 / max(bookings, 1)
        total = sum(row[2] for row in self.rows)
        out = [
            f"  {total * per:.3f} ms of statement execution per booking over {len(self.rows)} statements "
            f"(pg_stat_statements; planning {sum(row[3] for row in self.rows) * per:.3f} ms):",
            "      ms/booking  calls/booking  blocks/call  WAL bytes/call  statement",
        ]
        for query, calls, exec_ms, _plan_ms, blocks, wal in self.rows[:top]:
            out.append(
                f"      {exec_ms * per:10.3f}  {calls * per:13.2f}  {blocks / calls:11.1f}  {int(wal) / calls:14.0f}  "
                f"{names(query)}"
            )
        return out


# -- CPU accounting ---------------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process and its descendants, from /proc."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class CpuUse:
    machine_busy: float
    api_ms_per_request: float
    loadgen_ms_per_request: float
    postgres_ms_per_request: float
    """CPU of the PostgreSQL backends serving the scratch database (the API's connections), per request."""


_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


def _children_cpu_seconds() -> float:
    """CPU of this process's children that have exited and been waited for (a wrk run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


class CpuMeter:
    """CPU used during a run by the API's processes, this process and the wrk it ran, and the PostgreSQL backends of
    ``database_url`` open when the run starts (the API's pool, filled by the warm-up run; the server must be on this
    machine).
    """

    def __init__(self, api_pid: int, database_url: str) -> None:
        self.api_pid = api_pid
        with psycopg.connect(database_url, autocommit=True) as conn:
            self.backends = [int(row[0]) for row in conn.execute(_BACKENDS).fetchall()]

    def __enter__(self) -> CpuMeter:
        self._api, self._machine = _tree_cpu_seconds(self.api_pid), _machine_ticks()
        self._self = time.process_time() + _children_cpu_seconds()
        self._postgres = _cpu_seconds(self.backends)
        return self

    def __exit__(self, *exc: object) -> None:
        self.api = _tree_cpu_seconds(self.api_pid) - self._api
        self.loadgen = time.process_time() + _children_cpu_seconds() - self._self
        self.postgres = _cpu_seconds(self.backends) - self._postgres
        busy, total = _machine_ticks()
        self.busy = (busy - self._machine[0]) / max(total - self._machine[1], 1)

    def per_request(self, requests: int) -> CpuUse:
        per = 1000 / max(requests, 1)
        return CpuUse(self.busy, per * self.api, per * self.loadgen, per * self.postgres)


# -- The API under load, and its profile -------------------------------------------------------------------------------


class Api:
    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "core_api.cli", "api", "--port", str(self.port), "--workers", str(workers)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    async def up(self) -> None:
        try:
            await wait_until_up(f"{self.base}/api/v1/health")
        except TimeoutError:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the API did not come up; its log ends:\n{tail}") from None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def py_spy_command() -> list[str] | None:
    if found := shutil.which("py-spy"):
        return [found]
    if uvx := shutil.which("uvx"):
        return [uvx, "--quiet", "--from", "py-spy", "py-spy"]
    return None


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _package(file: str) -> str:
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/core_api/" in file or file.startswith("core_api/"):
        return "core_api"
    stdlib = re.search(r"/python3\.\d+/([^/]+)", file)
    if stdlib:
        return stdlib[1].removesuffix(".py")
    return file.split("/", 1)[0].removesuffix(".py")


def _short(file: str) -> str:
    if "site-packages/" in file:
        return file.rsplit("site-packages/", 1)[1]
    if "/core_api/" in file:
        return "core_api/" + file.rsplit("/core_api/", 1)[1]
    return re.sub(r"^.*/python3\.\d+/", "", file)


def _where(frame: re.Match[str]) -> str:
    return f"{frame['function']} ({_short(frame['file'])})"


def summarize_profile(raw: Path, top: int = 12) -> list[str]:
    """From py-spy's raw output: the share in the event loop's epoll wait, then of the rest the self time by package
    and by function, and which function of ours is innermost on the stack (what our code asked for, directly or
    through a library: SQL round trips, JSON, the rate limit's Redis call).
    """
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [m for m in (_FRAME.match(f) for f in stack.split(";")) if m]
        if not frames or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        leaf = frames[-1]
        if leaf["function"].endswith("select") and leaf["file"].endswith("selectors.py"):
            waiting += count
            continue
        by_package[_package(leaf["file"])] += count
        by_function[_where(leaf)] += count
        innermost = next(
            (f for f in reversed(frames) if _package(f["file"]) == "core_api" and not f["file"].endswith("cli.py")),
            None,
        )
        ours[_where(innermost) if innermost else f"(none: {_package(leaf['file'])})"] += count
    busy = total - waiting
    if not busy:
        return ["  (no samples)"]
    lines = [
        f"  {total} samples of the API's Python threads; {waiting / total:.0%} in the event loop's epoll wait (idle, "
        f"or runnable and waiting for a CPU); of the other {busy}, self time by package:"
    ]
    lines += [f"    {count / busy:5.1%}  {package}" for package, count in by_package.most_common(top)]
    lines.append(f"  top {top} functions by self time:")
    lines += [f"    {count / busy:5.1%}  {function}" for function, count in by_function.most_common(top)]
    lines.append("  by the innermost function of ours on the stack (its own time plus the library code it called):")
    lines += [f"    {count / busy:5.1%}  {function}" for function, count in ours.most_common(top)]
    return lines


# -- The run ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRun:
    """One API worker count: the pgbench reference and the HTTP run right after it, with what the sampler saw."""

    workers: int
    pool_max: int
    ceiling: PgbenchResult
    """pgbench decrementing one counter row: what one row allows on this server right now."""
    reference: PgbenchResult
    reference_locks: LockProfile
    http: LoadResult
    http_locks: LockProfile
    cpu: CpuUse
    statements: list[str] = field(default_factory=list)
    """What each statement cost the server over the HTTP run (pg_stat_statements), where it is preloaded."""


def booking_body(flight: HotFlight) -> dict[str, Any]:
    adult = {"first_name": "Ann", "last_name": "Example", "date_of_birth": "1985-04-02", "type": "ADULT"}
    return {"flight_id": flight.id, "cabin": "ECONOMY", "fare_class": FARE_CLASS, "passengers": [adult]}


def ms_statements(result: PgbenchResult) -> list[str]:
    return [f"    {average:7.3f} ms  {label}" for label, average in result.statements]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections, and pgbench clients")
    parser.add_argument("--workers", default="1,2,4", help="API worker counts, comma separated")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="py-spy on workers=1")
    parser.add_argument(
        "--history", choices=["small", "none"], default="small", help="seed the demo history first (small), or not"
    )
    parser.add_argument(
        "--fare-stripes",
        type=int,
        default=BookingSettings().fare_stripes if STRIPED else 1,
        help="rows the hot bucket's seat counter is split over (1: one row; as FLIGHTDESK_BOOKING_FARE_STRIPES)",
    )
    parser.add_argument(
        "--template",
        help="copy this database (seeded and migrated by the same checkout) instead of seeding: repeated runs in "
        "minutes rather than one per seed",
    )
    parser.add_argument(
        "--driver",
        choices=["wrk", "httpx"],
        default="wrk" if wrk_available() else "httpx",
        help="the HTTP load generator: wrk (C, where installed: the default) or this process's httpx loop",
    )
    args = parser.parse_args()
    worker_counts = [int(part) for part in args.workers.split(",") if part.strip()]
    clients = args.concurrency
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not on PATH (PostgreSQL client tools)")

    workdir = Path(tempfile.mkdtemp(prefix="fd_bench_booking_"))
    name, database_url = create_scratch_database(args.database_url, "fd_bench_booking", template=args.template)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
    # Our own state directory: keys, and the Prometheus files that `api --workers N` clears at start.
    env = api_environment(
        database_url, args.redis_url, booking_max_unpaid_seats="10000", state_dir=str(workdir / "state")
    )
    api: Api | None = None
    try:
        started = time.perf_counter()
        # `seed` migrates first; both ANALYZE what they wrote, as they do for anyone.
        command = ["migrate"] if args.history == "none" or args.template else ["seed", "--scale", args.history]
        migrated = subprocess.run([sys.executable, "-m", "core_api.cli", *command], env=env, capture_output=True)
        if migrated.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{migrated.stderr.decode(errors='replace')[-3000:]}")
        history_seconds = time.perf_counter() - started
        # Rows as dicts, as the application's pool gives them.
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as setup:
            flight = await add_hot_flight(setup, args.fare_stripes)
            await add_customers(setup, "http", clients)
            await add_customers(setup, "pgbench", clients)
            await setup.execute(CEILING_TABLE)
            await setup.commit()
        with psycopg.connect(database_url) as render_conn:
            inventory_steps = booking_steps(render_conn, flight, {}, reads=False, audit=True)
            no_audit_steps = booking_steps(render_conn, flight, {}, reads=False, audit=False)
        ceiling_steps = [
            Step("BEGIN", "BEGIN;"),
            Step("UPDATE the one counter row", "UPDATE bench_ceiling SET n = n - 1 WHERE id = 1;"),
            Step("COMMIT", "COMMIT;"),
        ]
        sampler = LockSampler(database_url)
        statement_stats = StatementStats(database_url)
        body = booking_body(flight)
        print(
            f"Hot flight BA9001 JFK-LHR (id {flight.id}): one ECONOMY {FARE_CLASS} bucket of {HOT_SEATS:,} seats that "
            + (
                "every booking locks (conditional UPDATE, held to COMMIT). "
                if args.fare_stripes == 1
                else f"split over {args.fare_stripes} stripes, a booking locking one (held to COMMIT). "
            )
            + f"{clients} HTTP connections, one customer each, "
            f"and {clients} pgbench clients; {args.seconds:g} s per run.\n"
            f"One machine of {os.cpu_count()} CPUs runs the API, PostgreSQL, pgbench and the load generator "
            f"({args.driver}; all on 127.0.0.1), shared with other work right now: compare the ratios, not the "
            f"absolute numbers.\n"
            f"Set up in {time.perf_counter() - started:.1f} s ({' '.join(command)}: {history_seconds:.1f} s; "
            f"{2 * clients} customers); artifacts in {workdir}",
            flush=True,
        )

        # Log in once, through the API, before anything is measured; the tokens outlive API restarts (fixed key).
        api = Api({**env, "FLIGHTDESK_DATABASE_POOL_MAX": "4"}, 1, workdir / "api-login.log")
        await api.up()
        tokens = await log_in(api.base, clients)
        api.stop()
        api = None
        headers = [{"Authorization": f"Bearer {token}"} for token in tokens]
        with psycopg.connect(database_url) as render_conn:
            service_steps = booking_steps(render_conn, flight, token_claims(tokens[0]), reads=True, audit=True)

        def pgbench(steps: list[Step], name: str, seconds: float = args.seconds) -> tuple[PgbenchResult, LockProfile]:
            with sampler:
                result = run_pgbench(database_url, steps, clients=clients, seconds=seconds, workdir=workdir, name=name)
            return result, sampler.profile

        async def load(base: str, seconds: float) -> LoadResult:
            if args.driver == "wrk":
                return await run_wrk(
                    base, "POST", BOOKINGS, json=body, headers=headers, concurrency=clients, seconds=seconds, expect=201
                )
            return await run_closed_loop(
                base, "POST", BOOKINGS, json=body, headers=headers, concurrency=clients, seconds=seconds, expect=201
            )

        runs: list[WorkerRun] = []
        extra: dict[str, tuple[PgbenchResult, LockProfile]] = {}
        profile_lines: list[str] = []
        for workers in worker_counts:
            if not runs:  # the variants next to the first reference, so that the same machine runs all three
                extra["no_audit"] = await asyncio.to_thread(pgbench, no_audit_steps, "inventory-no-audit")
                extra["service"] = await asyncio.to_thread(pgbench, service_steps, "service-statements")
            # The reference runs half before and half after the HTTP run, so that a drift in what else the machine
            # runs weighs on both alike.
            half = args.seconds / 2
            ceiling_before = await asyncio.to_thread(pgbench, ceiling_steps, f"ceiling-w{workers}-before", half)
            before = await asyncio.to_thread(pgbench, inventory_steps, f"inventory-w{workers}-before", half)

            pool_max = min(DEFAULT_POOL_MAX, math.ceil(clients / workers) + 2)
            api_env = {**env, "FLIGHTDESK_DATABASE_POOL_MAX": str(pool_max)}
            api = Api(api_env, workers, workdir / f"api-w{workers}.log")
            await api.up()
            await load(api.base, max(1.0, args.seconds / 5))  # warm: pools filled, statements prepared
            with sampler, CpuMeter(api.process.pid, database_url) as cpu, statement_stats:
                http = await load(api.base, args.seconds)
            statement_lines = statement_stats.lines(http.requests)
            http_locks = sampler.profile
            api.stop()
            api = None
            after = await asyncio.to_thread(pgbench, inventory_steps, f"inventory-w{workers}-after", half)
            ceiling_after = await asyncio.to_thread(pgbench, ceiling_steps, f"ceiling-w{workers}-after", half)
            reference, reference_locks = before[0] + after[0], before[1] + after[1]
            ceiling = ceiling_before[0] + ceiling_after[0]
            cpu_use = cpu.per_request(http.requests)
            runs.append(
                WorkerRun(
                    workers, pool_max, ceiling, reference, reference_locks, http, http_locks, cpu_use, statement_lines
                )
            )
            print(
                f"  workers {workers}: ceiling {ceiling.tps:.0f} tps, pgbench inventory {reference.tps:.0f} tps, "
                f"HTTP {http.rps:.0f} req/s ({http.rps / ceiling.tps:.1%} of the ceiling)",
                flush=True,
            )

            if workers == 1 and args.profile:
                api = Api(api_env, workers, workdir / "api-profile.log")
                await api.up()
                profile_lines = await profile_api(api, load, workdir, min(args.seconds, 8.0))
                api.stop()
                api = None

        report(runs, *extra["service"], *extra["no_audit"], profile_lines, args, max_connections, workdir)
    finally:
        if api is not None:
            api.stop()
        drop_database(args.database_url, name)


async def profile_api(
    api: Api, load: Callable[[str, float], Awaitable[LoadResult]], workdir: Path, seconds: float
) -> list[str]:
    """py-spy on the API's processes (non-blocking: it does not pause them) during a run of its own."""
    command = py_spy_command()
    if command is None:
        return ["  py-spy not found (install it, or uv's uvx to fetch it): no profile"]
    raw = workdir / "profile-workers1.txt"
    await load(api.base, max(1.0, seconds / 5))  # warm, as before the measured run
    command += ["record", "--pid", str(api.process.pid), "--subprocesses", "--nonblocking", "--rate", "200"]
    command += ["--nolineno", "--full-filenames", "--format", "raw", "--output", str(raw)]
    command += ["--duration", str(round(seconds))]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # The load starts at once and outlasts py-spy by a little, so every sample it takes is under load.
    result: LoadResult = await load(api.base, seconds + 2.0)
    _, errors = await asyncio.to_thread(spy.communicate)
    if spy.returncode != 0 or not raw.exists():
        return [f"  py-spy failed ({spy.returncode}): {errors.strip()[-500:]}"]
    return [
        f"  while profiled (py-spy at 200 Hz, non-blocking): {result}",
        *summarize_profile(raw),
        f"  collapsed stacks (flamegraph input, e.g. speedscope or inferno): {raw}",
    ]


def report(
    runs: list[WorkerRun],
    service: PgbenchResult,
    service_locks: LockProfile,
    no_audit: PgbenchResult,
    no_audit_locks: LockProfile,
    profile_lines: list[str],
    args: argparse.Namespace,
    max_connections: int,
    workdir: Path,
) -> None:
    print(
        f"\n== Throughput: POST /bookings over HTTP vs pgbench, {args.concurrency} clients, {args.seconds:g} s each "
        f"(the pgbench reference half before and half after the HTTP run)"
    )
    for run in runs:
        http, reference, cpu = run.http, run.reference, run.cpu
        print(
            f"\nAPI --workers {run.workers} (pool max {run.pool_max} per worker; "
            f"server max_connections {max_connections})"
        )
        print(f"  {'pgbench, one counter row (the ceiling)':46}{run.ceiling}")
        print(f"  {'pgbench, inventory transaction (reference)':46}{reference}")
        print(f"  {'POST /api/v1/bookings over HTTP':46}{http}")
        if http.failures:
            print(f"    errors: {', '.join(f'{what} x{count}' for what, count in http.failures.items())}")
        print(
            f"  HTTP / ceiling: {http.rps / run.ceiling.tps:.1%} of its throughput; p99 {http.percentile(99):.1f} vs "
            f"{run.ceiling.percentile(99):.1f} ms"
        )
        print(
            f"  HTTP / pgbench: {http.rps / reference.tps:.2f}x throughput; p50 {http.percentile(50):.1f} vs "
            f"{reference.percentile(50):.1f} ms, p99 {http.percentile(99):.1f} vs {reference.percentile(99):.1f} ms"
        )
        print(
            f"  CPU: machine {cpu.machine_busy:.0%} busy during the HTTP run; per booking "
            f"{cpu.api_ms_per_request:.2f} ms in the API, {cpu.postgres_ms_per_request:.2f} ms in its PostgreSQL "
            f"backends, {cpu.loadgen_ms_per_request:.2f} ms in the load generator"
        )
        print(f"  pgbench: {run.reference_locks.summary()}")
        print(f"  HTTP:    {run.http_locks.summary()}")

    print("\n== Summary (the fare row is held for 1/throughput per booking while its queue never empties)")
    print(f"  {'workers':>7}  {'HTTP req/s':>10}  {'ceiling tps':>11}  {'of ceiling':>10}  {'pgbench tps':>11}  "
          f"{'ratio':>5}  {'row held ms HTTP/pgbench':>24}  {'HTTP p50/p95/p99 ms':>21}  "
          f"{'pgbench p50/p95/p99 ms':>22}  errors")  # fmt: skip
    for run in runs:
        http, reference = run.http, run.reference
        http_p = "/".join(f"{http.percentile(p):.1f}" for p in (50, 95, 99))
        ref_p = "/".join(f"{reference.percentile(p):.1f}" for p in (50, 95, 99))
        held = f"{1000 / http.rps:.2f} / {1000 / reference.tps:.2f}"
        print(
            f"  {run.workers:>7}  {http.rps:>10.1f}  {run.ceiling.tps:>11.1f}  {http.rps / run.ceiling.tps:>10.1%}  "
            f"{reference.tps:>11.1f}  {http.rps / reference.tps:>4.2f}x  "
            f"{held:>24}  {http_p:>21}  {ref_p:>22}  {http.errors}"
        )

    print("\n== Where the time goes")
    first = runs[0]
    print(f"pgbench, inventory transaction (around workers {first.workers}): mean latency of each command")
    print("\n".join(ms_statements(first.reference)))
    print("  what the holder of the fare row was doing (share of samples with a queue):")
    print("\n".join(f"    {line}" for line in first.reference_locks.top()))
    what = "token check, reads, booking read back" if READS_BACK else "token check, reads"
    print(f"\npgbench, every statement create_booking sends ({what}): {service}")
    print("\n".join(ms_statements(service)))
    print(f"  {service_locks.summary()}")
    print("\n".join(f"    {line}" for line in service_locks.top()))
    print(f"\npgbench, inventory transaction without the audit row: {no_audit}")
    print(f"  {no_audit_locks.summary()}")
    base, http_first = first.reference.tps, first.http.rps
    print(
        f"\nRun one after the other, around workers {first.workers}: against the inventory transaction "
        f"({base:.0f} tps), without the audit row {no_audit.tps / base:.2f}x, every statement of the service "
        f"{service.tps / base:.2f}x, HTTP {http_first / base:.2f}x; HTTP against pgbench sending every statement of "
        f"the service: {http_first / service.tps:.2f}x"
    )
    for run in runs:
        print(
            f"\nHTTP workers {run.workers}, what the holder of the fare row was doing (share of samples with a queue):"
        )
        print("\n".join(f"    {line}" for line in run.http_locks.top()))
        print(f"  every backend of the database (the API's pool) over the HTTP run, {run.workers} worker(s):")
        print("\n".join(f"    {line}" for line in run.http_locks.backend_states()))
        print(f"  what each statement cost the server over the HTTP run, {run.workers} worker(s):")
        print("\n".join(run.statements))
    if profile_lines:
        print("\nAPI profile (workers 1)")
        print("\n".join(profile_lines))
    print(f"\nartifacts (pgbench scripts, API logs, profile): {workdir}")


if __name__ == "__main__":
    asyncio.run(main())
