"""Booking history for the demo seed: customers, travel agents, their bookings and passengers, and the audit trail.

Written inside the seed's transaction, after the flights: the bookings sit on the flights of the days before and
after today. ``_history_people`` makes the users, ``_history_bookings`` the bookings in the order they were made,
``_history_audit`` the chained audit rows, ``_history_model`` holds the shapes they share; this module reads what
can be booked, streams the generated rows into PostgreSQL with ``COPY`` and settles the inventory and the chain
head.

- Idempotent: once any account of the demo domain exists, the history is there and nothing is added.
- Accounts: customers (``customer123@demo.flightdesk.dev``) and travel agents (``agent7@…``). They all share one
  argon2id hash of a random password that is thrown away at once, so no seeded account can be logged into.
- Inventory: each bucket's ``seats_available`` drops by the seats its PENDING_PAYMENT and CONFIRMED bookings took
  (passengers bar infants). No seat numbers are assigned: the seeded passengers chose none, as a booking may, so
  the seat maps stay AVAILABLE and ``passengers.seat_no`` NULL.
- Audit: rows go on at the end of the chain, behind any rows already there, in time order, sealed by the seed
  itself. It locks ``audit_logs`` against writers until it commits (as the chain head was locked before the
  sealer existed), seals what is pending, then appends its rows, their seals and the personal data of its
  accounts with ``COPY``; ids come from the table's sequence (a block the seed moves past). Its rows sort after
  every earlier one, being of its own transaction, so it may seal them only when no older transaction of the
  database is still open: otherwise it leaves them to the worker's sealer. The hashes are computed client-side
  (``_history_audit``) and a sample of them recomputed by the server.
- Payments (``_history_payments``): every confirmed booking was paid, one in ten after a declined first attempt,
  and a cancelled one on a refundable fare refunded; the audit events join the chain as the bookings are made, the
  rows are derived from the bookings once they are copied.
- Speed: one chunk of rows is generated in a worker thread while the previous one is being copied, so the
  Python process and the server work at the same time. Into empty tables, secondary indexes and foreign keys are
  built once at the end instead of row by row (as for the seats): measured, that halves the server's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from core_api.auth.passwords import hash_password
from core_api.seed._history_audit import AuditChain, from_datetime
from core_api.seed._history_bookings import BookingHistory
from core_api.seed._history_model import (
    AuditEvent,
    BookableFlight,
    BookingPace,
    Fare,
    HistoryChunk,
    PaidBooking,
    PnrSequence,
)
from core_api.seed._history_payments import PAYMENT_ROWS, payment_events
from core_api.seed._history_people import DEMO_EMAIL_DOMAIN, SeededUser, make_customers, make_travel_agents
from core_api.storage.db import load_queries

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.seed.loader import SeedProgress

__all__ = [
    "LARGE_HISTORY",
    "SMALL_HISTORY",
    "HistorySummary",
    "HistoryVolume",
    "payment_history",
    "seed_history",
]


@dataclass(frozen=True)
class HistoryVolume:
    """How much history a day of it holds."""

    bookings_per_day: int
    """Bookings made on an average day (weekdays more, weekends less; the last months more than the first)."""
    customers: int
    """Customer accounts, about half of them registered before the history starts."""
    travel_agents: int
    """Travel agent accounts; agents make about 15 % of the bookings."""
    hold_minutes: int = 15
    """How long an unpaid booking holds its seats (the ``FLIGHTDESK_BOOKING_HOLD_MINUTES`` default)."""


# `flightdesk seed` / `up`: some 40,000 bookings over 90 days.
SMALL_HISTORY = HistoryVolume(bookings_per_day=450, customers=4_000, travel_agents=12)
# `flightdesk seed --scale large`: over a million bookings over 90 days, for the benchmarks.
LARGE_HISTORY = HistoryVolume(bookings_per_day=11_700, customers=150_000, travel_agents=150)


@dataclass(frozen=True)
class HistorySummary:
    """Rows the history added (all zero when it was there already or not asked for)."""

    users: int = 0
    bookings: int = 0
    passengers: int = 0
    audit_events: int = 0


def payment_history(booking: PaidBooking) -> tuple[AuditEvent, ...]:
    """The payment and refund history of one seeded booking that was paid, as audit events (see
    :mod:`core_api.seed._history_payments`, which also writes the rows).
    """
    return payment_events(booking)


QUERIES = load_queries("audit")
_DAY = timedelta(days=1)
# The longest lead time of a booking, plus a day of slack for the flights loaded.
_BOOKABLE_AHEAD = timedelta(days=61)
# Booking slots per chunk: large enough that round trips do not count, small enough to keep memory flat.
_CHUNK_SLOTS = 10_000
_USER_CHUNK = 20_000
# Fare rows fetched at a time: fetchall would hold them all as tuples at once, iterating one by one is slow.
_FARE_BATCH = 20_000
# Audit rows the server re-hashes before the seed commits, beside the first and last seeded rows.
_CHAIN_SAMPLE = 500

_HISTORY_PRESENT = "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) LIKE %(pattern)s)"
_BOOKABLE_FARES = """
SELECT f.id, (extract(epoch FROM f.departure_at) * 1000000)::bigint, p.id, p.cabin, p.fare_class, p.price_amount,
       p.currency, p.seats_total, p.seats_available, p.refundable
