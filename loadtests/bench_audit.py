"""Audit benchmarks: booking throughput spread over many flights with and without the audit row, the seal lag
meanwhile, and ``GET /audit/logs`` latency on millions of rows.

``spread`` (default): ``POST /api/v1/bookings`` over HTTP, each request on one of ``--flights`` flights drawn at
random, from ``--concurrency`` connections, against pgbench running the same inventory transaction (the booking's
rows, the fare bucket's seats, the outbox event, COMMIT) with and without the audit row, in the same run. With
``--api-root`` it drives another checkout (its own ``.venv``, migrations and SQL): that is how "before" is
measured, against a worktree of the commit this branch started from. A worker (``flightdesk worker``: the sealer)
runs throughout, and the seal lag of the rows written meanwhile (sealed_at minus occurred_at) is reported.

    uv run python loadtests/bench_audit.py spread --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/15 [--api-root ../audit-before] [--flights 200] [--concurrency 64]

``logs``: ``--rows`` (5 M) audit rows, then the p50/p95 of ``GET /audit/logs`` under each filter combination (first
pages and deep pages, the filter values drawn at random per request) over HTTP, against the bare health endpoint.

    uv run python loadtests/bench_audit.py logs --database-url … --redis-url redis://127.0.0.1:6379/15 [--rows 5000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.audit._personal import split_personal
from loadtests.bench_booking import PgbenchResult, Step, Var, run_pgbench, spell_colons
from loadtests.loadgen import (
    LoadResult,
    api_environment,
    create_scratch_database,
    drop_database,
    free_port,
    run_closed_loop,
    wait_until_up,
)

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password"  # noqa: S105 - the bench accounts'
FARE_AMOUNT = 45000
_HEADER = re.compile(r"^-- (?P<name>[a-z_][a-z0-9_]*) --\s*$")
_PARAM = re.compile(r"%\((\w+)\)s")


def queries_of(root: Path, domain: str) -> dict[str, str]:
    """The named queries of ``root``'s ``sql/queries/<domain>.sql`` (the checkout under test, not this one)."""
    found: dict[str, list[str]] = {}
    name = None
    for line in (root / "sql" / "queries" / f"{domain}.sql").read_text(encoding="utf-8").splitlines():
        header = _HEADER.match(line)
        if header:
            name = header["name"]
            found[name] = []
        elif name is not None and not (not found[name] and line.startswith("--")):
            found[name].append(line)
    return {key: "\n".join(lines).strip() for key, lines in found.items()}


def render(conn: psycopg.Connection[Any], query: str, params: dict[str, Any], label: str) -> Step:
    """A named query as a pgbench command; literals that pgbench would read as ``:variables`` are spelt with chr(58)."""

    def value(match: re.Match[str]) -> str:
        bound = params[match[1]]
        if isinstance(bound, Var):
            return f":{bound.name}"
        return spell_colons(sql.Literal(bound).as_string(conn))

    return Step(label, _PARAM.sub(value, query) + ";")


# -- Setting up: flights and customers ----------------------------------------------------------------------------


