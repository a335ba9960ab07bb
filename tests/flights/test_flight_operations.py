"""Creating flights (``POST /flights``) and operating them (``PATCH /flights/{id}``): who may, what is checked, what
is written (flight, fares, seat map, audit rows, outbox events) and what never is.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.seed.aircraft import AIRCRAFT
from core_api.storage.db import transaction
from core_api.users.schemas import Role
from tests.support.accounts import Account, MakeAccount


@pytest.fixture
async def ba_agent(make_account: MakeAccount) -> Account:
    return await make_account(Role.AIRLINE_AGENT, "BA")


@pytest.fixture
async def af_agent(make_account: MakeAccount) -> Account:
    return await make_account(Role.AIRLINE_AGENT, "AF")


async def fetch(pool: AsyncConnectionPool, query: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await (await conn.execute(query, params)).fetchall()


async def counts(pool: AsyncConnectionPool) -> dict[str, int]:
    """Rows of everything creating or changing a flight writes."""
    row = (
        await fetch(
            pool,
            "SELECT (SELECT count(*) FROM flights) AS flights, (SELECT count(*) FROM flight_prices) AS fares,"
            " (SELECT count(*) FROM seats) AS seats, (SELECT count(*) FROM outbox_events) AS outbox,"
            " (SELECT count(*) FROM audit_logs WHERE event_type LIKE 'flight.%%') AS audit,"
            " (SELECT max(updated_at) FROM flights) AS last_update",
        )
    )[0]
    return dict(row)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


DEPARTURE = (datetime.now(UTC) + timedelta(days=20)).replace(hour=9, minute=30, second=0, microsecond=0)
# LHR-CDG is short haul: British Airways flies an A320 there (12 BUSINESS and 162 ECONOMY seats).
A320_SEATS = {"BUSINESS": 12, "ECONOMY": 162}


def new_flight(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "airline_code": "BA",
        "flight_number": "BA987",
        "origin": "LHR",
        "destination": "CDG",
        "departure_at": iso(DEPARTURE),
        "arrival_at": iso(DEPARTURE + timedelta(minutes=75)),
        "fares": [
            {"cabin": "BUSINESS", "fare_class": "J", "price": {"amount": 45000, "currency": "GBP"}, "seats": 12,
             "refundable": True},
            {"cabin": "ECONOMY", "fare_class": "Y", "price": {"amount": 21000, "currency": "GBP"}, "seats": 40,
             "refundable": True},
            {"cabin": "ECONOMY", "fare_class": "K", "price": {"amount": 6900, "currency": "GBP"}, "seats": 122},
        ],
    }  # fmt: skip
    body.update(changes)
    return body


def with_fare(index: int, **changes: Any) -> list[dict[str, Any]]:
    fares: list[dict[str, Any]] = new_flight()["fares"]
    fares[index] = {**fares[index], **changes}
    return fares


# POST /flights ---------------------------------------------------------------------------------------------------


async def test_admin_creates_a_flight_with_fares_seat_map_and_audit(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account
) -> None:
    response = await client.post("/api/v1/flights", json=new_flight(), headers=admin.headers)

    assert response.status_code == 201, response.text
    flight = response.json()
    assert response.headers["location"] == f"/api/v1/flights/{flight['id']}"
    assert (flight["flight_number"], flight["origin"], flight["destination"]) == ("BA987", "LHR", "CDG")
    assert (flight["status"], flight["aircraft"]) == ("SCHEDULED", "A320")
    assert datetime.fromisoformat(flight["departure_at"]) == DEPARTURE
    assert flight["duration_minutes"] == 75
    assert [(f["cabin"], f["fare_class"], f["seats_total"], f["seats_available"]) for f in flight["fares"]] == [
        ("BUSINESS", "J", 12, 12),
        ("ECONOMY", "K", 122, 122),
        ("ECONOMY", "Y", 40, 40),
    ]
    assert flight["fares"][0]["price"] == {"amount": 45000, "currency": "GBP"}
    seats = [seat for cabin in flight["seat_map"]["cabins"] for row in cabin["rows"] for seat in row["seats"]]
    assert len(seats) == len(AIRCRAFT["A320"].seats) == sum(A320_SEATS.values())
    assert {seat["status"] for seat in seats} == {"AVAILABLE"}
    stored = await fetch(
        pool, "SELECT cabin, count(*) AS n FROM seats WHERE flight_id = %s GROUP BY cabin", flight["id"]
    )
    assert {row["cabin"]: row["n"] for row in stored} == A320_SEATS
    exit_seat = await fetch(pool, "SELECT features FROM seats WHERE flight_id = %s AND seat_no = '12A'", flight["id"])
    assert exit_seat[0]["features"] == ["WINDOW", "EXIT_ROW", "EXTRA_LEGROOM"]
    audit = await fetch(pool, "SELECT * FROM audit_logs WHERE event_type = 'flight.created'")
    assert len(audit) == 1
    assert (audit[0]["entity_type"], audit[0]["entity_id"]) == ("flight", str(flight["id"]))
    assert audit[0]["actor_id"] == admin.user.id
    assert audit[0]["after"]["flight_number"] == "BA987"
    assert len(audit[0]["after"]["fares"]) == 3
    assert (await client.get(f"/api/v1/flights/{flight['id']}")).json()["fares"] == flight["fares"]


async def test_airline_agent_creates_a_flight_of_its_own_airline(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ba_agent: Account
) -> None:
    body = new_flight(airline_code="ba", flight_number="ba5", origin="lhr", destination="cdg")

    response = await client.post("/api/v1/flights", json=body, headers=ba_agent.headers)

    assert response.status_code == 201, response.text
    assert (response.json()["airline"], response.json()["flight_number"]) == ("BA", "BA5")
    audit = await fetch(pool, "SELECT actor_id, actor_role FROM audit_logs WHERE event_type = 'flight.created'")
    assert [(row["actor_id"], row["actor_role"]) for row in audit] == [(ba_agent.user.id, "AIRLINE_AGENT")]


async def test_aircraft_can_be_chosen_and_defaults_by_distance(client: httpx.AsyncClient, admin: Account) -> None:
    # JFK-LHR is long haul: BA's wide body, the B777-300ER, with four cabins.
    seats = {cabin.value: n for cabin, n in AIRCRAFT["B777-300ER"].seats_per_cabin.items()}
    long_haul = new_flight(
        origin="JFK",
        destination="LHR",
        arrival_at=iso(DEPARTURE + timedelta(hours=7)),
        fares=[
            {"cabin": cabin, "fare_class": "ABCD"[index], "price": {"amount": 10000, "currency": "GBP"}, "seats": n}
            for index, (cabin, n) in enumerate(seats.items())
        ],
    )
    a321 = AIRCRAFT["A321"].seats_per_cabin
    chosen = new_flight(
        flight_number="BA988",
        aircraft="a321",
        fares=[
            {"cabin": cabin.value, "fare_class": "Y", "price": {"amount": 100, "currency": "GBP"}, "seats": n}
            for cabin, n in a321.items()
        ],
    )

    default = await client.post("/api/v1/flights", json=long_haul, headers=admin.headers)
    explicit = await client.post("/api/v1/flights", json=chosen, headers=admin.headers)

    assert default.status_code == 201, default.text
    assert default.json()["aircraft"] == "B777-300ER"
    assert explicit.status_code == 201, explicit.text
    assert explicit.json()["aircraft"] == "A321"


@pytest.mark.parametrize(
    ("role", "airline", "status"),
    [
        (Role.AIRLINE_AGENT, "AF", 403),
        (Role.CUSTOMER, None, 403),
        (Role.TRAVEL_AGENT, None, 403),
        (Role.BUSINESS_OWNER, None, 403),
    ],
)
async def test_only_admins_and_the_airlines_agents_create_flights(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    make_account: MakeAccount,
    role: Role,
    airline: str | None,
    status: int,
) -> None:
    caller = await make_account(role, airline)
    before = await counts(pool)

    response = await client.post("/api/v1/flights", json=new_flight(), headers=caller.headers)

    assert response.status_code == status
    assert response.json()["code"] == "FORBIDDEN"
    assert await counts(pool) == before
    denied = await fetch(pool, "SELECT actor_id FROM audit_logs WHERE event_type = 'security.access_denied'")
    assert [row["actor_id"] for row in denied] == [caller.user.id]


async def test_anonymous_callers_may_not_create_flights(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    before = await counts(pool)

    response = await client.post("/api/v1/flights", json=new_flight())

    assert response.status_code == 401
    assert await counts(pool) == before


def _bad(name: str, field: str, **changes: Any) -> Any:
    return pytest.param(changes, field, id=name)


PAST = datetime.now(UTC) - timedelta(hours=1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        _bad("unknown airline", "airline_code", airline_code="ZZ", flight_number="ZZ1"),
        _bad("malformed airline", "airline_code", airline_code="B!"),
        _bad("number of another airline", "flight_number", flight_number="AF987"),
        _bad("malformed number", "flight_number", flight_number="BA12345"),
        _bad("unknown origin", "origin", origin="QQQ"),
        _bad("unknown destination", "destination", destination="QQQ"),
        _bad("malformed origin", "origin", origin="LH"),
        _bad("same airports", "destination", destination="LHR"),
        _bad("arrival before departure", "arrival_at", arrival_at=iso(DEPARTURE - timedelta(minutes=1))),
        _bad("arrival at departure", "arrival_at", arrival_at=iso(DEPARTURE)),
        _bad("a day and more", "arrival_at", arrival_at=iso(DEPARTURE + timedelta(hours=25))),
        _bad("departure in the past", "departure_at", departure_at=iso(PAST),
             arrival_at=iso(PAST + timedelta(hours=1))),
        _bad("departure too far ahead", "departure_at", departure_at="2099-01-01T10:00:00Z",
             arrival_at="2099-01-01T12:00:00Z"),
        _bad("naive departure", "departure_at", departure_at=DEPARTURE.replace(tzinfo=None).isoformat()),
        # Times at the ends of the calendar: converting them to UTC, or adding to them, leaves datetime's range.
        _bad("departure in year 9999", "departure_at", departure_at="9999-12-31T23:30:00-05:00",
             arrival_at="9999-12-31T23:59:00-05:00"),
        _bad("arrival in year 9999", "arrival_at", arrival_at="9999-12-31T23:30:00-05:00"),
        _bad("arrival in year 1", "arrival_at", arrival_at="0001-01-01T00:30:00+01:00"),
        _bad("departure in year 1", "departure_at", departure_at="0001-01-01T00:30:00+14:00"),
        _bad("not a time", "arrival_at", arrival_at="soon"),
        _bad("unknown aircraft", "aircraft", aircraft="B747-400"),
        _bad("no fares", "fares", fares=[]),
        _bad("fares not a list", "fares", fares={"cabin": "ECONOMY"}),
        _bad("duplicate fare", "fares[2].fare_class", fares=with_fare(2, fare_class="Y")),
        _bad("negative price", "fares[0].price.amount", fares=with_fare(0, price={"amount": -1, "currency": "GBP"})),
        _bad("price not an integer", "fares[0].price.amount",
             fares=with_fare(0, price={"amount": "450.00", "currency": "GBP"})),
        _bad("price as a number", "fares[0].price", fares=with_fare(0, price=450)),
        _bad("lower-case currency", "fares[0].price.currency",
             fares=with_fare(0, price={"amount": 1, "currency": "gbp"})),
        _bad("mixed currencies", "fares[1].price.currency",
             fares=with_fare(1, price={"amount": 1, "currency": "EUR"})),
        _bad("negative seats", "fares[0].seats", fares=with_fare(0, seats=-1)),
        _bad("seats as a string", "fares[0].seats", fares=with_fare(0, seats="12")),
        _bad("refundable as a string", "fares[0].refundable", fares=with_fare(0, refundable="yes")),
        _bad("time as a number", "departure_at", departure_at=1893456000),
        _bad("seats beyond the cabin", "fares[0].seats", fares=with_fare(0, seats=13)),
        _bad("cabin the aircraft lacks", "fares[3].cabin",
             fares=[*new_flight()["fares"], {"cabin": "FIRST", "fare_class": "F",
                                             "price": {"amount": 1, "currency": "GBP"}, "seats": 0}]),
        _bad("unknown cabin", "fares[0].cabin", fares=with_fare(0, cabin="COACH")),
        _bad("long fare class", "fares[0].fare_class", fares=with_fare(0, fare_class="YY")),
        _bad("unknown fare field", "fares[0].discount", fares=with_fare(0, discount=10)),
        _bad("unknown field", "gate", gate="A10"),
        _bad("oversized aircraft", "aircraft", aircraft="x" * 1000),
    ],
)  # fmt: skip
async def test_every_bad_input_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, changes: dict[str, Any], field: str
) -> None:
    before = await counts(pool)

    response = await client.post("/api/v1/flights", json=new_flight(**changes), headers=admin.headers)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "VALIDATION_ERROR"
    assert field in [error["field"] for error in problem["errors"]], problem
    assert await counts(pool) == before


@pytest.mark.parametrize("missing", ["airline_code", "flight_number", "origin", "destination", "departure_at",
                                     "arrival_at", "fares"])  # fmt: skip
async def test_missing_field_is_422_naming_it(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, missing: str
) -> None:
    body = new_flight()
    del body[missing]

    response = await client.post("/api/v1/flights", json=body, headers=admin.headers)

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [missing]


async def test_every_broken_rule_is_reported_at_once(client: httpx.AsyncClient, admin: Account) -> None:
    body = new_flight(flight_number="AF1", destination="LHR", aircraft="B747", fares=with_fare(2, fare_class="Y"))

    response = await client.post("/api/v1/flights", json=body, headers=admin.headers)

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"flight_number", "destination", "aircraft", "fares[2].fare_class"}


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"flight"', b"null"])
async def test_malformed_body_is_4xx(client: httpx.AsyncClient, admin: Account, body: bytes) -> None:
    headers = {**admin.headers, "Content-Type": "application/json"}

    response = await client.post("/api/v1/flights", content=body, headers=headers)

    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_same_number_and_departure_again_is_409(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, ba_agent: Account
) -> None:
    assert (await client.post("/api/v1/flights", json=new_flight(), headers=admin.headers)).status_code == 201
    before = await counts(pool)

    again = await client.post("/api/v1/flights", json=new_flight(), headers=ba_agent.headers)

    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"
    assert await counts(pool) == before
    later = new_flight(
        departure_at=iso(DEPARTURE + timedelta(days=1)), arrival_at=iso(DEPARTURE + timedelta(days=1, hours=1))
    )
    assert (await client.post("/api/v1/flights", json=later, headers=admin.headers)).status_code == 201


# PATCH /flights/{id} ---------------------------------------------------------------------------------------------


@pytest.fixture
async def flight(pool: AsyncConnectionPool) -> dict[str, Any]:
    """A seeded British Airways flight (BA101, JFK to LHR): id and times."""
    rows = await fetch(
        pool,
        "SELECT id, departure_at, arrival_at FROM flights WHERE flight_number = 'BA101' ORDER BY departure_at LIMIT 1",
    )
    return rows[0]


_pnrs = itertools.product("ABCDEFGH", repeat=6)


async def add_booking(pool: AsyncConnectionPool, flight_id: int, status: str) -> str:
    """A booking of the flight in ``status`` with one passenger on a seat, as the booking service leaves it."""
    pnr = "".join(next(_pnrs))
    async with transaction(pool) as tx:
        fare = await (
            await tx.execute(
                "UPDATE flight_prices SET seats_available = seats_available - 1"
                " WHERE flight_id = %s AND cabin = 'ECONOMY' AND fare_class = 'K' RETURNING id, price_amount, currency",
                (flight_id,),
            )
        ).fetchone()
        assert fare is not None
        booking = await (
            await tx.execute(
                "INSERT INTO bookings (pnr, flight_id, fare_id, cabin, fare_class, status, seat_count, total_amount,"
                " currency, contact_email, hold_expires_at)"
                " VALUES (%s, %s, %s, 'ECONOMY', 'K', %s, 1, %s, %s, 'traveller@example.com',"
                " now() + interval '15 minutes') RETURNING id",
                (pnr, flight_id, fare["id"], status, fare["price_amount"], fare["currency"]),
            )
        ).fetchone()
        assert booking is not None
        seat = await (
            await tx.execute(
                "UPDATE seats SET status = 'OCCUPIED', booking_id = %s WHERE (flight_id, seat_no) = ("
                " SELECT flight_id, seat_no FROM seats WHERE flight_id = %s AND cabin = 'ECONOMY'"
                " AND status = 'AVAILABLE' ORDER BY seat_no LIMIT 1) RETURNING seat_no",
                (booking["id"], flight_id),
            )
        ).fetchone()
        assert seat is not None
        await tx.execute(
            "INSERT INTO passengers (booking_id, flight_id, first_name, last_name, date_of_birth, type, seat_no)"
            " VALUES (%s, %s, 'Ada', 'Lovelace', '1990-12-10', 'ADULT', %s)",
            (booking["id"], flight_id, seat["seat_no"]),
        )
    return str(booking["id"])


@pytest.fixture
async def bookings(pool: AsyncConnectionPool, flight: dict[str, Any]) -> dict[str, str]:
    """Bookings of the flight in every status (by status), and a live one of another flight."""
    made = {status: await add_booking(pool, flight["id"], status) for status in
            ("PENDING_PAYMENT", "CONFIRMED", "CANCELLED", "EXPIRED")}  # fmt: skip
    other = await fetch(pool, "SELECT id FROM flights WHERE flight_number = 'BA102' LIMIT 1")
    made["other flight"] = await add_booking(pool, other[0]["id"], "CONFIRMED")
    return made


async def outbox(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    return await fetch(pool, "SELECT * FROM outbox_events WHERE event_type = 'flight.changed' ORDER BY seq")


async def patch(client: httpx.AsyncClient, flight_id: int, body: Any, caller: Account | None) -> httpx.Response:
    return await client.patch(f"/api/v1/flights/{flight_id}", json=body, headers=caller.headers if caller else {})


async def test_delay_moves_both_times_and_notifies_live_bookings(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    ba_agent: Account,
    flight: dict[str, Any],
    bookings: dict[str, str],
) -> None:
    new_departure = flight["departure_at"] + timedelta(hours=2, minutes=15)

    response = await patch(client, flight["id"], {"status": "DELAYED", "departure_at": iso(new_departure)}, ba_agent)

    assert response.status_code == 200, response.text
    updated = response.json()
    new_arrival = flight["arrival_at"] + timedelta(hours=2, minutes=15)
    assert updated["status"] == "DELAYED"
    assert datetime.fromisoformat(updated["departure_at"]) == new_departure
    assert datetime.fromisoformat(updated["arrival_at"]) == new_arrival
    events = await outbox(pool)
    assert {event["aggregate_id"] for event in events} == {bookings["PENDING_PAYMENT"], bookings["CONFIRMED"]}
    for event in events:
        assert event["aggregate_type"] == "booking"
        payload = event["payload"]
        assert payload["booking_id"] == event["aggregate_id"]
        assert (payload["flight_id"], payload["change"], payload["status"]) == (flight["id"], "delayed", "DELAYED")
        assert datetime.fromisoformat(payload["old_departure_at"]) == flight["departure_at"]
        assert datetime.fromisoformat(payload["new_departure_at"]) == new_departure
        assert datetime.fromisoformat(payload["old_arrival_at"]) == flight["arrival_at"]
        assert datetime.fromisoformat(payload["new_arrival_at"]) == new_arrival
    audit = await fetch(pool, "SELECT * FROM audit_logs WHERE event_type = 'flight.delayed'")
    assert len(audit) == 1
    assert (audit[0]["entity_id"], audit[0]["actor_id"]) == (str(flight["id"]), ba_agent.user.id)
    assert audit[0]["before"]["status"] == "SCHEDULED"
    assert audit[0]["after"]["status"] == "DELAYED"
    assert datetime.fromisoformat(audit[0]["after"]["departure_at"]) == new_departure
    assert audit[0]["metadata"] == {"change": "delayed", "notified_bookings": 2}


async def test_cancellation_notifies_live_bookings_and_is_final(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    flight: dict[str, Any],
    bookings: dict[str, str],
) -> None:
    response = await patch(client, flight["id"], {"status": "CANCELLED"}, admin)

    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    events = await outbox(pool)
    assert sorted(event["aggregate_id"] for event in events) == sorted(
        [bookings["PENDING_PAYMENT"], bookings["CONFIRMED"]]
    )
    assert {event["payload"]["change"] for event in events} == {"cancelled"}
    audit = await fetch(pool, "SELECT before, after FROM audit_logs WHERE event_type = 'flight.cancelled'")
    assert [(row["before"]["status"], row["after"]["status"]) for row in audit] == [("SCHEDULED", "CANCELLED")]
    before = await counts(pool)
    later = iso(flight["departure_at"] + timedelta(hours=1))
    for body in ({"status": "DELAYED"}, {"status": "SCHEDULED"}, {"status": "CANCELLED"}, {"departure_at": later}):
        again = await patch(client, flight["id"], body, admin)
        assert again.status_code == 409, body
        assert again.json()["code"] == "INVALID_STATE"
    assert await counts(pool) == before


async def test_retiming_a_scheduled_flight_keeps_it_scheduled(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    flight: dict[str, Any],
    bookings: dict[str, str],
) -> None:
    earlier = flight["departure_at"] - timedelta(minutes=30)

    response = await patch(client, flight["id"], {"departure_at": iso(earlier)}, admin)

    assert response.status_code == 200
    assert response.json()["status"] == "SCHEDULED"
    assert datetime.fromisoformat(response.json()["arrival_at"]) == flight["arrival_at"] - timedelta(minutes=30)
    assert {event["payload"]["change"] for event in await outbox(pool)} == {"retimed"}
    assert len(await fetch(pool, "SELECT 1 FROM audit_logs WHERE event_type = 'flight.updated'")) == 1


async def test_arrival_alone_moves_only_the_arrival(
    client: httpx.AsyncClient, admin: Account, flight: dict[str, Any]
) -> None:
    later = flight["arrival_at"] + timedelta(minutes=20)

    response = await patch(client, flight["id"], {"status": "DELAYED", "arrival_at": iso(later)}, admin)

    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["departure_at"]) == flight["departure_at"]
    assert datetime.fromisoformat(response.json()["arrival_at"]) == later


async def set_times(pool: AsyncConnectionPool, flight_id: int, *, departs_in: timedelta, flies: timedelta) -> None:
    """Move a flight's times relative to now (as if the test ran on the day it flies)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE flights SET departure_at = now() + %(departs_in)s, arrival_at = now() + %(departs_in)s + %(flies)s"
            " WHERE id = %(id)s",
            {"id": flight_id, "departs_in": departs_in, "flies": flies},
        )