FROM flights AS f JOIN flight_prices AS p ON p.flight_id = f.id
WHERE f.departure_at >= %(since)s::timestamptz AND f.departure_at <= %(until)s::timestamptz
  AND f.status <> 'CANCELLED'
ORDER BY f.departure_at, f.id, p.id
"""
_EXISTING_PNRS = "SELECT pnr FROM bookings"
_COPY_USERS = "COPY users (id, email, password_hash, full_name, role, created_at, updated_at) FROM STDIN"
_COPY_BOOKINGS = """
COPY bookings (id, pnr, flight_id, fare_id, cabin, fare_class, customer_id, agent_id, created_by, status,
               seat_count, total_amount, currency, contact_email, hold_expires_at, confirmed_at, cancelled_at,
               expired_at, created_at, updated_at)
FROM STDIN
"""
_COPY_PASSENGERS = """
COPY passengers (id, booking_id, flight_id, first_name, last_name, date_of_birth, type, document_enc, seat_no,
                 created_at)
FROM STDIN
"""
_COPY_AUDIT = f"COPY audit_logs ({AuditChain.COPY_COLUMNS}) FROM STDIN"
_COPY_SEALS = f"COPY audit_seals ({AuditChain.SEAL_COLUMNS}) FROM STDIN"
_COPY_PERSONAL = f"COPY audit_personal_data ({AuditChain.PERSONAL_COLUMNS}) FROM STDIN"
# Writers wait (as they waited on the chain head before), and take no ids meanwhile: the seed uses a block of them.
_LOCK_AUDIT = "LOCK TABLE audit_logs IN SHARE ROW EXCLUSIVE MODE"
_OWN_TRANSACTION = "SELECT pg_current_xact_id()::text AS xact_id"
_SEAL_OLDER = "SELECT seal_no FROM audit_seal(%(xact_id)s::xid8, %(max_rows)s::integer)"
_CHAIN_END = """
SELECT seal_no, first_position + cardinality(audit_ids) AS next_position,
       substring(hashes FROM octet_length(hashes) - 31) AS hash
FROM audit_seals ORDER BY seal_no DESC LIMIT 1
"""
_NEXT_ID = "SELECT nextval('audit_logs_id_seq')"
_MOVE_SEQUENCE = "SELECT setval('audit_logs_id_seq', %(last_id)s::bigint)"
_SEALS_OVER = """
SELECT seal_no FROM audit_seals
WHERE first_position <= %(last)s::bigint AND first_position + cardinality(audit_ids) > %(first)s::bigint
"""
_ROWS_AT = """
SELECT count(*) FILTER (WHERE broken) AS broken
FROM (SELECT s.first_position + u.n - 1 AS position, u.audit_id,
             substring(s.hashes FROM (u.n::integer - 1) * 32 + 1 FOR 32) AS hash,
             CASE WHEN u.n = 1 THEN s.prev_hash ELSE substring(s.hashes FROM (u.n::integer - 2) * 32 + 1 FOR 32) END
                 AS prev_hash
      FROM audit_seals AS s, unnest(s.audit_ids) WITH ORDINALITY AS u (audit_id, n)
      WHERE s.seal_no = ANY(%(seals)s::bigint[])) AS sealed