def add_flights(database_url: str, count: int) -> None:
    """``count`` flights BA1000… JFK-LHR, each with one ECONOMY Y bucket that never sells out, and their lookup."""
    departure = (datetime.now(UTC) + timedelta(days=12)).replace(microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO airlines (code, name, country) VALUES ('BA', 'British Airways', 'GB');
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
                ('JFK', 'John F Kennedy International Airport', 'New York', 'US', 'America/New_York', 40.64, -73.78),
                ('LHR', 'London Heathrow Airport', 'London', 'GB', 'Europe/London', 51.47, -0.45);
            """
        )
        conn.execute(
            """
            INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)
            SELECT 'BA', 'BA' || (1000 + n), 'JFK', 'LHR', %(at)s::timestamptz + n * interval '1 minute',
                   %(at)s::timestamptz + n * interval '1 minute' + interval '7 hours', 'A320'
            FROM generate_series(1, %(count)s) AS n
            """,
            {"at": departure, "count": count},
        )
        conn.execute(
            "INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,"
            " seats_available) SELECT id, 'ECONOMY', 'Y', %s, 'USD', 1000000, 1000000 FROM flights",
            (FARE_AMOUNT,),
        )
        conn.execute(
            "CREATE TABLE bench_flights AS SELECT row_number() OVER (ORDER BY f.id) AS n, f.id AS flight_id,"
            " p.id AS fare_id FROM flights f JOIN flight_prices p ON p.flight_id = f.id"
        )
        conn.execute("ANALYZE")


async def register(base: str, prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` customers registered through the API (as any version of it does it); their token pairs."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(number: int) -> dict[str, Any]:
            body = {"email": f"{prefix}{number}@example.com", "password": PASSWORD, "full_name": f"Bench {number}"}
            async with semaphore:
                response = await client.post("/api/v1/auth/register", json=body)
            response.raise_for_status()
            return dict(response.json())

        return list(await asyncio.gather(*(one(number) for number in range(count))))


class Process:
    """``flightdesk <command>`` of the checkout under test, its output in a log file."""

    def __init__(self, root: Path, env: dict[str, str], args: list[str], log: Path) -> None:
        self.log = log
        python = root / ".venv" / "bin" / "python"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(python), "-m", "core_api.cli", *args], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Api(Process):
    def __init__(self, root: Path, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__(root, env, ["api", "--port", str(self.port), "--workers", str(workers)], log)

    async def up(self) -> None:
        try:
            await wait_until_up(f"{self.base}/api/v1/health", timeout=90)
        except TimeoutError:
            raise RuntimeError(f"the API did not come up:\n{self.log.read_text(errors='replace')[-3000:]}") from None


# -- The pgbench transaction --------------------------------------------------------------------------------------

_DRAW = """SELECT f.flight_id, f.fare_id, booking.id AS booking_id, ARRAY[gen_random_uuid()]::text AS passenger_ids,
       gen_random_uuid() AS event_id, customer.id AS customer_id,
       (SELECT string_agg(substr('ABCDEFGHJKMNPQRSTUVWXYZ23456789', 1 + floor(random() * 31)::int, 1), '')
        FROM generate_series(1, 6) WHERE booking.id IS NOT NULL) AS pnr
FROM bench_flights AS f, (SELECT gen_random_uuid() AS id) AS booking,
     (SELECT id FROM users WHERE lower(email) = 'pgbench' || :client_id::text || '@example.com') AS customer