async def test_departure_and_arrival_follow_forward_to_arrived_without_notifications(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    flight: dict[str, Any],
    bookings: dict[str, str],
) -> None:
    # Left half an hour ago, lands in an hour and a half.
    await set_times(pool, flight["id"], departs_in=-timedelta(minutes=30), flies=timedelta(hours=2))

    for status in ("DELAYED", "DEPARTED", "ARRIVED"):
        response = await patch(client, flight["id"], {"status": status}, admin)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    assert {event["payload"]["change"] for event in await outbox(pool)} == {"delayed"}
    updated = await fetch(pool, "SELECT after FROM audit_logs WHERE event_type = 'flight.updated' ORDER BY id")
    assert [row["after"]["status"] for row in updated] == ["DEPARTED", "ARRIVED"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ([], {"status": "ARRIVED"}),
        (["CANCELLED"], {"status": "ARRIVED"}),
        (["DELAYED"], {"status": "SCHEDULED"}),
        (["DEPARTED"], {"status": "DELAYED"}),
        (["DEPARTED"], {"status": "CANCELLED"}),
        (["DEPARTED"], {"departure_at": "FUTURE"}),
        (["DEPARTED", "ARRIVED"], {"status": "DEPARTED"}),
        (["DEPARTED", "ARRIVED"], {"status": "ARRIVED"}),
    ],
)
async def test_invalid_transitions_are_409_invalid_state(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    flight: dict[str, Any],
    path: list[str],
    body: dict[str, str],
) -> None:
    if "DEPARTED" in path:
        await set_times(pool, flight["id"], departs_in=-timedelta(minutes=30), flies=timedelta(hours=1))
    for status in path:
        assert (await patch(client, flight["id"], {"status": status}, admin)).status_code == 200
    if body.get("departure_at") == "FUTURE":
        body = {"departure_at": iso(flight["departure_at"] + timedelta(hours=1))}
    before = await counts(pool)

    response = await patch(client, flight["id"], body, admin)

    assert response.status_code == 409
    assert response.json()["code"] == "INVALID_STATE"
    assert await counts(pool) == before