CROSS JOIN LATERAL (
    SELECT sealed.hash IS DISTINCT FROM audit_row_hash(sealed.prev_hash, a.id, a.occurred_at, a.event_type,
               a.actor_id, a.actor_role, a.ip, a.user_agent, a.request_id, a.entity_type, a.entity_id, a.before,
               a.after, a.metadata) AS broken
    FROM audit_logs AS a WHERE a.id = sealed.audit_id
) AS checked
WHERE sealed.position = ANY(%(positions)s::bigint[])
"""
_TAKE_SEATS = """
UPDATE flight_prices AS p SET seats_available = p.seats_available - t.taken, updated_at = now()
FROM unnest(%(fare_ids)s::bigint[], %(taken)s::int[]) AS t (fare_id, taken)
WHERE p.id = t.fare_id
"""
_ANALYZE = "ANALYZE users, bookings, passengers, audit_logs, flight_prices, payments, refunds"


async def seed_history(
    conn: AsyncConnection[Any],
    *,
    days: int,
    volume: HistoryVolume,
    now: datetime,
    random_seed: int,
    progress: SeedProgress,
) -> HistorySummary:
    """Bookings made over the ``days`` days before ``now`` (from midnight UTC), in ``conn``'s transaction.

    Deterministic for a given ``random_seed``, ``now`` and database content (the password hash aside).
    """
    if days <= 0 or await _history_present(conn):
        return HistorySummary()
    if volume.hold_minutes < 2:
        raise ValueError("the seeded holds last at least two minutes")
    rng = random.Random(random_seed)  # noqa: S311 - demo data, not security
    start = datetime.combine(now.date() - timedelta(days=days), time(), tzinfo=UTC)
    flights, available = await _bookable_flights(conn, start + _DAY, now + _BOOKABLE_AHEAD)
    agents = make_travel_agents(rng, volume.travel_agents, from_datetime(start))
    customers = make_customers(rng, volume.customers, from_datetime(start), from_datetime(now))
    users = await _copy_users(conn, [*agents, *customers], progress)
    pnrs = PnrSequence(rng, await _existing_pnrs(conn))
    chain, sealing = await _open_chain(conn)
    first_position = chain.first_position
    history = BookingHistory(
        rng,
        flights=flights,
        available=available,
        customers=customers,
        agents=agents,
        chain=chain,
        pnrs=pnrs,
        pace=BookingPace(
            start=from_datetime(start),
            now=from_datetime(now),
            per_day=volume.bookings_per_day,
            hold=volume.hold_minutes * 60_000_000,
        ),
        payment_hook=payment_history,
    )
    async with _bulk_load(conn, ("bookings", "passengers", "audit_logs"), progress):
        await _stream(conn, history, progress, sealing=sealing)
    await _take_seats(conn, flights, history.taken)
    for statement in PAYMENT_ROWS:
        await conn.execute(statement)
    if chain.appended:
        await conn.execute(_MOVE_SEQUENCE, {"last_id": chain.last_id})
    if sealing:
        await _check_chain_sample(conn, rng, first_position, first_position + chain.appended - 1)
    await conn.execute(_ANALYZE)
    return HistorySummary(
        users=users, bookings=history.bookings, passengers=history.passengers, audit_events=history.audit_events
    )


async def _history_present(conn: AsyncConnection[Any]) -> bool:
    cursor = await conn.execute(_HISTORY_PRESENT, {"pattern": f"%@{DEMO_EMAIL_DOMAIN}"})
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _bookable_flights(
    conn: AsyncConnection[Any], since: datetime, until: datetime
) -> tuple[list[BookableFlight], list[int]]:
    """The flights a booking of the history may be on, and the free seats of their buckets (by ``Fare.position``)."""
    cursor = await conn.execute(_BOOKABLE_FARES, {"since": since, "until": until})
    flights: list[BookableFlight] = []
    available: list[int] = []
    fares: list[Fare] = []
    current: tuple[int, int] | None = None
    while rows := await cursor.fetchmany(_FARE_BATCH):
        for row in rows:
            flight_id, departure, fare_id, cabin, fare_class, price, currency, seats_total, free, refundable = row
            if current is not None and current[0] != flight_id:
                flights.append(BookableFlight(current[0], current[1], tuple(fares)))
                fares = []
            current = (flight_id, departure)
            # A few distinct codes over some 200,000 buckets: one string object each.
            cabin, fare_class, currency = sys.intern(cabin), sys.intern(fare_class), sys.intern(currency)
            fares.append(Fare(len(available), fare_id, cabin, fare_class, price, currency, seats_total, refundable))
            available.append(free)
    if current is not None:
        flights.append(BookableFlight(current[0], current[1], tuple(fares)))
    return flights, available


async def _copy_users(conn: AsyncConnection[Any], users: Sequence[SeededUser], progress: SeedProgress) -> int:
    # One hash for every seeded account, of a password nobody keeps: the accounts exist, none can be logged into.
    password_hash = await hash_password(secrets.token_urlsafe(32))
    progress.start("users", len(users))
    async with conn.cursor() as cursor, cursor.copy(_COPY_USERS) as copy:
        for begin in range(0, len(users), _USER_CHUNK):
            chunk = users[begin : begin + _USER_CHUNK]
            await copy.write("".join(user.copy_line(password_hash) for user in chunk))
            progress.advance("users", len(chunk))
    return len(users)


async def _existing_pnrs(conn: AsyncConnection[Any]) -> list[str]:
    cursor = await conn.execute(_EXISTING_PNRS)
    return [pnr for (pnr,) in await cursor.fetchall()]


async def _open_chain(conn: AsyncConnection[Any]) -> tuple[AuditChain, bool]:
    """Lock the audit table, seal what is pending when the seed may seal, and start its chain at the end."""
    await conn.execute(_LOCK_AUDIT)
    xact_id = str((await (await conn.execute(_OWN_TRANSACTION)).fetchone())[0])  # type: ignore[index]
    horizon = (await (await conn.execute(QUERIES["seal_horizon"])).fetchone())[0]  # type: ignore[index]
    # Every transaction of the database older than the seed's has ended (none can start: ids only grow), so every
    # row that sorts before the seed's is there and can be sealed, and the seed's own rows after them.
    # The snapshot leaves the seed's own transaction out, so with none older open the horizon is its xmax: the
    # seed's own id on a quiet server, a later one when transactions begun since have ended.
    sealing = int(str(horizon)) >= int(xact_id)
    if sealing:
        await conn.execute(QUERIES["seal_lock_wait"])
        while True:
            sealed = await (await conn.execute(_SEAL_OLDER, {"xact_id": xact_id, "max_rows": 50_000})).fetchone()
            if sealed is None:
                break
    end = await (await conn.execute(_CHAIN_END)).fetchone()
    next_id = int((await (await conn.execute(_NEXT_ID)).fetchone())[0])  # type: ignore[index]
    if end is None:
        checkpoint = await (await conn.execute(QUERIES["latest_checkpoint"])).fetchone()
        position, last_hash = (checkpoint[0] + 1, checkpoint[1]) if checkpoint else (1, None)
        return AuditChain(next_id=next_id, next_position=position, next_seal_no=1, last_hash=last_hash,
                          xact_id=xact_id), sealing  # fmt: skip
    seal_no, position, last_hash = end
    return AuditChain(next_id=next_id, next_position=position, next_seal_no=seal_no + 1, last_hash=last_hash,
                      xact_id=xact_id), sealing  # fmt: skip


async def _stream(
    conn: AsyncConnection[Any], history: BookingHistory, progress: SeedProgress, *, sealing: bool
) -> None:
    """Copy chunk after chunk, generating the next one in a thread while the server takes the current one."""
    chunks = history.chunks(_CHUNK_SLOTS)
    progress.start("bookings", history.planned)
    chunk: HistoryChunk | None = await asyncio.to_thread(next, chunks, None)
    while chunk is not None:
        upcoming = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        try:
            await _copy_chunk(conn, chunk, sealing=sealing)
        except BaseException:
            with contextlib.suppress(Exception):
                await upcoming
            raise
        progress.advance("bookings", chunk.slots)
        chunk = await upcoming


async def _copy_chunk(conn: AsyncConnection[Any], chunk: HistoryChunk, *, sealing: bool) -> None:
    seals = [chunk.seal] if sealing and chunk.seal else []
    async with conn.cursor() as cursor:
        for statement, lines in (
            (_COPY_BOOKINGS, chunk.bookings),
            (_COPY_PASSENGERS, chunk.passengers),
            (_COPY_AUDIT, chunk.audit),
            (_COPY_PERSONAL, chunk.personal),
            (_COPY_SEALS, seals),
        ):
            if lines:
                async with cursor.copy(statement) as copy:
                    await copy.write("".join(lines))


async def _take_seats(conn: AsyncConnection[Any], flights: Sequence[BookableFlight], taken: Sequence[int]) -> None:
    fare_ids, seats = [], []
    for flight in flights:
        for fare in flight.fares:
            if taken[fare.position]:
                fare_ids.append(fare.id)
                seats.append(taken[fare.position])
    if fare_ids:
        await conn.execute(_TAKE_SEATS, {"fare_ids": fare_ids, "taken": seats})


async def _check_chain_sample(conn: AsyncConnection[Any], rng: random.Random, first: int, last: int) -> None:
    """Have the server re-hash the first, the last and a sample of the seeded positions: a mismatch aborts the seed."""
    if last < first:
        return
    positions = sorted({first, last, *(rng.randint(first, last) for _ in range(_CHAIN_SAMPLE))})
    cursor = await conn.execute(_SEALS_OVER, {"first": first, "last": last})
    seals = [row[0] for row in await cursor.fetchall()]
    row = await (await conn.execute(_ROWS_AT, {"seals": seals, "positions": positions})).fetchone()
    if row is None or row[0]:
        raise RuntimeError("seeded audit rows do not hash as audit_row_hash does")


_DEFERRABLE_INDEXES = """
SELECT index_class.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i JOIN pg_class AS index_class ON index_class.oid = i.indexrelid
WHERE i.indrelid = %(table)s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
ORDER BY 1
"""
_FOREIGN_KEYS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %(table)s::regclass AND contype = 'f'
ORDER BY 1
"""
_TABLE_EMPTY = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})")
# Index builds sort; this transaction may sort in memory what would otherwise spill to disk.
_INDEX_BUILD_MEMORY = "SET LOCAL maintenance_work_mem = '256MB'"


