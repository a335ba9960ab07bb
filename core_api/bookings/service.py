"""Creating a booking (SPEC §5): one transaction checks the flight, the travellers and the holder's unpaid-seat cap,
writes the booking, claims the chosen seats and writes the passengers, then takes the fare bucket's seats with an
``UPDATE`` whose condition is the bucket's CHECK (the row lock serialises buyers of the bucket until commit), in
one pipeline with the audit row (first: it takes no lock), the outbox event, the stored idempotent answer and the
COMMIT. Without an Idempotency-Key or chosen seats that is two round trips: ``BEGIN`` and every read, then the
booking's rows, the audit row, the fare bucket and ``COMMIT`` (the answer is built from what the rows are written
with, and the transaction's ``now()``, read with the flight).

Locks are taken in one order by every creating writer — the holder's user row (the cap), seats by seat number, the
fare bucket — and nothing but the database is awaited while they are held. The contended one,
the fare bucket, is taken last and held for a single round trip.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from psycopg.pq import TransactionStatus

from core_api.audit.schemas import EventType
from core_api.audit.service import record_in_pipeline
from core_api.bookings import idempotency
from core_api.bookings._changes import cancel_booking, release_lapsed_holds, update_booking
from core_api.bookings._common import (
    BOOKING_EVENTS,
    QUERIES,
    LockedBooking,
    booking_event_params,
    claim_seats,
    fetch_bookings,
    seat_errors,
)
from core_api.bookings._read import get_booking, get_booking_by_pnr, list_bookings
from core_api.bookings.schemas import (
    Booking,
    BookingCreate,
    BookingFlight,
    BookingStatus,
    Passenger,
    PassengerInput,
    PassengerType,
)
from core_api.flights.providers.local import party_price
from core_api.flights.schemas import FlightStatus, Money
from core_api.storage.db import struct_row
from core_api.users.schemas import Role
from core_api.web.errors import Conflict, FieldError, InvalidState, SoldOut, ValidationFailed, map_database_error

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.security.crypto import Cipher
    from core_api.settings import Settings
    from core_api.storage.db import DbPool

__all__ = [
    "PNR_ALPHABET",
    "BookingService",
    "CreateResult",
    "cancel_booking",
    "create_booking",
    "get_booking",
    "get_booking_by_pnr",
    "list_bookings",
    "new_pnr",
    "release_lapsed_holds",
    "update_booking",
]

PNR_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""A-Z and 2-9 without the look-alikes I, L, O (and 0, 1): 31^6, about 887 million PNRs."""
_PNR_ATTEMPTS = 8
_EARLIEST_BIRTH = date(1900, 1, 1)
_encode = msgspec.json.Encoder().encode


def new_pnr() -> str:
    return "".join(secrets.choice(PNR_ALPHABET) for _ in range(6))


class BookingService:
    """What booking needs from the app: the pool, Redis (search cache), the settings and the field cipher; and,
    once payments are wired in, how to ask the provider for a refund a cancellation reserved (unset: it waits for
    the worker's refund reconciler).
    """

    __slots__ = ("cipher", "pool", "redis", "settings", "settle_refund")

    def __init__(self, pool: DbPool, redis: aioredis.Redis, settings: Settings, cipher: Cipher) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.cipher = cipher
        self.settle_refund: Callable[[uuid.UUID], Awaitable[None]] | None = None


@dataclass(frozen=True)
class CreateResult:
    """The response of a create: the booking's JSON, its status, and whether it is a stored one replayed."""

    status_code: int
    body: bytes
    booking_id: uuid.UUID | None
    replayed: bool


def _age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _type_for_age(age: int) -> PassengerType:
    if age < 2:
        return PassengerType.INFANT
    return PassengerType.CHILD if age < 12 else PassengerType.ADULT


def passenger_errors(passengers: list[PassengerInput], travel_day: date, today: date) -> list[FieldError]:
    """Dates of birth real, each type matching the age on the travel day, an adult aboard, a lap for each infant."""
    errors: list[FieldError] = []
    for index, passenger in enumerate(passengers):
        field = f"passengers[{index}]"
        if passenger.date_of_birth > today:
            errors.append(FieldError(f"{field}.date_of_birth", "must not be in the future"))
            continue
        if passenger.date_of_birth < _EARLIEST_BIRTH:
            errors.append(FieldError(f"{field}.date_of_birth", f"must be after {_EARLIEST_BIRTH.isoformat()}"))
            continue
        age = _age_on(passenger.date_of_birth, travel_day)
        expected = _type_for_age(age)
        if passenger.type is not expected:
            message = f"a traveller aged {age} on the departure day travels as {expected.value}"
            errors.append(FieldError(f"{field}.type", message))
    adults = sum(passenger.type is PassengerType.ADULT for passenger in passengers)
    infants = sum(passenger.type is PassengerType.INFANT for passenger in passengers)
    if adults == 0:
        errors.append(FieldError("passengers", "at least one ADULT must travel"))
    elif infants > adults:
        errors.append(FieldError("passengers", "at most one INFANT per ADULT (infants sit on a lap)"))
    return errors