@pytest.mark.parametrize(
    ("departs_in", "flies", "path", "accepted"),
    [
        pytest.param(timedelta(days=20), timedelta(hours=7), ["DEPARTED"], False, id="departed weeks early"),
        pytest.param(timedelta(minutes=61), timedelta(hours=7), ["DEPARTED"], False, id="departed 61 min early"),
        pytest.param(timedelta(minutes=59), timedelta(hours=7), ["DEPARTED"], True, id="departed 59 min early"),
        pytest.param(-timedelta(hours=3), timedelta(hours=7), ["DEPARTED"], True, id="departed late"),
        pytest.param(-timedelta(minutes=10), timedelta(hours=7), ["DEPARTED", "ARRIVED"], False,
                     id="arrived hours early"),
        pytest.param(-timedelta(hours=5), timedelta(hours=7, minutes=1), ["DEPARTED", "ARRIVED"], False,
                     id="arrived 2 h 1 min early"),
        pytest.param(-timedelta(hours=5), timedelta(hours=6, minutes=59), ["DEPARTED", "ARRIVED"], True,
                     id="arrived 1 h 59 min early"),
        pytest.param(-timedelta(hours=9), timedelta(hours=7), ["DEPARTED", "ARRIVED"], True, id="arrived late"),
    ],
)  # fmt: skip
async def test_departed_and_arrived_are_accepted_only_near_the_flights_times(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    flight: dict[str, Any],
    departs_in: timedelta,
    flies: timedelta,
    path: list[str],
    accepted: bool,
) -> None:
    """DEPARTED from an hour before the departure, ARRIVED from two hours before the arrival (SPEC is silent)."""
    await set_times(pool, flight["id"], departs_in=departs_in, flies=flies)
    *before_last, last = path
    for status in before_last:
        assert (await patch(client, flight["id"], {"status": status}, admin)).status_code == 200
    before = await counts(pool)

    response = await patch(client, flight["id"], {"status": last}, admin)

    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == last
        return
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "INVALID_STATE"
    assert f"marked {last}" in problem["detail"]
    assert await counts(pool) == before


