"""The demo seed's booking history: bookings on past and future flights, exact inventory, valid PNRs and totals,
an intact audit chain that later writers continue, nothing added twice, and accounts nobody can log into.

One database is seeded for the module (10 days of history, 3 days ahead, after a user made the way
``flightdesk create-user`` makes one); tests that write get a clone of it as their ``database_url``.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from core_api.audit.schemas import EventType
from core_api.audit.sealer import seal_in
from core_api.audit.service import SYSTEM, Actor, record, verify_chain
from core_api.auth.passwords import verify_password
from core_api.seed import SeedSummary, seed_reference_and_flights
from core_api.seed._history_audit import AuditChain, from_datetime, jsonb_text
from core_api.seed._history_bookings import BookingHistory
from core_api.seed._history_model import BookableFlight, BookingPace, Fare, PnrSequence
from core_api.seed._history_people import FIRST_NAMES, LAST_NAMES, make_customers, make_travel_agents
from core_api.seed.history import HistoryVolume
from core_api.seed.schedule import planned_flights
from core_api.users.schemas import Role
from core_api.users.service import create_user
from tests.audit.conftest import chain_order
from tests.conftest import cloned_database, database_name

HISTORY_DAYS = 10
FUTURE_DAYS = 3
VOLUME = HistoryVolume(bookings_per_day=300, customers=600, travel_agents=4)
EARLIER_USER = "admin@example.com"
PNR = re.compile(r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$")


@dataclass(frozen=True)
class SeededHistory:
    url: str
    summary: SeedSummary
    progress: Recorder
    # The seed's "now" lies between these two.
    before: datetime
    after: datetime


class Recorder:
    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def start(self, task: str, total: int) -> None:
        self.totals[task] = total

    def advance(self, task: str, amount: int = 1) -> None:
        self.done[task] = self.done.get(task, 0) + amount


async def fetch(conninfo: str, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()


async def fetch_one(conninfo: str, query: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
    [row] = await fetch(conninfo, query, params)
    return row


async def table_counts(conninfo: str) -> tuple[int, ...]:
    return await fetch_one(
        conninfo,
        """SELECT (SELECT count(*) FROM flights), (SELECT count(*) FROM users), (SELECT count(*) FROM bookings),
                  (SELECT count(*) FROM passengers), (SELECT count(*) FROM audit_logs),
                  (SELECT sum(seats_available) FROM flight_prices)""",
    )


async def seed(url: str, progress: Recorder | None = None) -> SeedSummary:
    return await seed_reference_and_flights(
        url, days=FUTURE_DAYS, history_days=HISTORY_DAYS, history=VOLUME, progress=progress
    )


@pytest.fixture(scope="module")
async def history(postgres_url: str, template_database: str) -> AsyncIterator[SeededHistory]:
    async with cloned_database(postgres_url, template_database) as url:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await create_user(
                conn, SYSTEM, email=EARLIER_USER, password="an admin's password", full_name="Ada", role=Role.ADMIN
            )
        before = datetime.now(UTC)
        progress = Recorder()
        summary = await seed(url, progress)
        yield SeededHistory(url, summary, progress, before, datetime.now(UTC))


@pytest.fixture
def history_url(history: SeededHistory) -> str:
    return history.url


@pytest.fixture
async def database_url(postgres_url: str, history: SeededHistory) -> AsyncIterator[str]:
    """Overrides the empty database: a copy of the seeded history, for the tests that write."""
    async with cloned_database(postgres_url, database_name(history.url)) as url:
        yield url


async def test_the_summary_and_progress_count_what_was_written(history: SeededHistory) -> None:
    summary = history.summary
    [(users, bookings, passengers, audit_rows)] = await fetch(
        history.url,
        """SELECT (SELECT count(*) FROM users WHERE email LIKE '%%@demo.flightdesk.dev'),
                  (SELECT count(*) FROM bookings), (SELECT count(*) FROM passengers),
                  (SELECT count(*) FROM audit_logs WHERE user_agent = 'flightdesk-seed')""",
    )
    assert (summary.users, summary.bookings, summary.passengers, summary.audit_events) == (
        users,
        bookings,
        passengers,
        audit_rows,
    )
    assert users == VOLUME.customers + VOLUME.travel_agents
    # About bookings_per_day a day; the slots drawn all became bookings.
    assert 0.7 * VOLUME.bookings_per_day * HISTORY_DAYS < bookings < 1.3 * VOLUME.bookings_per_day * (HISTORY_DAYS + 1)
    assert history.progress.totals == history.progress.done
    assert {"users", "bookings"} <= set(history.progress.totals)


async def test_bookings_sit_on_past_and_future_flights_in_every_status(history: SeededHistory) -> None:
    rows = await fetch(
        history.url,
        """SELECT b.status, f.departure_at < %(now)s, count(*) FROM bookings b JOIN flights f ON f.id = b.flight_id
           GROUP BY 1, 2""",
        {"now": history.after},
    )
    counts: dict[tuple[str, bool], int] = {(status, past): count for status, past, count in rows}
    by_status = {status: sum(n for (s, _), n in counts.items() if s == status) for status, _ in counts}
    total = sum(by_status.values())
    assert by_status["CONFIRMED"] > 0.7 * total
    assert 0.03 * total < by_status["CANCELLED"] < 0.2 * total
    assert 0.03 * total < by_status["EXPIRED"] < 0.2 * total
    assert by_status["PENDING_PAYMENT"] >= 5
    assert counts[("CONFIRMED", True)] > 0
    assert counts[("CONFIRMED", False)] > 0
    # Holds still running are on future flights only.
    assert ("PENDING_PAYMENT", True) not in counts
    [(live_holds,)] = await fetch(
        history.url, "SELECT count(*) FROM bookings WHERE status = 'PENDING_PAYMENT' AND hold_expires_at > now()"
    )
    assert live_holds > 0


async def test_past_flights_have_landed_and_future_ones_are_scheduled(history: SeededHistory) -> None:
    rows = await fetch(
        history.url,
        """SELECT f.status, bool_and(f.arrival_at <= %(after)s), bool_and(f.departure_at > %(before)s), count(*),
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM seats s WHERE s.flight_id = f.id)),
                  count(*) FILTER (WHERE (f.departure_at AT TIME ZONE a.tz)::date < %(today)s
                                     AND f.departure_at <= %(before)s
                                     AND EXISTS (SELECT 1 FROM seats s WHERE s.flight_id = f.id))
           FROM flights f JOIN airports a ON a.code = f.origin GROUP BY 1""",
        {"before": history.before, "after": history.after, "today": history.before.date()},
    )
    by_status = {status: (landed, ahead, count, seat_maps, old_seat_maps) for status, landed, ahead, count,
                 seat_maps, old_seat_maps in rows}  # fmt: skip
    assert by_status["ARRIVED"][0]
    assert by_status["SCHEDULED"][1]
    assert by_status["ARRIVED"][2] > (HISTORY_DAYS - 1) * 150
    # Seat maps from the first seeded day (today, local time at the origin) on, and for every earlier flight still
    # to leave when the seed ran (whatever the hour in UTC): none for the flights of the days before that had left.
    assert sum(old_seat_maps for *_, old_seat_maps in by_status.values()) == 0
    assert by_status["SCHEDULED"][3] == by_status["SCHEDULED"][2]


async def test_booking_times_follow_the_lifecycle(history: SeededHistory) -> None:
    [(wrong,)] = await fetch(
        history.url,
        """SELECT count(*) FROM bookings b JOIN flights f ON f.id = b.flight_id
           WHERE f.departure_at - b.created_at NOT BETWEEN interval '1 day' AND interval '60 days'
              OR b.created_at < %(before)s - interval '11 days' OR b.updated_at > %(after)s
              OR b.hold_expires_at <> b.created_at + interval '15 minutes'
              OR (b.status = 'CONFIRMED') <> (b.confirmed_at IS NOT NULL AND b.cancelled_at IS NULL)
              OR (b.status = 'EXPIRED') <> (b.expired_at IS NOT NULL)
              OR (b.status = 'CANCELLED') <> (b.cancelled_at IS NOT NULL)
              OR b.confirmed_at NOT BETWEEN b.created_at AND b.hold_expires_at
              OR b.expired_at < b.hold_expires_at
              OR b.cancelled_at < coalesce(b.confirmed_at, b.created_at)
              OR b.cancelled_at > f.departure_at
              OR b.updated_at <> greatest(b.created_at, b.confirmed_at, b.cancelled_at, b.expired_at)""",
        {"before": history.before, "after": history.after},
    )
    assert wrong == 0
    # Bookings were made on every day of the history.
    [(days,)] = await fetch(history.url, "SELECT count(DISTINCT (created_at AT TIME ZONE 'UTC')::date) FROM bookings")
    assert HISTORY_DAYS <= days <= HISTORY_DAYS + 1


async def test_every_fare_bucket_keeps_exact_inventory(history_url: str) -> None:
    mismatches = await fetch(
        history_url,
        """SELECT p.id, p.seats_total, p.seats_available, coalesce(taken.seats, 0)
           FROM flight_prices p
           LEFT JOIN (SELECT fare_id, sum(seat_count) AS seats FROM bookings
                      WHERE status IN ('PENDING_PAYMENT', 'CONFIRMED') GROUP BY fare_id) AS taken
                  ON taken.fare_id = p.id
           WHERE p.seats_available <> p.seats_total - coalesce(taken.seats, 0) OR p.seats_available < 0""",
    )
    assert mismatches == []
    [(buckets_sold_from,)] = await fetch(
        history_url, "SELECT count(*) FROM flight_prices WHERE seats_available < seats_total"
    )
    assert buckets_sold_from > 100
    # Bookings point at a bucket of their own flight, with its cabin and class.
    [(astray,)] = await fetch(
        history_url,
        """SELECT count(*) FROM bookings b JOIN flight_prices p ON p.id = b.fare_id
           WHERE p.flight_id <> b.flight_id OR p.cabin <> b.cabin OR p.fare_class <> b.fare_class""",
    )
    assert astray == 0


async def test_pnrs_are_valid_and_unique(history_url: str) -> None:
    pnrs = [pnr for (pnr,) in await fetch(history_url, "SELECT pnr FROM bookings")]
    assert all(PNR.match(pnr) for pnr in pnrs)
    assert len(set(pnrs)) == len(pnrs)


def test_the_pnr_sequence_never_repeats_and_skips_taken_codes() -> None:
    first = PnrSequence(random.Random(7))
    codes = [next(first) for _ in range(50_000)]
    assert len(set(codes)) == len(codes)
    assert all(PNR.match(code) for code in codes)
    again = PnrSequence(random.Random(7), taken={codes[1]})
    assert [next(again) for _ in range(3)] == [codes[0], codes[2], codes[3]]


async def test_totals_are_the_fare_per_seat_plus_a_tenth_per_infant(history_url: str) -> None:
    [(wrong, bookings_with_infants)] = await fetch(
        history_url,
        """WITH party AS (
               SELECT booking_id, count(*) AS size, count(*) FILTER (WHERE type <> 'INFANT') AS seated,
                      count(*) FILTER (WHERE type = 'INFANT') AS infants,
                      count(*) FILTER (WHERE type = 'ADULT') AS adults
               FROM passengers GROUP BY booking_id)
           SELECT count(*) FILTER (
                      WHERE b.total_amount <> p.price_amount * party.seated
                                              + party.infants * round(p.price_amount * 0.1)
                         OR b.currency <> p.currency OR b.seat_count <> party.seated
                         OR party.size NOT BETWEEN 1 AND 4 OR party.infants > party.adults),
                  count(*) FILTER (WHERE party.infants > 0)
           FROM bookings b JOIN flight_prices p ON p.id = b.fare_id JOIN party ON party.booking_id = b.id""",
    )
    assert wrong == 0
    assert bookings_with_infants > 0
    # Every booking has passengers, on its flight, and none has a seat number (the seat maps stay free).
    [(without_passengers, astray, seated, seats_taken)] = await fetch(
        history_url,
        """SELECT (SELECT count(*) FROM bookings b WHERE NOT EXISTS (SELECT 1 FROM passengers p
                                                                    WHERE p.booking_id = b.id)),
                  (SELECT count(*) FROM passengers p JOIN bookings b ON b.id = p.booking_id
                   WHERE p.flight_id <> b.flight_id),
                  (SELECT count(*) FROM passengers WHERE seat_no IS NOT NULL),
                  (SELECT count(*) FROM seats WHERE status <> 'AVAILABLE')""",
    )
    assert (without_passengers, astray, seated, seats_taken) == (0, 0, 0, 0)


async def test_passengers_have_plausible_names_and_ages(history_url: str) -> None:
    rows = await fetch(
        history_url,
        """SELECT p.type, min((f.departure_at AT TIME ZONE 'UTC')::date - p.date_of_birth),
                  max((f.departure_at AT TIME ZONE 'UTC')::date - p.date_of_birth), count(*)
           FROM passengers p JOIN flights f ON f.id = p.flight_id GROUP BY 1""",
    )
    ages = {kind: (youngest, oldest, count) for kind, youngest, oldest, count in rows}
    assert ages["ADULT"][0] > 18 * 365
    assert 2 * 365 < ages["CHILD"][0] <= ages["CHILD"][1] < 12 * 365
    assert 0 < ages["INFANT"][0] <= ages["INFANT"][1] < 2 * 365
    assert ages["ADULT"][2] > ages["CHILD"][2] > ages["INFANT"][2] > 0
    [(first, last)] = await fetch(
        history_url, "SELECT array_agg(DISTINCT first_name), array_agg(DISTINCT last_name) FROM passengers"
    )
    assert set(first) <= set(FIRST_NAMES)
    assert set(last) <= set(LAST_NAMES)
    assert len(first) > 50


async def test_agents_book_for_customers(history_url: str) -> None:
    [(by_agents, wrong)] = await fetch(
        history_url,
        """SELECT count(*) FILTER (WHERE b.agent_id IS NOT NULL),
                  count(*) FILTER (WHERE customer.role <> 'CUSTOMER'
                                      OR b.contact_email <> customer.email
                                      OR (b.agent_id IS NULL AND b.created_by <> b.customer_id)
                                      OR (b.agent_id IS NOT NULL AND (b.created_by <> b.agent_id
                                                                      OR agent.role <> 'TRAVEL_AGENT'))
                                      OR b.created_at < customer.created_at)
           FROM bookings b JOIN users customer ON customer.id = b.customer_id
           LEFT JOIN users agent ON agent.id = b.agent_id""",
    )
    [(bookings,)] = await fetch(history_url, "SELECT count(*) FROM bookings")
    assert wrong == 0
    assert 0.05 * bookings < by_agents < 0.3 * bookings


async def test_the_audit_chain_is_valid_and_follows_the_bookings(history_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(history_url, row_factory=dict_row) as conn:
        status = await verify_chain(conn)
        order = await chain_order(conn)
    [(rows, last_id, sequence_at, backwards)] = await fetch(
        history_url,
        """SELECT count(*), max(id), (SELECT last_value FROM audit_logs_id_seq),
                  (SELECT count(*) FROM (SELECT occurred_at < lag(occurred_at) OVER (ORDER BY id) AS back
                                         FROM audit_logs WHERE user_agent = 'flightdesk-seed') AS seeded
                   WHERE back)
           FROM audit_logs""",
    )
    # The seed sealed what was there and its own rows: nothing waits for the sealer.
    assert status.valid
    assert status.checked == rows
    assert status.unsealed == 0
    assert order == list(range(1, rows + 1))
    # The id sequence moved past the seeded block, so the next writer's row comes after it.
    assert sequence_at == last_id == rows
    # Chain order is time order.
    assert backwards == 0
    [(events_off,)] = await fetch(
        history_url,
        """WITH expected AS (
               SELECT b.id::text AS entity_id, e.event_type, e.at FROM bookings b
               CROSS JOIN LATERAL (VALUES ('booking.created', b.created_at), ('booking.confirmed', b.confirmed_at),
                                          ('booking.cancelled', b.cancelled_at), ('booking.expired', b.expired_at))
                   AS e (event_type, at)
               WHERE e.at IS NOT NULL)
           SELECT count(*) FROM expected e FULL JOIN (SELECT entity_id, event_type, occurred_at FROM audit_logs
                                                      WHERE entity_type = 'booking') AS a USING (entity_id, event_type)
           WHERE a.occurred_at IS DISTINCT FROM e.at""",
    )
    assert events_off == 0
    [(registrations, customers)] = await fetch(
        history_url,
        """SELECT (SELECT count(*) FROM audit_logs a JOIN users u ON u.id::text = a.entity_id
                   WHERE a.event_type = 'auth.register' AND a.occurred_at = u.created_at AND a.actor_id = u.id),
                  (SELECT count(*) FROM users WHERE role = 'CUSTOMER')""",
    )
    assert registrations == customers


async def test_the_seed_continues_a_chain_that_was_already_there(history_url: str) -> None:
    rows = await fetch(history_url, "SELECT id, event_type, user_agent FROM audit_logs WHERE id <= 2 ORDER BY id")
    [(first_ids, first_hash), (second_ids, link)] = await fetch(
        history_url,
        """SELECT audit_ids[1:2], substring(hashes FROM 1 FOR 32) AS first_hash FROM audit_seals WHERE seal_no = 1
           UNION ALL
           SELECT audit_ids[1:1], prev_hash FROM audit_seals WHERE seal_no = 2""",
    )
    (_, made_by_cli, cli_agent), (second_id, _, seed_agent) = rows
    assert made_by_cli == "user.created"
    assert cli_agent is None  # made through create_user: its user agent, if any, is kept apart
    # The row written before the seed was sealed first, alone; the seed's own rows link to it.
    assert first_ids == [1]
    assert (second_ids, second_id, seed_agent, link) == ([2], 2, "flightdesk-seed", first_hash)


async def test_a_record_after_the_seed_continues_the_chain(database_url: str) -> None:
    [(last_seeded,)] = await fetch(database_url, "SELECT max(id) FROM audit_logs")
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        async with conn.transaction():
            await record(conn, EventType.SYSTEM_AUDIT_CLEANUP, Actor(role="SYSTEM"), ("booking", "x"))
        async with conn.transaction():
            assert await seal_in(conn, wait=True) == 1
        status = await verify_chain(conn)
        order = await chain_order(conn)
    assert order[-1] == last_seeded + 1
    assert status.valid
    assert status.checked == last_seeded + 1


async def test_seeding_again_adds_nothing(database_url: str) -> None:
    before = await table_counts(database_url)
    again = await seed(database_url)
    assert (again.flights, again.fares, again.seats, again.users, again.bookings, again.passengers) == (0,) * 6
    assert again.audit_events == 0
    assert await table_counts(database_url) == before


async def test_seeded_accounts_share_one_unguessable_argon2_hash(history_url: str) -> None:
    [(hashes, plain_columns)] = await fetch(
        history_url,
        """SELECT array_agg(DISTINCT password_hash) FILTER (WHERE email LIKE '%%@demo.flightdesk.dev'),
                  (SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'
                   AND column_name ILIKE '%%password%%' AND column_name <> 'password_hash')
           FROM users""",
    )
    [password_hash] = hashes
    assert password_hash.startswith("$argon2id$")
    assert plain_columns == 0
    for guess in ("", "password", "demo", "flightdesk", "customer1", "customer1@demo.flightdesk.dev", "changeme"):
        matches, _ = await verify_password(password_hash, guess)
        assert not matches, guess


async def test_seeded_accounts_cannot_log_in(client: httpx.AsyncClient) -> None:
    for email, password in (
        ("customer1@demo.flightdesk.dev", "password"),
        ("customer1@demo.flightdesk.dev", "customer1"),
        ("agent1@demo.flightdesk.dev", "flightdesk"),
    ):
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 401, response.text


def test_a_row_with_awkward_values_hashes_as_the_server_does() -> None:
    value = {"note": 'tab\there "quoted" back\\slash\nnew é ✈', "b": [1, None, True], "aa": {"z": False}}
    assert jsonb_text(value) == (
        '{"b": [1, null, true], "aa": {"z": false}, "note": "tab\\there \\"quoted\\" back\\\\slash\\nnew é ✈"}'
    )
    with pytest.raises(TypeError):
        jsonb_text({"price": 1.5})


async def test_awkward_rows_chain_like_record_does(database_url: str) -> None:
    """Rows with escapes in every free-form field, appended and sealed as the seed does, verify on the server."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await conn.execute("LOCK TABLE audit_logs IN SHARE ROW EXCLUSIVE MODE")
        [(seal_no, position, last_hash, xact_id, next_id)] = await (
            await conn.execute(
                """SELECT seal_no, first_position + cardinality(audit_ids),
                          substring(hashes FROM octet_length(hashes) - 31), pg_current_xact_id()::text,
                          nextval('audit_logs_id_seq')
                   FROM audit_seals ORDER BY seal_no DESC LIMIT 1"""
            )
        ).fetchall()
        chain = AuditChain(
            next_id=next_id, next_position=position, next_seal_no=seal_no + 1, last_hash=last_hash, xact_id=xact_id
        )
        moment = from_datetime(datetime.now(UTC))
        awkward = jsonb_text({"text": 'a\tb\\c"d\ne\x01 ✈', "n": -12})
        lines = [
            chain.append(moment, "system.audit_cleanup", None, "SYSTEM", ("note", "back\\slash"), after=awkward),
            chain.append(
                moment + 1, "system.audit_cleanup", None, None, ("note", "tab\tid"), before=awkward, metadata=awkward
            ),
        ]
        seal = chain.take_seal()
        assert seal is not None
        async with conn.cursor() as cursor:
            async with cursor.copy(f"COPY audit_logs ({AuditChain.COPY_COLUMNS}) FROM STDIN") as copy:
                await copy.write("".join(lines))
            async with cursor.copy(f"COPY audit_seals ({AuditChain.SEAL_COLUMNS}) FROM STDIN") as copy:
                await copy.write(seal)
        await conn.execute("SELECT setval('audit_logs_id_seq', %s)", (chain.last_id,))
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        status = await verify_chain(conn)
        stored = await (
            await conn.execute("SELECT entity_id, after FROM audit_logs ORDER BY id DESC LIMIT 2")
        ).fetchall()
    assert status.valid
    assert status.unsealed == 0
    assert (stored[1]["entity_id"], stored[1]["after"]) == ("back\\slash", {"text": 'a\tb\\c"d\ne\x01 ✈', "n": -12})
    assert stored[0]["entity_id"] == "tab\tid"