WHERE f.n = :n
\\gset"""


def booking_steps(conn: psycopg.Connection[Any], root: Path, flights: int, *, audit: bool) -> list[Step]:
    """The inventory transaction ``create_booking`` runs for one adult, in the checkout's own SQL: the booking and
    its passenger, then in one pipeline the fare bucket's seats, the outbox event, the audit row (as that checkout
    writes it: the chain head and a chained row before, one insert with its personal data after) and COMMIT.
    """
    bookings, audit_sql = queries_of(root, "bookings"), queries_of(root, "audit")
    booking, customer, flight, fare = Var("booking_id"), Var("customer_id"), Var("flight_id"), Var("fare_id")
    steps = [Step("draw a flight (bench)", f"\\set n random(1, {flights})"), Step("draw ids (bench)", _DRAW)]
    steps.append(Step("BEGIN", "BEGIN;"))
    steps.append(
        render(
            conn,
            bookings["insert_booking"],
            {
                "id": booking,
                "pnr": Var("pnr"),
                "flight_id": flight,
                "fare_id": fare,
                "cabin": "ECONOMY",
                "fare_class": "Y",
                "customer_id": customer,
                "agent_id": None,
                "created_by": customer,
                "seat_count": 1,
                "total_amount": FARE_AMOUNT,
                "currency": "USD",
                "contact_email": "pgbench0@example.com",
                "contact_phone": None,
                "hold_minutes": 15,
            },
            "insert_booking",
        )
    )
    steps.append(
        render(
            conn,
            bookings["insert_passengers"],
            {
                "booking_id": booking,
                "flight_id": flight,
                "ids": Var("passenger_ids"),
                "first_names": ["Ann"],
                "last_names": ["Example"],
                "dates_of_birth": [date(1985, 4, 2)],
                "types": ["ADULT"],
                "documents": [None],
                "seat_nos": [None],
            },
            "insert_passengers",
        )
    )
    snapshot = {
        "status": "PENDING_PAYMENT", "pnr": "ABC234", "flight_id": 1, "cabin": "ECONOMY", "fare_class": "Y",
        "seat_count": 1, "total": {"amount": FARE_AMOUNT, "currency": "USD"}, "customer_id": str(uuid.uuid4()),
        "agent_id": None, "contact_email": "pgbench0@example.com",
    }  # fmt: skip
    event = {"booking_id": str(uuid.uuid4()), "pnr": "ABC234", "status": "PENDING_PAYMENT", "flight_id": 1,
             "airline_code": "BA", "customer_id": snapshot["customer_id"], "agent_id": None, "seat_count": 1,
             "total": snapshot["total"]}  # fmt: skip
    outbox = {"id": Var("event_id"), "event_type": "booking.created", "booking_id": booking, "fare_id": fare,
              "payload": json.dumps(event)}  # fmt: skip
    steps.append(Step("\\startpipeline", "\\startpipeline"))
    if audit:
        metadata = {"seats": [], "passengers": 1, "on_behalf": False}
        row: dict[str, Any] = {
            "occurred_at": None, "event_type": "booking.created", "actor_id": customer, "actor_role": "CUSTOMER",
            "ip": "127.0.0.1", "user_agent": f"python-httpx/{httpx.__version__}", "request_id": uuid.uuid4().hex,
            "entity_type": "booking", "entity_id": booking, "before": None,
        }  # fmt: skip
        if "advance_chain_head" in audit_sql:
            row |= {"after": json.dumps(snapshot), "metadata": json.dumps(metadata)}
            steps.append(render(conn, audit_sql["advance_chain_head"], {}, "advance_chain_head"))
            steps.append(render(conn, audit_sql["record_event"], row, "record_event"))
        else:
            texts, personal = split_personal(
                {"before": None, "after": snapshot, "metadata": metadata},
                actor_id=uuid.uuid4(), ip=row["ip"], user_agent=row["user_agent"], entity=("booking", "x"),
            )  # fmt: skip
            assert personal is not None
            row |= texts | personal.params() | {"subjects": [uuid.uuid4()]}
            query = audit_sql["record_event_with_personal_data"]
            steps.append(render(conn, query, row, "record_event_with_personal_data"))
    # The checkout's own order: the chain head was taken after the fare bucket; the lock-free row goes first.
    lock_free = "advance_chain_head" not in audit_sql
    bucket = [
        render(conn, bookings["take_fare_seats"], {"fare_id": fare, "seats": 1}, "take_fare_seats"),
        render(conn, bookings["insert_booking_event"], outbox, "insert_booking_event"),
    ]
    if lock_free or not audit:
        steps += bucket
    else:
        steps[-2:-2] = bucket
    steps += [Step("COMMIT", "COMMIT;"), Step("\\endpipeline", "\\endpipeline")]
    return steps


# -- Seal lag -----------------------------------------------------------------------------------------------------

_SEAL_LAG = """
SELECT count(*) AS rows,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
       max(lag) AS worst,
       (SELECT count(*) FROM audit_logs WHERE occurred_at >= %(since)s AND occurred_at < %(until)s) AS written