async def test_a_delayed_flight_departs_near_its_new_departure_not_the_old_one(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, flight: dict[str, Any]
) -> None:
    await set_times(pool, flight["id"], departs_in=timedelta(minutes=30), flies=timedelta(hours=7))
    delayed = datetime.now(UTC) + timedelta(hours=4)
    assert (await patch(client, flight["id"], {"status": "DELAYED", "departure_at": iso(delayed)}, admin)).is_success

    response = await patch(client, flight["id"], {"status": "DEPARTED"}, admin)

    assert response.status_code == 409
    assert response.json()["code"] == "INVALID_STATE"
    assert iso(delayed.replace(second=0, microsecond=0))[:16] in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"gate": "B7"}, "gate"),
        ({"status": "DELAYED", "delay_minutes": 30}, "delay_minutes"),
        ({"status": "LATE"}, "status"),
        ({"departure_at": 1893456000}, "departure_at"),
        ({"departure_at": "2030-01-01T10:00:00"}, "departure_at"),
        ({"arrival_at": "tomorrow"}, "arrival_at"),
        ({"departure_at": "PAST"}, "departure_at"),
        ({"departure_at": "9999-12-31T23:00:00Z"}, "departure_at"),
        ({"departure_at": "9999-12-31T23:30:00-05:00"}, "departure_at"),
        ({"status": "DELAYED", "departure_at": "9999-12-31T23:00:00Z"}, "departure_at"),
        ({"arrival_at": "9999-12-31T23:30:00-05:00"}, "arrival_at"),
        ({"arrival_at": "0001-01-01T00:30:00+01:00"}, "arrival_at"),
        ({"departure_at": "0001-01-01T00:30:00+14:00", "arrival_at": "0001-01-01T02:00:00+14:00"}, "departure_at"),
        ({"status": "DELAYED", "departure_at": "EARLIER"}, "departure_at"),
        ({"arrival_at": "BEFORE_DEPARTURE"}, "arrival_at"),
        ({"departure_at": "NEXT_WEEK", "arrival_at": "NEXT_WEEK"}, "arrival_at"),
        ({"status": "CANCELLED", "departure_at": "LATER"}, "departure_at"),
    ],
)
async def test_bad_update_is_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    flight: dict[str, Any],
    bookings: dict[str, str],
    body: dict[str, Any],
    field: str,
) -> None:
    moments = {
        "PAST": datetime.now(UTC) - timedelta(minutes=5),
        "EARLIER": flight["departure_at"] - timedelta(minutes=10),
        "LATER": flight["departure_at"] + timedelta(minutes=10),
        "BEFORE_DEPARTURE": flight["departure_at"] - timedelta(minutes=1),
        "NEXT_WEEK": flight["departure_at"] + timedelta(days=7),
    }
    body = {key: iso(moments[value]) if value in moments else value for key, value in body.items()}
    before = await counts(pool)

    response = await patch(client, flight["id"], body, admin)

    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert await counts(pool) == before