@contextlib.asynccontextmanager
async def _bulk_load(conn: AsyncConnection[Any], tables: Sequence[str], progress: SeedProgress) -> AsyncIterator[None]:
    """Into empty ``tables``, drop their secondary indexes and foreign keys for the block, then build them again.

    Their definitions are read from the catalog and restored verbatim, so a migration adding an index needs no
    change here. Primary keys and unique constraints stay (other tables' foreign keys depend on them). A failure
    inside the block rolls the whole transaction back, the dropped definitions included.
    """
    restore: list[sql.SQL | sql.Composed] = []
    for table in tables:
        cursor = await conn.execute(_TABLE_EMPTY.format(sql.Identifier(table)))
        row = await cursor.fetchone()
        if not (row and row[0]):
            continue
        for name, definition in await (await conn.execute(_FOREIGN_KEYS, {"table": table})).fetchall():
            await conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name))
            )
            # Catalog text (pg_get_constraintdef), not input: the constraint exactly as the migration made it.
            restore.append(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
                + sql.SQL(definition)
            )
        for name, definition in await (await conn.execute(_DEFERRABLE_INDEXES, {"table": table})).fetchall():
            await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            restore.insert(0, sql.SQL(definition))  # indexes before the foreign keys' checks
    yield
    if not restore:
        return
    progress.start("indexes", len(restore))
    await conn.execute(_INDEX_BUILD_MEMORY)
    for statement in restore:
        await conn.execute(statement)
        progress.advance("indexes")