FROM (
    SELECT extract(epoch FROM s.sealed_at - a.occurred_at) AS lag
    FROM audit_seals AS s, unnest(s.audit_ids) AS u (audit_id), audit_logs AS a
    WHERE s.sealed_at >= %(since)s AND a.id = u.audit_id AND a.occurred_at >= %(since)s AND a.occurred_at < %(until)s
) AS sealed
"""


@dataclass
class SealLag:
    rows: int
    written: int
    p50: float
    p99: float
    worst: float

    def __str__(self) -> str:
        return (
            f"{self.rows} of {self.written} rows sealed: lag p50 {self.p50 * 1000:.0f} ms, "
            f"p99 {self.p99 * 1000:.0f} ms, max {self.worst * 1000:.0f} ms"
        )


def seal_lag(database_url: str, since: datetime, until: datetime) -> SealLag | None:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('audit_seals') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(_SEAL_LAG, {"since": since, "until": until}).fetchone()
    assert row is not None
    return SealLag(int(row[0]), int(row[4]), float(row[1] or 0), float(row[2] or 0), float(row[3] or 0))


async def wait_for_sealing(database_url: str, until: datetime, timeout: float = 30.0) -> None:
    """Give the sealer time to catch up with the rows written until ``until`` (so none is left out of the lag)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            if not conn.execute("SELECT to_regclass('audit_seals') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
                return
            row = conn.execute(
                "SELECT count(*) FROM audit_logs WHERE occurred_at < %s AND xact_id IS NOT NULL"
                " AND (xact_id, id) > (SELECT coalesce(last_xact_id, '0'), last_id FROM audit_seals"
                " ORDER BY seal_no DESC LIMIT 1)",
                (until,),
            ).fetchone()
        if row is not None and row[0] == 0:
            return
        await asyncio.sleep(0.5)


# -- spread ---------------------------------------------------------------------------------------------------------


async def spread(args: argparse.Namespace) -> None:
    root: Path = args.api_root
    workdir = Path(tempfile.mkdtemp(prefix="fd_bench_audit_"))
    name, database_url = create_scratch_database(args.database_url, "fd_bench_audit")
    env = api_environment(database_url, args.redis_url, booking_max_unpaid_seats="10000",
                          state_dir=str(workdir / "state"))  # fmt: skip
    processes: list[Process] = []
    try:
        migrated = subprocess.run([str(root / ".venv/bin/python"), "-m", "core_api.cli", "migrate"], cwd=root,
                                  env=env, capture_output=True, check=False)  # fmt: skip
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr.decode(errors="replace")[-3000:])
        add_flights(database_url, args.flights)
        api = Api(root, {**env, "FLIGHTDESK_DATABASE_POOL_MAX": str(args.pool_max)}, args.workers, workdir / "api.log")
        processes.append(api)
        await api.up()
        pairs = await register(api.base, "http", args.concurrency)
        await register(api.base, "pgbench", args.concurrency)
        processes.append(Process(root, env, ["worker"], workdir / "worker.log"))
        headers = [{"Authorization": f"Bearer {pair['access_token']}"} for pair in pairs]
        with psycopg.connect(database_url) as conn:
            flights = [row[0] for row in conn.execute("SELECT flight_id FROM bench_flights ORDER BY n")]
            with_audit = booking_steps(conn, root, args.flights, audit=True)
            without_audit = booking_steps(conn, root, args.flights, audit=False)
        rng = random.Random(7)
        adult = {"first_name": "Ann", "last_name": "Example", "date_of_birth": "1985-04-02", "type": "ADULT"}

        def body() -> dict[str, Any]:
            return {"flight_id": rng.choice(flights), "cabin": "ECONOMY", "fare_class": "Y", "passengers": [adult]}

        def pgbench(steps: list[Step], label: str, seconds: float) -> PgbenchResult:
            return run_pgbench(database_url, steps, clients=args.concurrency, seconds=seconds, workdir=workdir,
                               name=label)  # fmt: skip

        print(
            f"{root.name}: POST /bookings over {args.flights} flights, {args.concurrency} connections / pgbench"
            f" clients, {args.seconds:g} s per run, API --workers {args.workers}; artifacts in {workdir}",
            flush=True,
        )
        await run_closed_loop(api.base, "POST", "/api/v1/bookings", json=body, headers=headers,
                              concurrency=args.concurrency, seconds=max(2.0, args.seconds / 4), expect=201)  # fmt: skip
        half = args.seconds / 2
        started = datetime.now(UTC)
        reference_a = await asyncio.to_thread(pgbench, with_audit, "with-audit-a", half)
        no_audit = await asyncio.to_thread(pgbench, without_audit, "without-audit", args.seconds)
        reference_b = await asyncio.to_thread(pgbench, with_audit, "with-audit-b", half)
        pgbench_done = datetime.now(UTC)
        await wait_for_sealing(database_url, pgbench_done)
        pgbench_lag = seal_lag(database_url, started, pgbench_done)
        http_started = datetime.now(UTC)
        http: LoadResult = await run_closed_loop(
            api.base, "POST", "/api/v1/bookings", json=body, headers=headers, concurrency=args.concurrency,
            seconds=args.seconds, expect=201,
        )  # fmt: skip
        http_done = datetime.now(UTC)
        await wait_for_sealing(database_url, http_done)
        http_lag = seal_lag(database_url, http_started, http_done)
        reference = reference_a + reference_b
        print(f"\n== {root.name}: bookings spread over {args.flights} flights ({os.cpu_count()} CPUs, load "
              f"{os.getloadavg()[0]:.1f})")  # fmt: skip
        print(f"  pgbench, with the audit row      {reference}")
        print(f"  pgbench, without the audit row   {no_audit}")
        print(f"  POST /api/v1/bookings over HTTP  {http}")
        if http.failures:
            print(f"    errors: {http.failures}")
        print(f"  the audit row costs {1 - reference.tps / no_audit.tps:.1%} of pgbench's rate "
              f"({reference.tps:.0f} vs {no_audit.tps:.0f} tps)")  # fmt: skip
        print(f"  HTTP / pgbench with the audit row: {http.rps / reference.tps:.2f}x")
        if pgbench_lag is not None:
            print(f"  seal lag during pgbench: {pgbench_lag}")
        if http_lag is not None:
            print(f"  seal lag during HTTP:    {http_lag}")
        with_ms = ", ".join(f"{label} {ms:.3f}" for label, ms in reference.statements if ms >= 0.005)
        print(f"  pgbench with audit, ms per command: {with_ms}")
    finally:
        for process in reversed(processes):
            process.stop()
        drop_database(args.database_url, name)