async def test_an_update_that_changes_nothing_writes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account, flight: dict[str, Any]
) -> None:
    before = await counts(pool)

    response = await patch(
        client, flight["id"], {"status": "SCHEDULED", "departure_at": iso(flight["departure_at"])}, admin
    )

    assert response.status_code == 200
    assert response.json()["status"] == "SCHEDULED"
    assert await counts(pool) == before


@pytest.mark.parametrize(
    ("role", "airline", "status"),
    [
        (Role.ADMIN, None, 200),
        (Role.AIRLINE_AGENT, "BA", 200),
        (Role.AIRLINE_AGENT, "AF", 403),
        (Role.CUSTOMER, None, 403),
        (Role.TRAVEL_AGENT, None, 403),
        (Role.BUSINESS_OWNER, None, 403),
    ],
)
async def test_who_may_operate_a_flight(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    make_account: MakeAccount,
    flight: dict[str, Any],
    bookings: dict[str, str],
    role: Role,
    airline: str | None,
    status: int,
) -> None:
    caller = await make_account(role, airline)

    response = await patch(client, flight["id"], {"status": "DELAYED"}, caller)

    assert response.status_code == status
    stored = await fetch(pool, "SELECT status FROM flights WHERE id = %s", flight["id"])
    assert stored[0]["status"] == ("DELAYED" if status == 200 else "SCHEDULED")
    assert len(await outbox(pool)) == (2 if status == 200 else 0)


async def test_anonymous_update_is_401_and_unknown_or_malformed_ids_are_404_and_422(
    client: httpx.AsyncClient, admin: Account, flight: dict[str, Any]
) -> None:
    assert (await patch(client, flight["id"], {"status": "DELAYED"}, None)).status_code == 401
    assert (await patch(client, 987654321, {"status": "DELAYED"}, admin)).status_code == 404
    malformed = await client.patch("/api/v1/flights/BA101", json={"status": "DELAYED"}, headers=admin.headers)
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "id"


async def test_concurrent_cancellations_notify_once(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    admin: Account,
    ba_agent: Account,
    flight: dict[str, Any],
    bookings: dict[str, str],
) -> None:
    responses = await asyncio.gather(
        *(patch(client, flight["id"], {"status": "CANCELLED"}, caller) for caller in (admin, ba_agent) * 3)
    )

    assert sorted(response.status_code for response in responses) == [200] + [409] * 5
    assert len(await outbox(pool)) == 2
    assert len(await fetch(pool, "SELECT 1 FROM audit_logs WHERE event_type = 'flight.cancelled'")) == 1
