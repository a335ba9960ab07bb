"""Search over our own inventory: the seeded timetable comes back for the origin's local day, priced for the party,
filtered and sorted as asked, from one indexed query."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.seed.schedule import PlannedFlight, planned_flights
from core_api.storage.db import load_queries

SEARCH = "/api/v1/flights/search"


async def search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get(SEARCH, params={key: str(value) for key, value in params.items()})
    assert response.status_code == 200, response.text
    return response.json()


def planned(origin: str, destination: str, day: date) -> list[PlannedFlight]:
    """The seeded flights of a route leaving on ``day``, local time at the origin (the seed's own timetable)."""
    return [
        flight
        for flight in planned_flights(day, 1)
        if flight.service.origin.code == origin and flight.service.destination.code == destination
    ]


def key(offer: dict[str, Any]) -> tuple[str, str, str]:
    return offer["segments"][0]["flight_number"], offer["cabin"], offer["fare_class"]


def amounts(offers: list[dict[str, Any]]) -> list[int]:
    return [offer["price"]["amount"] for offer in offers]


@pytest.fixture
def day(seed_start: date) -> date:
    """The middle seeded day: every flight on it is in the future, wherever it leaves from."""
    return seed_start + timedelta(days=1)


async def execute(pool: AsyncConnectionPool, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall() if cursor.description else []


async def flight_id(pool: AsyncConnectionPool, flight_number: str, departure_at: datetime) -> int:
    rows = await execute(
        pool,
        "SELECT id FROM flights WHERE flight_number = %(number)s AND departure_at = %(at)s",
        {"number": flight_number, "at": departure_at},
    )
    return int(rows[0]["id"])


@pytest.mark.parametrize(("origin", "destination"), [("JFK", "LHR"), ("HND", "SYD"), ("LAX", "SYD"), ("LHR", "CDG")])
async def test_a_route_lists_every_seeded_fare_of_the_origins_local_day(
    client: httpx.AsyncClient, day: date, origin: str, destination: str
) -> None:
    body = await search(client, origin=origin, destination=destination, date=day)

    flights = planned(origin, destination, day)
    expected = {
        (f.service.flight_number, fare.cabin.value, fare.fare_class): (f, fare) for f in flights for fare in f.fares
    }
    offers = body["offers"]
    assert sorted(map(key, offers)) == sorted(expected)
    for offer in offers:
        flight, fare = expected[key(offer)]
        (segment,) = offer["segments"]
        departure = datetime.fromisoformat(segment["departure_at"])
        arrival = datetime.fromisoformat(segment["arrival_at"])
        assert departure == flight.departure_at
        assert arrival == flight.arrival_at
        # UTC on the wire, with each airport's zone beside it; the searched day is the local one at the origin.
        assert segment["departure_at"].endswith("Z")
        assert segment["arrival_at"].endswith("Z")
        assert (segment["origin_tz"], segment["destination_tz"]) == (
            flight.service.origin.tz,
            flight.service.destination.tz,
        )
        assert departure.astimezone(ZoneInfo(segment["origin_tz"])).date() == day
        assert segment["duration_minutes"] == flight.service.duration // timedelta(minutes=1)
        assert (segment["airline"], segment["origin"], segment["destination"]) == (
            flight.service.airline.code,
            origin,
            destination,
        )
        assert offer["price"] == {"amount": fare.price_amount, "currency": fare.currency}
        assert offer["seats_left"] == fare.seats_total
        assert offer["source"] == "local"
        assert offer["offer_id"] == f"local:{offer['flight_id']}:{offer['cabin']}:{offer['fare_class']}"
    assert body["meta"]["cached"] is False
    assert body["meta"]["sources"][0] | {"ms": 0} == {"name": "local", "status": "ok", "count": len(offers), "ms": 0}


async def test_the_day_is_the_local_date_at_the_origin_not_the_utc_date(client: httpx.AsyncClient, day: date) -> None:
    # JFK's transatlantic departures leave in the evening: after 19:00 in New York it is already tomorrow in UTC.
    late = [f for f in planned("JFK", "LHR", day) if f.departure_at.date() != day]
    assert late, "the seeded timetable should have a JFK-LHR departure whose UTC date is the next day"

    on_day = await search(client, origin="JFK", destination="LHR", date=day)
    next_day = await search(client, origin="JFK", destination="LHR", date=day + timedelta(days=1))

    found = {datetime.fromisoformat(offer["segments"][0]["departure_at"]) for offer in on_day["offers"]}
    assert {flight.departure_at for flight in late} <= found
    found_next = {datetime.fromisoformat(offer["segments"][0]["departure_at"]) for offer in next_day["offers"]}
    assert not found & found_next
    assert {moment.astimezone(ZoneInfo("America/New_York")).date() for moment in found_next} == {
        day + timedelta(days=1)
    }


async def test_the_price_is_for_the_whole_party_with_infants_at_ten_percent(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, day: date
) -> None:
    flight = planned("JFK", "LHR", day)[0]
    target = await flight_id(pool, flight.service.flight_number, flight.departure_at)
    # An odd fare, so that the infant's 10 % is not a whole minor unit: 1234.5 is rounded half up.
    await execute(
        pool,
        "UPDATE flight_prices SET price_amount = 12345 WHERE flight_id = %(id)s AND cabin = 'ECONOMY'"
        " AND fare_class = 'K'",
        {"id": target},
    )
    body = await search(client, origin="JFK", destination="LHR", date=day, adults=2, children=1, infants=1)

    by_key = {key(offer): offer for offer in body["offers"]}
    assert by_key[(flight.service.flight_number, "ECONOMY", "K")]["price"]["amount"] == 3 * 12345 + 1235
    for fare in flight.fares:
        if (fare.cabin.value, fare.fare_class) == ("ECONOMY", "K"):
            continue
        infant = int((Decimal(fare.price_amount) / 10).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        offer = by_key[(flight.service.flight_number, fare.cabin.value, fare.fare_class)]
        assert offer["price"] == {"amount": 3 * fare.price_amount + infant, "currency": fare.currency}


async def test_a_bucket_is_offered_only_with_a_seat_for_every_adult_and_child(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, day: date
) -> None:
    flight = planned("JFK", "LHR", day)[0]
    target = await flight_id(pool, flight.service.flight_number, flight.departure_at)
    await execute(
        pool,
        "UPDATE flight_prices SET seats_available = 2 WHERE flight_id = %(id)s AND cabin = 'ECONOMY'"
        " AND fare_class = 'K'",
        {"id": target},
    )
    bucket = (flight.service.flight_number, "ECONOMY", "K")

    two = await search(client, origin="JFK", destination="LHR", date=day, adults=2)
    three = await search(client, origin="JFK", destination="LHR", date=day, adults=2, children=1)
    two_with_infants = await search(client, origin="JFK", destination="LHR", date=day, adults=2, infants=2)

    assert [offer["seats_left"] for offer in two["offers"] if key(offer) == bucket] == [2]
    assert bucket not in {key(offer) for offer in three["offers"]}
    assert bucket in {key(offer) for offer in two_with_infants["offers"]}


async def test_cancelled_and_departed_flights_are_not_offered(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, day: date
) -> None:
    cancelled, delayed = planned("JFK", "LAX", day)[:2]
    await execute(
        pool,
        "UPDATE flights SET status = 'CANCELLED' WHERE flight_number = %(number)s AND departure_at = %(at)s",
        {"number": cancelled.service.flight_number, "at": cancelled.departure_at},
    )
    await execute(
        pool,
        "UPDATE flights SET status = 'DELAYED' WHERE flight_number = %(number)s AND departure_at = %(at)s",
        {"number": delayed.service.flight_number, "at": delayed.departure_at},
    )
    body = await search(client, origin="JFK", destination="LAX", date=day)
    numbers = {offer["segments"][0]["flight_number"] for offer in body["offers"]}
    assert cancelled.service.flight_number not in numbers
    assert delayed.service.flight_number in numbers

    # A flight that left an hour ago is not offered; one leaving in two hours is.
    gone, soon = planned("JFK", "ORD", day)[:2]
    moved = await execute(
        pool,
        """
        UPDATE flights SET departure_at = now() + %(shift)s, arrival_at = now() + %(shift)s + interval '3 hours'
        WHERE flight_number = %(number)s AND departure_at = %(at)s
        RETURNING (departure_at AT TIME ZONE 'America/New_York')::date AS day
        """,
        {"number": gone.service.flight_number, "at": gone.departure_at, "shift": timedelta(hours=-1)},
    )
    moved_soon = await execute(
        pool,
        """
        UPDATE flights SET departure_at = now() + %(shift)s, arrival_at = now() + %(shift)s + interval '3 hours'
        WHERE flight_number = %(number)s AND departure_at = %(at)s
        RETURNING (departure_at AT TIME ZONE 'America/New_York')::date AS day
        """,
        {"number": soon.service.flight_number, "at": soon.departure_at, "shift": timedelta(hours=2)},
    )
    past_day = await search(client, origin="JFK", destination="ORD", date=moved[0]["day"])
    soon_day = await search(client, origin="JFK", destination="ORD", date=moved_soon[0]["day"])
    assert gone.service.flight_number not in {o["segments"][0]["flight_number"] for o in past_day["offers"]}
    assert soon.service.flight_number in {o["segments"][0]["flight_number"] for o in soon_day["offers"]}


async def test_cabin_airline_and_max_price_filter(client: httpx.AsyncClient, day: date) -> None:
    every = (await search(client, origin="JFK", destination="LHR", date=day))["offers"]

    business = (await search(client, origin="JFK", destination="LHR", date=day, cabin="BUSINESS"))["offers"]
    assert business
    assert sorted(map(key, business)) == sorted(key(o) for o in every if o["cabin"] == "BUSINESS")

    british = (await search(client, origin="JFK", destination="LHR", date=day, airline="ba"))["offers"]
    assert british
    assert sorted(map(key, british)) == sorted(key(o) for o in every if o["segments"][0]["airline"] == "BA")

    limit = sorted(amounts(every))[len(every) // 2]
    cheap = (await search(client, origin="JFK", destination="LHR", date=day, max_price=limit))["offers"]
    assert sorted(map(key, cheap)) == sorted(key(o) for o in every if o["price"]["amount"] <= limit)
    assert 0 < len(cheap) < len(every)


async def test_price_sort_is_cheapest_first(client: httpx.AsyncClient, day: date) -> None:
    # JFK-LAX is flown by three US airlines: every fare in US cents, so the amounts compare directly.
    offers = (await search(client, origin="JFK", destination="LAX", date=day, sort="price"))["offers"]
    assert {offer["price"]["currency"] for offer in offers} == {"USD"}
    assert amounts(offers) == sorted(amounts(offers))
    assert len(offers) > 5


async def test_duration_sort_is_shortest_first_then_cheapest(client: httpx.AsyncClient, day: date) -> None:
    offers = (await search(client, origin="JFK", destination="LAX", date=day, sort="duration"))["offers"]
    keys = [(offer["segments"][0]["duration_minutes"], offer["price"]["amount"]) for offer in offers]
    assert keys == sorted(keys)


async def test_departure_sort_is_earliest_first_then_cheapest(client: httpx.AsyncClient, day: date) -> None:
    offers = (await search(client, origin="JFK", destination="LAX", date=day, sort="departure"))["offers"]
    keys = [
        (datetime.fromisoformat(offer["segments"][0]["departure_at"]), offer["price"]["amount"]) for offer in offers
    ]
    assert keys == sorted(keys)
    assert len({departure for departure, _ in keys}) == 3


def _index_names(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        names = {plan["Index Name"]} if "Index Name" in plan else set()
        return names.union(*(_index_names(value) for value in plan.values()))
    if isinstance(plan, list):
        return set().union(*(_index_names(item) for item in plan))
    return set()


async def test_the_local_query_uses_the_route_departure_index(pool: AsyncConnectionPool, day: date) -> None:
    queries = load_queries("search")
    params = {
        "origin": "JFK",
        "destination": "LHR",
        "day": day,
        "seats_needed": 1,
        "cabin": None,
        "airline": None,
    }
    (row,) = await execute(pool, "EXPLAIN (FORMAT JSON) " + queries["local_offers"], params)
    plan = row["QUERY PLAN"]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert "flights_route_departure_idx" in _index_names(plan)
    text = json.dumps(plan)
    # The whole local day is an index condition, not a filter applied to every future flight of the route.
    assert "departure_at >= $" in text
    assert "Seq Scan" not in text

    (row,) = await execute(pool, "EXPLAIN (FORMAT JSON) " + queries["current_availability"], {"flight_ids": [1, 2]})
    plan = row["QUERY PLAN"]
    assert "flight_prices_one_bucket" in _index_names(json.loads(plan) if isinstance(plan, str) else plan)