# -- logs -----------------------------------------------------------------------------------------------------------

_EVENT_MIX = [
    ("booking.created", 30), ("booking.confirmed", 20), ("booking.cancelled", 5), ("booking.expired", 5),
    ("auth.login", 15), ("auth.refresh", 10), ("auth.login_failed", 3), ("payment.succeeded", 5),
    ("user.updated", 3), ("security.access_denied", 2), ("flight.updated", 1), ("auth.register", 1),
]  # fmt: skip

_FILL = """
INSERT INTO audit_logs (id, xact_id, occurred_at, event_type, actor_id, actor_role, request_id, entity_type,
                        entity_id, after, metadata)
SELECT n, pg_current_xact_id(),
       %(start)s::timestamptz + (n * %(span)s::double precision / %(rows)s) * interval '1 second'
           + (random() * 5) * interval '1 second',
       (%(events)s::text[])[1 + (hashint4(n::int) & 2147483647) %% cardinality(%(events)s::text[])],
       md5('actor' || (n %% %(actors)s))::uuid, 'CUSTOMER', md5(n::text),
       'booking', md5('booking' || (n / 3))::uuid::text, '{"status": "CONFIRMED"}', '{}'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
"""


def time_queries(database_url: str, combos: dict[str, Callable[[], dict[str, str]]]) -> None:
    """The query alone, as the service runs it (unprepared), 200 draws per combination, timed from this process."""
    print("\n  list_logs alone in PostgreSQL (unprepared, as the service runs it; 200 draws each):")
    with psycopg.connect(database_url, autocommit=True) as conn:
        query = queries_of(REPO, "audit")["list_logs"]
        for label, params in combos.items():
            timings = []
            for _ in range(200):
                bound = _list_params(params())
                started = time.perf_counter()
                conn.execute(query, bound, prepare=False).fetchall()
                timings.append((time.perf_counter() - started) * 1000)
            p50, p95 = statistics.median(timings), statistics.quantiles(timings, n=100)[94]
            print(f"    {label:34} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")


def _list_params(chosen: dict[str, str]) -> dict[str, Any]:
    """The parameters ``service.list_logs`` binds for the query string ``chosen``."""
    entity_type, _, entity_id = chosen.get("entity", "").partition(":")
    cursor = chosen.get("cursor")
    at, row_id = (None, None)
    if cursor:
        from core_api.audit.service import decode_cursor

        decoded = decode_cursor(cursor)
        at, row_id = decoded.at, decoded.id
    return {
        "actor_id": chosen.get("actor"), "event_type": chosen.get("event_type"), "entity_type": entity_type or None,
        "entity_id": entity_id or None, "from": chosen.get("from"), "to": chosen.get("to"), "limit": 50,
        "cursor_at": at, "cursor_id": row_id,
    }  # fmt: skip


