"""Cached searches follow the flights they list: creating a flight, re-timing it (to another day too) or changing its
status drops the cached searches of its route on its local departure day — the old day and the new one — so the
next search is computed again; a search computed while the change commits is not cached with the old state.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from core_api.flights.providers import SearchProvider
from core_api.flights.providers.local import LocalProvider
from core_api.flights.schemas import Offer, SearchQuery
from core_api.flights.search import SearchService
from core_api.seed.aircraft import AIRCRAFT
from tests.support.accounts import Account

SEARCH = "/api/v1/flights/search"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def day(seed_start: date) -> date:
    return seed_start + timedelta(days=1)


def route(day: date) -> dict[str, str]:
    return {"origin": "JFK", "destination": "LHR", "date": day.isoformat()}


async def search(client: httpx.AsyncClient, day: date) -> dict[str, Any]:
    response = await client.get(SEARCH, params=route(day))
    assert response.status_code == 200, response.text
    return response.json()


async def cached_search(client: httpx.AsyncClient, day: date) -> dict[str, Any]:
    """Search twice: the answer as the cache holds it."""
    await search(client, day)
    body = await search(client, day)
    assert body["meta"]["cached"] is True
    return body


def times_of(body: dict[str, Any], flight_id: int) -> set[tuple[datetime, datetime]]:
    return {
        (datetime.fromisoformat(offer["segments"][0]["departure_at"]),
         datetime.fromisoformat(offer["segments"][0]["arrival_at"]))
        for offer in body["offers"]
        if offer["flight_id"] == flight_id
    }  # fmt: skip


def iso(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")


def a320_fares() -> list[dict[str, Any]]:
    return [
        {"cabin": cabin.value, "fare_class": "Y", "price": {"amount": 30000, "currency": "USD"}, "seats": seats}
        for cabin, seats in AIRCRAFT["A320"].seats_per_cabin.items()
    ]


async def create_flight(client: httpx.AsyncClient, admin: Account, departure: datetime) -> dict[str, Any]:
    body = {
        "airline_code": "AA",
        "flight_number": "AA4242",
        "origin": "JFK",
        "destination": "LHR",
        "departure_at": iso(departure),
        "arrival_at": iso(departure + timedelta(hours=7)),
        "aircraft": "A320",
        "fares": a320_fares(),
    }
    response = await client.post("/api/v1/flights", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def patch(client: httpx.AsyncClient, admin: Account, flight_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.patch(f"/api/v1/flights/{flight_id}", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


def evening_flight(body: dict[str, Any]) -> tuple[int, datetime]:
    """A flight of the answer leaving before 23:00 in New York (so a short delay keeps it on the day), and when."""
    for offer in body["offers"]:
        departure = datetime.fromisoformat(offer["segments"][0]["departure_at"])
        if departure.astimezone(NEW_YORK).hour < 23:
            return int(offer["flight_id"]), departure
    raise AssertionError("no JFK-LHR flight leaving before 23:00")


async def test_a_new_flight_appears_in_the_cached_search_of_its_origins_local_day(
    client: httpx.AsyncClient, admin: Account, day: date
) -> None:
    await cached_search(client, day)
    await cached_search(client, day + timedelta(days=1))
    # 21:30 in New York is already the next day in UTC: the search day is the local one at the origin.
    departure = datetime.combine(day, time(21, 30), NEW_YORK)

    created = await create_flight(client, admin, departure)

    after = await search(client, day)
    assert after["meta"]["cached"] is False
    assert times_of(after, created["id"]) == {(departure, departure + timedelta(hours=7))}
    assert (await search(client, day + timedelta(days=1)))["meta"]["cached"] is True


async def test_a_retimed_flight_shows_its_new_times_in_the_cached_search(
    client: httpx.AsyncClient, admin: Account, day: date
) -> None:
    flight_id, departure = evening_flight(await cached_search(client, day))
    arrival = next(arrival for _, arrival in times_of(await search(client, day), flight_id))
    later = departure + timedelta(minutes=45)

    await patch(client, admin, flight_id, {"status": "DELAYED", "departure_at": iso(later)})

    after = await search(client, day)
    assert after["meta"]["cached"] is False
    assert times_of(after, flight_id) == {(later, arrival + timedelta(minutes=45))}


async def test_a_flight_moved_to_another_day_leaves_the_old_days_search_and_joins_the_new_days(
    client: httpx.AsyncClient, admin: Account, day: date
) -> None:
    flight_id, departure = evening_flight(await cached_search(client, day))
    await cached_search(client, day + timedelta(days=1))
    # A day and 20 minutes later (the same flight number leaves at the same time every day).
    moved = departure + timedelta(days=1, minutes=20)

    await patch(client, admin, flight_id, {"departure_at": iso(moved)})

    old_day, new_day = await search(client, day), await search(client, day + timedelta(days=1))
    assert (old_day["meta"]["cached"], new_day["meta"]["cached"]) == (False, False)
    assert times_of(old_day, flight_id) == set()
    assert {moment for moment, _ in times_of(new_day, flight_id)} == {moved}


@pytest.mark.parametrize("status", ["DELAYED", "CANCELLED"])
async def test_a_status_change_drops_the_cached_searches_of_the_flight(
    client: httpx.AsyncClient, admin: Account, day: date, status: str
) -> None:
    flight_id, _ = evening_flight(await cached_search(client, day))

    await patch(client, admin, flight_id, {"status": status})

    after = await search(client, day)
    assert after["meta"]["cached"] is False
    assert bool(times_of(after, flight_id)) is (status == "DELAYED")


class GatedProvider:
    """The local provider, whose first search stops after reading the database until ``gate`` opens."""

    def __init__(self, inner: SearchProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.timeout_seconds = 30.0
        self.read = asyncio.Event()
        self.gate = asyncio.Event()
        self.calls = 0

    async def search(self, query: SearchQuery) -> list[Offer]:
        self.calls += 1
        offers = await self.inner.search(query)
        if self.calls == 1:
            self.read.set()
            await self.gate.wait()
        return offers


async def test_a_search_computed_while_a_flight_changes_is_not_cached_with_the_old_times(
    client: httpx.AsyncClient, app: Litestar, pool: AsyncConnectionPool, admin: Account, day: date
) -> None:
    gated = GatedProvider(LocalProvider(app.state.pool, timeout_seconds=30.0))
    app.state.search = SearchService(
        pool=app.state.pool, redis=app.state.redis, providers=[gated], cache_ttl_seconds=300
    )
    first = asyncio.create_task(search(client, day))
    await asyncio.wait_for(gated.read.wait(), 10)
    # The first search has read the flights; now one of them is delayed, and commits, before it answers.
    flight_id, departure = next(
        (offer.flight_id, offer.segments[0].departure_at)
        for offer in await LocalProvider(pool, timeout_seconds=3).search(
            SearchQuery(origin="JFK", destination="LHR", date=day)
        )
        if offer.flight_id is not None and offer.segments[0].departure_at.astimezone(NEW_YORK).hour < 23
    )
    later = departure + timedelta(minutes=30)
    await patch(client, admin, flight_id, {"status": "DELAYED", "departure_at": iso(later)})

    # A search asked after the change does not join the computation that read the old times.
    second = await asyncio.wait_for(search(client, day), 10)
    gated.gate.set()
    stale = await first

    assert {moment for moment, _ in times_of(stale, flight_id)} == {departure}
    assert {moment for moment, _ in times_of(second, flight_id)} == {later}
    third = await search(client, day)
    assert {moment for moment, _ in times_of(third, flight_id)} == {later}
    assert gated.calls == 2
