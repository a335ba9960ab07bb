"""Creating a booking (``POST /bookings``): what a traveller gets, what is written with it, and what is refused with
nothing written at all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.audit.service import verify_chain
from core_api.users.schemas import Role
from tests.bookings.conftest import (
    BOOKINGS,
    Account,
    MakeAccount,
    SmallFlight,
    add_small_flight,
    adult,
    booking_request,
    child,
    fare_seats,
    infant,
    rows,
    widen_bucket,
)


async def test_a_customer_holds_seats_and_pays_per_traveller(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    request = booking_request(flight, adult(), child(), infant(), fare_class="Y", seats=["3C", "3D"])

    response = await client.post(BOOKINGS, json=request, headers=customer.headers)

    assert response.status_code == 201, response.text
    booking = response.json()
    assert response.headers["location"].endswith(f"/bookings/{booking['id']}")
    assert booking["status"] == "PENDING_PAYMENT"
    assert len(booking["pnr"]) == 6
    assert set(booking["pnr"]) <= set("ABCDEFGHJKMNPQRSTUVWXYZ23456789")
    # Two seated travellers at USD 450.00 and an infant at 10 %.
    assert booking["total"] == {"amount": 2 * 45000 + 4500, "currency": "USD"}
    assert [p["seat_no"] for p in booking["passengers"]] == ["3C", "3D", None]
    assert booking["seats"] == ["3C", "3D"]
    assert booking["customer_id"] == customer.id
    assert booking["agent_id"] is None
    assert booking["contact_email"] == customer.user.email
    hold = datetime.fromisoformat(booking["hold_expires_at"])
    assert timedelta(minutes=14) < hold - datetime.now(UTC) <= timedelta(minutes=15)
    assert booking["flight"]["id"] == flight.id
    assert booking["flight"]["flight_number"] == "BA9001"

    assert await fare_seats(pool, flight.id) == flight.y_seats - 2
    seats = await rows(pool, "SELECT seat_no, status FROM seats WHERE booking_id = %s ORDER BY seat_no", booking["id"])
    assert seats == [{"seat_no": "3C", "status": "HELD"}, {"seat_no": "3D", "status": "HELD"}]
    seat_map = (await client.get(f"/api/v1/flights/{flight.id}/seats")).json()
    statuses = {s["seat_no"]: s["status"] for c in seat_map["cabins"] for r in c["rows"] for s in r["seats"]}
    assert statuses["3C"] == statuses["3D"] == "HELD"
    assert statuses["3E"] == "AVAILABLE"


@pytest.mark.parametrize("seats", [None, ["4A", "4B"]], ids=["unseated", "seated"])
async def test_the_created_booking_is_the_booking_as_read_back(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight, seats: list[str] | None
) -> None:
    travellers = ({**adult(), "document": "P1234567"}, child(), infant())
    request = booking_request(flight, *travellers, contact_phone="+44 20 7946 0000", seats=seats)

    created = await client.post(BOOKINGS, json=request, headers=customer.headers)

    assert created.status_code == 201, created.text
    read = await client.get(f"{BOOKINGS}/{created.json()['id']}", headers=customer.headers)
    assert read.status_code == 200
    assert created.json() == read.json()


@pytest.mark.parametrize("seats", [None, ["5A"]], ids=["unseated", "seated"])
async def test_a_taken_pnr_is_drawn_again_and_touches_nothing(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    flight: SmallFlight,
    monkeypatch: pytest.MonkeyPatch,
    seats: list[str] | None,
) -> None:
    first = await client.post(BOOKINGS, json=booking_request(flight), headers=customer.headers)
    taken = first.json()["pnr"]
    draws = iter([taken, taken, "QQQ222"])
    monkeypatch.setattr("core_api.bookings.service.new_pnr", lambda: next(draws))

    second = await client.post(BOOKINGS, json=booking_request(flight, seats=seats), headers=customer.headers)

    assert second.status_code == 201, second.text
    assert second.json()["pnr"] == "QQQ222"
    counts = await rows(
        pool,
        "SELECT b.pnr, count(p.id) AS travellers FROM bookings AS b JOIN passengers AS p ON p.booking_id = b.id "
        "GROUP BY b.pnr",
    )
    assert {row["pnr"]: row["travellers"] for row in counts} == {"QQQ222": 1, taken: 1}


async def test_the_booking_is_audited_and_announced_in_its_transaction(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    response = await client.post(BOOKINGS, json=booking_request(flight, fare_class="Y"), headers=customer.headers)
    booking = response.json()

    [audit] = await rows(pool, "SELECT * FROM audit_logs WHERE event_type = 'booking.created'")
    assert (audit["entity_type"], audit["entity_id"], str(audit["actor_id"])) == ("booking", booking["id"], customer.id)
    assert audit["after"]["pnr"] == booking["pnr"]
    [event] = await rows(pool, "SELECT * FROM outbox_events WHERE event_type = 'booking.created'")
    assert event["aggregate_id"] == booking["id"]
    assert event["payload"]["customer_id"] == customer.id
    assert event["payload"]["airline_code"] == "BA"
    assert event["payload"]["availability"] == {
        "flight_id": flight.id,
        "cabin": "ECONOMY",
        "fare_class": "Y",
        "seats_available": flight.y_seats - 1,
    }
    async with pool.connection() as conn:
        assert (await verify_chain(conn)).valid


async def test_without_a_fare_class_the_cheapest_bucket_with_room_is_taken(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    other_customer: Account,
    flight: SmallFlight,
) -> None:
    # M (USD 300, 3 seats) is cheaper than Y (USD 450): two travellers fit in M, then two more do not.
    first = await client.post(BOOKINGS, json=booking_request(flight, adult(), adult("Bo")), headers=customer.headers)
    second = await client.post(
        BOOKINGS, json=booking_request(flight, adult(), adult("Bo")), headers=other_customer.headers
    )

    assert (first.json()["fare_class"], first.json()["total"]["amount"]) == ("M", 60000)
    assert (second.json()["fare_class"], second.json()["total"]["amount"]) == ("Y", 90000)
    assert await fare_seats(pool, flight.id, "M") == 1


async def test_a_travel_agent_books_for_a_customer_and_both_are_recorded(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, agent: Account, customer: Account, flight: SmallFlight
) -> None:
    request = booking_request(flight, customer_id=customer.id)

    response = await client.post(BOOKINGS, json=request, headers=agent.headers)

    assert response.status_code == 201, response.text
    booking = response.json()
    assert (booking["customer_id"], booking["agent_id"]) == (customer.id, agent.id)
    assert booking["contact_email"] == customer.user.email
    [stored] = await rows(pool, "SELECT created_by FROM bookings WHERE id = %s", booking["id"])
    assert str(stored["created_by"]) == agent.id
    [audit] = await rows(pool, "SELECT actor_id, after FROM audit_logs WHERE event_type = 'booking.created'")
    assert str(audit["actor_id"]) == agent.id
    assert (audit["after"]["customer_id"], audit["after"]["agent_id"]) == (customer.id, agent.id)
    [event] = await rows(pool, "SELECT payload FROM outbox_events WHERE event_type = 'booking.created'")
    assert (event["payload"]["customer_id"], event["payload"]["agent_id"]) == (customer.id, agent.id)
    # The customer sees the booking made for them.
    mine = await client.get(BOOKINGS, headers=customer.headers)
    assert [item["id"] for item in mine.json()["items"]] == [booking["id"]]


async def test_an_agent_books_a_new_contact_without_an_account(
    client: httpx.AsyncClient, agent: Account, flight: SmallFlight
) -> None:
    without = await client.post(BOOKINGS, json=booking_request(flight), headers=agent.headers)
    assert without.status_code == 422
    assert without.json()["errors"][0]["field"] == "contact_email"

    response = await client.post(
        BOOKINGS, json=booking_request(flight, contact_email="traveller@example.org"), headers=agent.headers
    )
    assert response.status_code == 201, response.text
    assert (response.json()["customer_id"], response.json()["contact_email"]) == (None, "traveller@example.org")


@pytest.mark.parametrize("role", [Role.BUSINESS_OWNER, Role.AIRLINE_AGENT])
async def test_read_only_and_airline_roles_cannot_book(
    client: httpx.AsyncClient, make_account: MakeAccount, flight: SmallFlight, role: Role
) -> None:
    account = await make_account(role)
    response = await client.post(BOOKINGS, json=booking_request(flight), headers=account.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


async def test_anonymous_callers_cannot_book(client: httpx.AsyncClient, flight: SmallFlight) -> None:
    response = await client.post(BOOKINGS, json=booking_request(flight))
    assert response.status_code == 401


async def test_a_customer_cannot_book_in_another_customers_name(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    other_customer: Account,
    flight: SmallFlight,
) -> None:
    request = booking_request(flight, customer_id=other_customer.id)
    response = await client.post(BOOKINGS, json=request, headers=customer.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "customer_id"
    assert await rows(pool, "SELECT id FROM bookings") == []


async def test_a_cancelled_flight_cannot_be_booked(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    async with pool.connection() as conn:
        await conn.execute("UPDATE flights SET status = 'CANCELLED' WHERE id = %s", (flight.id,))
    response = await client.post(BOOKINGS, json=booking_request(flight), headers=customer.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "INVALID_STATE"


async def test_unpaid_seats_are_capped_per_customer(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    # The default cap is 18 seats held unpaid; nine travellers twice fill it (BUSINESS has 4: use a big bucket).
    await widen_bucket(pool, flight.id, 100)
    nine = [adult(f"Ann{'abcdefghi'[i]}") for i in range(9)]
    for _ in range(2):
        response = await client.post(
            BOOKINGS, json=booking_request(flight, *nine, fare_class="Y"), headers=customer.headers
        )
        assert response.status_code == 201, response.text

    refused = await client.post(BOOKINGS, json=booking_request(flight, fare_class="Y"), headers=customer.headers)

    assert refused.status_code == 409
    assert refused.json()["code"] == "CONFLICT"
    assert "18" in refused.json()["detail"]
    assert await fare_seats(pool, flight.id) == 100 - 18


def _future(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("no passengers", {"passengers": []}, "passengers"),
    ("fifty passengers", {"passengers": [adult()] * 50}, "passengers"),
    ("born tomorrow", {"passengers": [{**adult(), "date_of_birth": _future(1)}]}, "passengers[0].date_of_birth"),
    ("malformed date", {"passengers": [{**adult(), "date_of_birth": "02/04/1985"}]}, "passengers[0].date_of_birth"),
    ("adult aged 5", {"passengers": [{**adult(), "date_of_birth": _future(-5 * 366)}]}, "passengers[0].type"),
    ("unknown type", {"passengers": [{**adult(), "type": "PET"}]}, "passengers[0].type"),
    ("only a child", {"passengers": [child()]}, "passengers"),
    ("two infants one lap", {"passengers": [adult(), infant(), infant("Iza")]}, "passengers"),
    ("5 kB first name", {"passengers": [{**adult(), "first_name": "A" * 5000}]}, "passengers[0].first_name"),
    ("digits in a name", {"passengers": [{**adult(), "last_name": "R2D2"}]}, "passengers[0].last_name"),
    ("unknown passenger field", {"passengers": [{**adult(), "role": "ADMIN"}]}, "passengers[0].role"),
    ("unknown cabin", {"cabin": "STEERAGE"}, "cabin"),
    ("cabin not on the flight", {"cabin": "FIRST"}, "cabin"),
    ("unknown fare class", {"fare_class": "Z"}, "fare_class"),
    ("unknown flight", {"flight_id": 999_999_999}, "flight_id"),
    ("flight id as text", {"flight_id": "12"}, "flight_id"),
    ("negative flight id", {"flight_id": -1}, "flight_id"),
    ("unknown seat", {"seats": ["40A"]}, "seats[0]"),
    ("business seat in economy", {"seats": ["1A"]}, "seats[0]"),
    ("malformed seat", {"seats": ["A1"]}, "seats[0]"),
    ("seat twice", {"passengers": [adult(), adult("Bo")], "seats": ["3A", "3A"]}, "seats[1]"),
    ("more seats than travellers", {"seats": ["3A", "3B"]}, "seats"),
    ("malformed email", {"contact_email": "not-an-email"}, "contact_email"),
    ("unknown top-level field", {"status": "CONFIRMED"}, "status"),
    ("total given by the client", {"total": {"amount": 1, "currency": "USD"}}, "total"),
]


@pytest.mark.parametrize(
    ("changes", "field"), [(c, f) for _, c, f in BAD_REQUESTS], ids=[n for n, _, _ in BAD_REQUESTS]
)
async def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    customer: Account,
    flight: SmallFlight,
    changes: dict[str, Any],
    field: str,
) -> None:
    request = {**booking_request(flight), **changes}

    response = await client.post(BOOKINGS, json=request, headers=customer.headers)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "VALIDATION_ERROR"
    assert field in [error["field"] for error in problem["errors"]], problem
    assert await rows(pool, "SELECT id FROM bookings") == []
    assert await rows(pool, "SELECT id FROM passengers") == []
    assert await rows(pool, "SELECT id FROM outbox_events") == []
    assert await rows(pool, "SELECT 1 FROM seats WHERE flight_id = %s AND status <> 'AVAILABLE'", flight.id) == []
    assert await fare_seats(pool, flight.id) == flight.y_seats


async def test_a_travel_document_is_stored_encrypted_never_in_clear(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    request = booking_request(flight, {**adult(), "document": "P1234567"})

    response = await client.post(BOOKINGS, json=request, headers=customer.headers)

    assert response.status_code == 201, response.text
    assert "P1234567" not in response.text
    assert response.json()["passengers"][0]["has_document"] is True
    [stored] = await rows(pool, "SELECT document_enc FROM passengers")
    assert b"P1234567" not in bytes(stored["document_enc"])
    audit = await rows(pool, "SELECT concat(before::text, after::text, metadata::text) AS text FROM audit_logs")
    assert all("P1234567" not in row["text"] for row in audit)


def test_born_before_1900_is_refused() -> None:
    from core_api.bookings.schemas import PassengerInput, PassengerType
    from core_api.bookings.service import passenger_errors

    old = PassengerInput(first_name="Ann", last_name="Old", date_of_birth=date(1899, 12, 31), type=PassengerType.ADULT)
    [error] = passenger_errors([old], date(2027, 1, 1), date(2026, 12, 1))
    assert error.field == "passengers[0].date_of_birth"


async def test_a_striped_bucket_shows_its_whole_count_wherever_availability_is_read(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, reference_data: None
) -> None:
    # Its counter over four rows (migration 0015): search, the flight, and the booking's event show their sum.
    flight = await add_small_flight(pool, y_seats=20, y_stripes=4)
    party = booking_request(flight, adult("Ann"), adult("Bob"), fare_class="Y")
    assert (await client.post(BOOKINGS, json=party, headers=customer.headers)).status_code == 201

    day = flight.departure_at.astimezone(ZoneInfo("America/New_York")).date()
    query = {"origin": "JFK", "destination": "LHR", "date": str(day)}
    search = await client.get("/api/v1/flights/search", params=query)
    [offer] = [offer for offer in search.json()["offers"] if offer["fare_class"] == "Y"]
    assert offer["seats_left"] == 18
    detail = (await client.get(f"/api/v1/flights/{flight.id}")).json()
    [fare] = [fare for fare in detail["fares"] if fare["fare_class"] == "Y"]
    assert (fare["seats_total"], fare["seats_available"]) == (20, 18)
    [event] = await rows(pool, "SELECT payload FROM outbox_events WHERE event_type = 'booking.created'")
    assert event["payload"]["availability"]["seats_available"] == 18
    striped = "SELECT seats_available FROM flight_prices WHERE id IN (SELECT fare_id FROM fare_stripes)"
    assert await rows(pool, striped) == [{"seats_available": 0}]  # the stripes hold the seats