GENERATOR_NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
GENERATOR_START = GENERATOR_NOW - timedelta(days=3)


@functools.cache
def bookable_flights() -> tuple[list[BookableFlight], list[int]]:
    """Two weeks of the timetable from three days before ``GENERATOR_NOW``, as the history reads it."""
    flights, available = [], []
    for number, planned in enumerate(planned_flights(GENERATOR_START.date(), 14), start=1):
        fares = []
        for bucket in planned.fares:
            fares.append(
                Fare(len(available), len(available) + 1, bucket.cabin.value, bucket.fare_class,
                     bucket.price_amount, bucket.currency, bucket.seats_total, bucket.refundable)
            )  # fmt: skip
            available.append(bucket.seats_total)
        flights.append(BookableFlight(number, from_datetime(planned.departure_at), tuple(fares)))
    return flights, available


def _generate(seed_value: int) -> Iterator[str]:
    now, start = GENERATOR_NOW, GENERATOR_START
    flights, available = bookable_flights()
    rng = random.Random(seed_value)
    history = BookingHistory(
        rng,
        flights=flights,
        available=available,
        customers=make_customers(rng, 50, from_datetime(start), from_datetime(now)),
        agents=make_travel_agents(rng, 2, from_datetime(start)),
        chain=AuditChain(next_id=1, next_position=1, next_seal_no=1, last_hash=None, xact_id="1"),
        pnrs=PnrSequence(rng),
        pace=BookingPace(from_datetime(start), from_datetime(now), per_day=100, hold=15 * 60_000_000),
        payment_hook=lambda booking: (),
    )
    for chunk in history.chunks(120):
        yield from chunk.bookings
        yield from chunk.passengers
        yield from chunk.audit


def test_the_history_is_deterministic_for_a_seed_value() -> None:
    once = list(_generate(1))
    assert once == list(_generate(1))
    assert once != list(_generate(2))
    assert len(once) > 300