async def logs(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fd_bench_audit_logs_"))
    name, database_url = create_scratch_database(args.database_url, "fd_bench_audit_logs")
    env = api_environment(database_url, args.redis_url, state_dir=str(workdir / "state"))
    api: Api | None = None
    try:
        migrated = subprocess.run([sys.executable, "-m", "core_api.cli", "migrate"], env=env, capture_output=True,
                                  check=False)  # fmt: skip
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr.decode(errors="replace")[-3000:])
        events = [event for event, weight in _EVENT_MIX for _ in range(weight)]
        span = 90 * 86400
        start = datetime.now(UTC) - timedelta(days=90)
        loaded = time.perf_counter()
        with psycopg.connect(database_url, autocommit=True) as conn:
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_logs'"
                " AND indexname <> 'audit_logs_pkey'"
            ).fetchall()
            for index, _ in indexes:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
            chunk = 1_000_000
            for first in range(1, args.rows + 1, chunk):
                last = min(first + chunk - 1, args.rows)
                conn.execute(_FILL, {"start": start, "span": span, "rows": args.rows, "events": events,
                                     "actors": args.actors, "first": first, "last": last})  # fmt: skip
                print(f"  {last:,} rows", flush=True)
            conn.execute("SET maintenance_work_mem = '512MB'")
            for _, definition in indexes:
                conn.execute(definition)  # catalog text of the migration's own indexes
            conn.execute(f"SELECT setval('audit_logs_id_seq', {args.rows})")
            conn.execute("VACUUM ANALYZE audit_logs")
        print(f"{args.rows:,} audit rows loaded and indexed in {time.perf_counter() - loaded:.0f} s", flush=True)
        admin = subprocess.run(
            [sys.executable, "-m", "core_api.cli", "create-user", "--email", "bench-admin@example.com", "--password",
             PASSWORD, "--role", "ADMIN"], env=env, capture_output=True, check=False,
        )  # fmt: skip
        if admin.returncode != 0:
            raise RuntimeError(admin.stderr.decode(errors="replace")[-2000:])
        api = Api(REPO, env, 1, workdir / "api.log")
        await api.up()
        async with httpx.AsyncClient(base_url=api.base) as client:
            login = await client.post("/api/v1/auth/login", json={"email": "bench-admin@example.com",
                                                                  "password": PASSWORD})  # fmt: skip
            login.raise_for_status()
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            deep = await client.get("/api/v1/audit/logs", params={"limit": 50}, headers=headers)
        rng = random.Random(3)
        now = datetime.now(UTC)

        def actor() -> str:
            return str(
                uuid.UUID(
                    hex=hashlib.md5(f"actor{rng.randrange(args.actors)}".encode(), usedforsecurity=False).hexdigest()
                )
            )

        def entity() -> str:
            digest = hashlib.md5(f"booking{rng.randrange(args.rows // 3)}".encode(), usedforsecurity=False).hexdigest()
            booking = uuid.UUID(hex=digest)
            return f"booking:{booking}"

        def window() -> dict[str, str]:
            since = now - timedelta(days=rng.uniform(1, 89))
            return {"from": since.isoformat(), "to": (since + timedelta(hours=6)).isoformat()}

        combos: dict[str, Callable[[], dict[str, str]]] = {
            "no filter": lambda: {},
            "actor": lambda: {"actor": actor()},
            "event_type": lambda: {"event_type": rng.choice(events)},
            "entity": lambda: {"entity": entity()},
            "actor + event_type": lambda: {"actor": actor(), "event_type": rng.choice(events)},
            "time range": window,
            "event_type + time range": lambda: {"event_type": rng.choice(events), **window()},
            "actor + time range": lambda: {"actor": actor(), **window()},
            "rare event_type (flight.updated)": lambda: {"event_type": "flight.updated"},
            "deep page (cursor 50 rows in)": lambda: {"cursor": deep.json()["next_cursor"]},
        }
        bare = await run_closed_loop(api.base, "GET", "/api/v1/health", concurrency=args.concurrency,
                                     seconds=args.seconds)  # fmt: skip
        print(f"\n== GET /api/v1/audit/logs on {args.rows:,} rows ({args.actors:,} actors), {args.concurrency} "
              f"connections, {args.seconds:g} s each (load {os.getloadavg()[0]:.1f})")  # fmt: skip
        print(f"  {'bare GET /health (reference)':34} {bare}")
        worst = 0.0
        for label, params in combos.items():

            def path(params: Callable[[], dict[str, str]] = params) -> str:
                return "/api/v1/audit/logs?" + str(httpx.QueryParams({**params(), "limit": 50}))

            result = await run_closed_loop(api.base, "GET", path, headers=headers, concurrency=args.concurrency,
                                           seconds=args.seconds, expect=200)  # fmt: skip
            worst = max(worst, result.percentile(95))
            print(f"  {label:34} {result}")
        print(f"  worst p95 {worst:.1f} ms (target < 50 ms); bare endpoint p95 {bare.percentile(95):.1f} ms")
        time_queries(database_url, combos)
    finally:
        if api is not None:
            api.stop()
        drop_database(args.database_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", choices=["spread", "logs"], nargs="?", default="spread")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--flights", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument("--pool-max", type=int, default=20, help="database connections per API worker")
    parser.add_argument("--api-root", default=str(REPO), help="checkout to measure (its .venv, SQL and migrations)")
    parser.add_argument("--rows", type=int, default=5_000_000, help="logs: audit rows to load")
    parser.add_argument("--actors", type=int, default=100_000, help="logs: distinct actors among them")
    args = parser.parse_args()
    args.api_root = Path(args.api_root).resolve()
    if args.mode == "logs":
        # Latency of one request at a time, unless asked otherwise (64 is the spread default).
        args.concurrency = 1 if args.concurrency == 64 else args.concurrency
        asyncio.run(logs(args))
    else:
        asyncio.run(spread(args))


if __name__ == "__main__":
    main()