def _raise_if(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed.of(errors)


@dataclass(frozen=True)
class _Parties:
    """Who a booking is for and who made it; ``holder`` is whose unpaid seats are capped."""

    customer_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    contact_email: str
    holder: uuid.UUID
    holder_is_agent: bool


class _Fare(msgspec.Struct, frozen=True):
    id: int
    fare_class: str
    price_amount: int
    currency: str
    seats_available: int


@dataclass(frozen=True)
class _Reads:
    """What the rules of a booking read, in one round trip (:func:`_read_before_writing`)."""

    flight: dict[str, Any] | None
    caller: dict[str, Any] | None
    """The caller's user row, locked: the unpaid-seat cap's lock, the first a booking takes."""
    customer: dict[str, Any] | None
    """The customer an agent books for (``customer_id``), if any."""
    held: int
    """Seats the caller holds unpaid, read after their row was locked."""
    fares: list[_Fare]


async def _read_before_writing(
    tx: AsyncConnection[Any], principal: Principal, data: BookingCreate, *, begin: bool
) -> _Reads:
    """The flight, the caller's row locked, the customer an agent books for, the caller's unpaid seats and the fare
    buckets, in one pipeline (``BEGIN`` first when ``begin``): the server runs them in order, so the unpaid seats
    are counted once the caller's row is locked. All are read whatever the outcome; a refusal rolls them back.
    """
    as_agent = principal.role is not Role.CUSTOMER
    cap_query = "unpaid_seats_of_agent" if as_agent else "unpaid_seats_of_customer"
    fare_params = {"flight_id": data.flight_id, "cabin": data.cabin.value, "fare_class": data.fare_class}
    async with tx.pipeline():
        if begin:
            await tx.execute("BEGIN")
        flight = await tx.execute(QUERIES["bookable_flight"], {"flight_id": data.flight_id})
        caller = await tx.execute(QUERIES["lock_holder"], {"id": principal.id})
        customer = None
        if as_agent and data.customer_id is not None:
            customer = await tx.execute(QUERIES["customer"], {"id": data.customer_id})
        held = await tx.execute(QUERIES[cap_query], {"holder": principal.id})
        fares = tx.cursor(row_factory=struct_row(_Fare))
        await fares.execute(QUERIES["fare_buckets"], fare_params)
    held_row = await held.fetchone()
    return _Reads(
        flight=await flight.fetchone(),
        caller=await caller.fetchone(),
        customer=await customer.fetchone() if customer is not None else None,
        held=int(held_row["seats"]) if held_row else 0,
        fares=await fares.fetchall(),
    )


def _parties(principal: Principal, data: BookingCreate, reads: _Reads) -> _Parties:
    """A customer books for themselves; an agent (or admin) for a customer account or for a traveller's contact."""
    if principal.role is Role.CUSTOMER:
        if data.customer_id is not None and data.customer_id != principal.id:
            raise ValidationFailed.for_field("customer_id", "only travel agents book for other customers")
        assert reads.caller is not None  # authenticated callers are live users
        email = data.contact_email or reads.caller["email"]
        return _Parties(principal.id, None, email, principal.id, holder_is_agent=False)
    contact_email = data.contact_email
    if data.customer_id is not None:
        row = reads.customer
        if row is None or row["role"] != Role.CUSTOMER or not row["is_active"]:
            raise ValidationFailed.for_field("customer_id", "no active customer with this id")
        contact_email = contact_email or row["email"]
    if contact_email is None:
        raise ValidationFailed.for_field("contact_email", "required when booking without a customer_id")
    return _Parties(data.customer_id, principal.id, contact_email, principal.id, holder_is_agent=True)


def _check_unpaid_cap(held: int, seats: int, cap: int) -> None:
    if held + seats > cap:
        raise Conflict(
            f"{held} seats are already held unpaid and the limit is {cap}: pay for or cancel a booking first."
        )


def _fare_candidates(data: BookingCreate, fares: list[_Fare], seats: int) -> list[_Fare]:
    """The requested bucket, or the cabin's buckets with room for ``seats`` cheapest first (read without a lock:
    the conditional UPDATE decides).
    """
    if not fares:
        if data.fare_class is not None:
            raise ValidationFailed.for_field("fare_class", f"no fare class {data.fare_class} in {data.cabin.value}")
        raise ValidationFailed.for_field("cabin", f"this flight has no {data.cabin.value} cabin")
    candidates = [fare for fare in fares if fare.seats_available >= seats]
    if not candidates:
        raise SoldOut(f"Not enough seats left in {data.cabin.value} for {seats} travellers.")
    return candidates


async def _insert_booking(tx: AsyncConnection[Any], params: dict[str, Any]) -> str:
    """Insert the booking under a fresh PNR (a taken one is drawn again); returns the PNR."""
    for _ in range(_PNR_ATTEMPTS):
        params["pnr"] = new_pnr()
        if await (await tx.execute(QUERIES["insert_booking"], params)).fetchone() is not None:
            return str(params["pnr"])
    raise RuntimeError(f"no free PNR after {_PNR_ATTEMPTS} draws")  # 8 collisions in a row: the space is full


def _unseated_insert(cipher: Cipher, draft: _Draft, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of ``insert_unseated_booking``: the booking's, its travellers' as columns, and its hold's
    expiry, counted from the transaction's start as the seated insert's ``now()`` counts it.
    """
    travellers = _passenger_columns(cipher, draft.booking_id, draft.data, {})
    hold_expires_at = draft.flight["transaction_at"] + timedelta(minutes=params["hold_minutes"])
    return {**params, **travellers, "passenger_ids": travellers["ids"], "hold_expires_at": hold_expires_at}


def _as_written(draft: _Draft, params: dict[str, Any]) -> Booking:
    """A new unseated booking as ``booking_detail`` will read it back: what it is written with, and the
    transaction's ``now()`` for its timestamps (the columns' default).
    """
    data, flight = draft.data, draft.flight
    passengers = [
        Passenger(
            id=passenger_id,
            first_name=passenger.first_name,
            last_name=passenger.last_name,
            date_of_birth=passenger.date_of_birth,
            type=passenger.type,
            seat_no=None,
            has_document=bool(passenger.document),
        )
        for passenger_id, passenger in zip(params["passenger_ids"], data.passengers, strict=True)
    ]
    return Booking(
        id=draft.booking_id,
        pnr=params["pnr"],
        status=BookingStatus.PENDING_PAYMENT,
        hold_expires_at=params["hold_expires_at"],
        total=Money(params["total_amount"], params["currency"]),
        cabin=data.cabin,
        fare_class=params["fare_class"],
        passengers=passengers,
        seats=[],
        flight=BookingFlight(
            id=flight["id"],
            airline=flight["airline_code"],
            flight_number=flight["flight_number"],
            origin=flight["origin"],
            destination=flight["destination"],
            departure_at=flight["departure_at"],
            arrival_at=flight["arrival_at"],
            origin_tz=flight["origin_tz"],
            destination_tz=flight["destination_tz"],
            status=FlightStatus(flight["status"]),
        ),
        customer_id=params["customer_id"],
        agent_id=params["agent_id"],
        contact_email=params["contact_email"],
        contact_phone=params["contact_phone"],
        created_at=flight["transaction_at"],
        updated_at=flight["transaction_at"],
        confirmed_at=None,
        cancelled_at=None,
        expired_at=None,
    )


@dataclass(frozen=True)
class _Draft:
    """A booking request once its rules passed: who, which flight, which travellers get which seats."""

    booking_id: uuid.UUID
    data: BookingCreate
    parties: _Parties
    created_by: uuid.UUID
    flight: dict[str, Any]
    seated: list[int]
    seats: list[str]


async def _write(
    tx: AsyncConnection[Any], service: BookingService, draft: _Draft, fare: _Fare
) -> tuple[Booking, LockedBooking, dict[str, Any] | None]:
    """Write the booking, its seats and passengers on ``fare`` — everything but the fare bucket, whose seats are
    taken last (see :func:`create_booking`). A booking without chosen seats is not written here: the parameters of
    its one insert come back, for the pipeline that takes the seats and commits.
    """
    data, parties = draft.data, draft.parties
    seat_count = len(draft.seated)
    adults = sum(p.type is PassengerType.ADULT for p in data.passengers)
    infants = len(data.passengers) - seat_count
    total = party_price(fare.price_amount, adults=adults, children=seat_count - adults, infants=infants)
    params = {
        "id": draft.booking_id,
        "flight_id": data.flight_id,
        "fare_id": fare.id,
        "cabin": data.cabin.value,
        "fare_class": fare.fare_class,
        "customer_id": parties.customer_id,
        "agent_id": parties.agent_id,
        "created_by": draft.created_by,
        "seat_count": seat_count,
        "total_amount": total,
        "currency": fare.currency,
        "contact_email": parties.contact_email,
        "contact_phone": data.contact_phone,
        "hold_minutes": service.settings.booking.hold_minutes,
    }
    insert = None
    if draft.seats:
        pnr = await _insert_booking(tx, params)
        await claim_seats(
            tx, booking_id=draft.booking_id, flight_id=data.flight_id, cabin=data.cabin, wanted=draft.seats
        )
        seat_of = dict(zip(draft.seated, draft.seats, strict=False))
        await _insert_passengers(tx, service.cipher, draft.booking_id, data, seat_of)
        [booking] = await fetch_bookings(tx, [draft.booking_id])
    else:
        params["pnr"] = pnr = new_pnr()
        insert = _unseated_insert(service.cipher, draft, params)
        booking = _as_written(draft, insert)
    written = LockedBooking(
        id=draft.booking_id,
        pnr=pnr,
        status=BookingStatus.PENDING_PAYMENT,
        flight_id=data.flight_id,
        fare_id=fare.id,
        cabin=data.cabin.value,
        fare_class=fare.fare_class,
        seat_count=seat_count,
        customer_id=parties.customer_id,
        agent_id=parties.agent_id,
        created_by=draft.created_by,
        contact_email=parties.contact_email,
        contact_phone=data.contact_phone,
        hold_expires_at=booking.hold_expires_at,
        hold_lapsed=False,
        total_amount=total,
        currency=fare.currency,
        airline_code=draft.flight["airline_code"],
        departure_at=draft.flight["departure_at"],
        departed=False,
    )
    return booking, written, insert


async def create_booking(
    service: BookingService,
    actor: Actor,
    principal: Principal,
    data: BookingCreate,
    key: idempotency.IdempotencyKey | None = None,
) -> CreateResult:
    """Book ``data`` for the caller (or, for an agent, a customer): 201 with the booking, or the stored response of
    an earlier request with the same Idempotency-Key. Refusals: 422 naming the field, 409 ``SOLD_OUT`` /
    ``SEAT_TAKEN`` / ``INVALID_STATE`` / ``CONFLICT`` (too many unpaid seats); nothing is written on any of them.

    Every buyer of a bucket queues for its row lock, so the lock is taken last and held for one round trip: the
    seats are taken and the outbox event written (one statement, ``take_fare_seats_announced``), the stored answer
    written and the transaction committed, in one pipeline behind the audit row. Overselling fails the UPDATE on
    the bucket's CHECK, which aborts the rest.
    """
    for _ in range(_PNR_ATTEMPTS):
        with contextlib.suppress(_PnrTaken):  # rolled back: start again under another PNR
            return await _create_once(service, actor, principal, data, key)
    raise RuntimeError(f"no free PNR after {_PNR_ATTEMPTS} draws")  # 8 collisions in a row: the space is full


async def _create_once(
    service: BookingService,
    actor: Actor,
    principal: Principal,
    data: BookingCreate,
    key: idempotency.IdempotencyKey | None,
) -> CreateResult:
    seated = [index for index, passenger in enumerate(data.passengers) if passenger.type is not PassengerType.INFANT]
    seats = data.seats or []
    _raise_if(seat_errors(seats, len(seated)))
    async with _committed_by_pipeline(service.pool) as tx:
        if key is not None:
            await tx.execute("BEGIN")
            stored = await idempotency.claim(tx, key)
            if stored is not None:
                return CreateResult(stored.status_code, stored.body, None, replayed=True)
        reads = await _read_before_writing(tx, principal, data, begin=key is None)
        flight = reads.flight
        if flight is None:
            raise ValidationFailed.for_field("flight_id", "no flight with this id")
        _raise_if(passenger_errors(data.passengers, flight["departure_at"].date(), datetime.now(UTC).date()))
        if not flight["bookable"]:
            raise InvalidState(f"This flight is {flight['status']} and can no longer be booked.")
        parties = _parties(principal, data, reads)
        _check_unpaid_cap(reads.held, len(seated), service.settings.booking.max_unpaid_seats)
        candidates = _fare_candidates(data, reads.fares, len(seated))
        draft = _Draft(uuid.uuid4(), data, parties, principal.id, flight, seated, seats)
        for attempt, fare in enumerate(candidates, start=1):
            last = attempt == len(candidates)
            if not last:  # a bucket emptied since it was read gives way to the next one
                await tx.execute("SAVEPOINT fare_attempt")
            booking, written, insert = await _write(tx, service, draft, fare)
            body = _encode(booking)
            try:
                await _take_seats_and_commit(tx, actor, draft, written, body, key, insert)
                break
            except SoldOut:
                if last:
                    raise
                await tx.execute("ROLLBACK TO SAVEPOINT fare_attempt")
    BOOKING_EVENTS.labels(event="booking.created").inc()
    return CreateResult(201, body, draft.booking_id, replayed=False)


class _PnrTaken(Exception):
    """The drawn PNR was another booking's: the transaction is rolled back and the booking made again."""


async def _take_seats_and_commit(
    tx: AsyncConnection[Any],
    actor: Actor,
    draft: _Draft,
    written: LockedBooking,
    body: bytes,
    key: idempotency.IdempotencyKey | None,
    insert: dict[str, Any] | None,
) -> None:
    metadata = {
        "seats": draft.seats,
        "passengers": len(draft.data.passengers),
        "on_behalf": draft.parties.agent_id is not None,
    }
    failure: psycopg.Error | None = None
    try:
        async with tx.pipeline() as pipeline:
            try:
                if insert is not None:  # an unseated booking's rows: no answer needed, so they travel here too
                    await tx.execute(QUERIES["insert_unseated_booking"], insert)
                # The audit row before the seats: it takes no lock, so it need not run while the bucket's is held.
                entity = ("booking", draft.booking_id)
                after = written.snapshot()
                await record_in_pipeline(tx, EventType.BOOKING_CREATED, actor, entity, after=after, metadata=metadata)
                event = booking_event_params("booking.created", written, status=BookingStatus.PENDING_PAYMENT)
                await tx.execute(QUERIES["take_fare_seats_announced"], {**event, "seats": written.seat_count})
                if key is not None:
                    await idempotency.store(tx, key, 201, body)
                await tx.execute("COMMIT")
                await pipeline.sync()
            except psycopg.Error as exc:  # the first error: an oversold bucket, or the connection lost
                failure = exc
    except psycopg.errors.PipelineAborted:  # the commands behind that error, reported again on leaving the block
        pass
    if failure is not None:
        if isinstance(failure, psycopg.errors.UniqueViolation) and failure.diag.constraint_name == "bookings_pnr_key":
            raise _PnrTaken from failure
        if isinstance(map_database_error(failure), SoldOut):
            cabin = draft.data.cabin.value
            raise SoldOut(f"Not enough seats left in {cabin} for {written.seat_count} travellers.") from None
        raise failure


@asynccontextmanager
async def _committed_by_pipeline(pool: DbPool) -> AsyncIterator[AsyncConnection[Any]]:
    """A transaction whose BEGIN and COMMIT the block sends itself, each in a pipeline with its first and last
    statements (``conn.transaction()`` would send them alone: two more round trips, one of them with the locks
    held). Rolled back when the block raises or returns without committing.
    """
    async with pool.connection() as conn:
        try:
            yield conn
        finally:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):  # a broken connection is discarded by the pool
                    await conn.execute("ROLLBACK")


async def _insert_passengers(
    tx: AsyncConnection[Any], cipher: Cipher, booking_id: uuid.UUID, data: BookingCreate, seat_of: dict[int, str]
) -> None:
    await tx.execute(QUERIES["insert_passengers"], _passenger_columns(cipher, booking_id, data, seat_of))


def _passenger_columns(
    cipher: Cipher, booking_id: uuid.UUID, data: BookingCreate, seat_of: dict[int, str]
) -> dict[str, Any]:
    """The travellers as the passengers inserts take them: a column each, in the order given."""
    passengers = data.passengers
    context = f"passengers.document:{booking_id}"
    return {
        "booking_id": booking_id,
        "flight_id": data.flight_id,
        "ids": [uuid.uuid4() for _ in passengers],
        "first_names": [p.first_name for p in passengers],
        "last_names": [p.last_name for p in passengers],
        "dates_of_birth": [p.date_of_birth for p in passengers],
        "types": [p.type.value for p in passengers],
        "documents": [cipher.seal(p.document, context=context) if p.document else None for p in passengers],
        "seat_nos": [seat_of.get(index) for index in range(len(passengers))],
    }
