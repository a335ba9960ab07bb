"""The demo seed: the SPEC's network, local departure times across a clock change, fares, seat maps, reruns."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

import core_api.seed.loader as loader
from core_api.seed import SeedSummary, is_seeded, seed_reference_and_flights
from core_api.seed.reference import HUB_AIRPORTS
from core_api.seed.schedule import daily_services, planned_flights
from tests.conftest import cloned_database

# Europe moves its clocks forward in the night to Sunday 29 March 2026; the two seeded days straddle it.
DST_START = date(2026, 3, 28)
DAYS = 2
SPEC_ROUTES = [("JFK", "LHR"), ("JFK", "LAX"), ("LHR", "CDG"), ("SIN", "HND")]


async def fetch(conninfo: str, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()


async def table_counts(conninfo: str) -> tuple[int, ...]:
    [row] = await fetch(
        conninfo,
        """SELECT (SELECT count(*) FROM airlines), (SELECT count(*) FROM airports), (SELECT count(*) FROM flights),
                  (SELECT count(*) FROM flight_prices), (SELECT count(*) FROM seats)""",
    )
    return tuple(row)


@pytest.fixture(scope="module")
async def seeded(postgres_url: str, template_database: str) -> AsyncIterator[tuple[str, SeedSummary]]:
    """One database seeded for two days across the March clock change, shared by the read-only tests."""
    async with cloned_database(postgres_url, template_database) as url:
        summary = await seed_reference_and_flights(url, days=DAYS, start=DST_START)
        yield url, summary


@pytest.fixture
def seeded_url(seeded: tuple[str, SeedSummary]) -> str:
    return seeded[0]


async def test_the_summary_counts_what_was_written(seeded: tuple[str, SeedSummary]) -> None:
    url, summary = seeded
    assert (summary.airlines, summary.airports, summary.flights, summary.fares, summary.seats) == await table_counts(
        url
    )
    assert summary.airlines == 12
    # All of airportsdata's usable IATA airports, for the airport search.
    assert summary.airports > 7000
    assert summary.flights == DAYS * len(daily_services())


async def test_spec_routes_are_flown_both_ways_every_day(seeded_url: str) -> None:
    rows = await fetch(
        seeded_url,
        """SELECT f.origin, f.destination, (f.departure_at AT TIME ZONE a.tz)::date, count(DISTINCT f.airline_code)
           FROM flights f JOIN airports a ON a.code = f.origin
           GROUP BY 1, 2, 3""",
    )
    airlines_per_day = {(origin, destination, day): airlines for origin, destination, day, airlines in rows}
    for first, second in SPEC_ROUTES:
        for origin, destination in ((first, second), (second, first)):
            for offset in range(DAYS):
                assert airlines_per_day.get((origin, destination, DST_START + timedelta(days=offset)), 0) >= 1
    # The busiest routes are contested.
    assert airlines_per_day[("JFK", "LHR", DST_START)] >= 2
    assert airlines_per_day[("LHR", "CDG", DST_START)] >= 2


async def test_every_hub_flies_daily_to_at_least_three_airports(seeded_url: str) -> None:
    rows = await fetch(
        seeded_url,
        """SELECT f.origin, (f.departure_at AT TIME ZONE a.tz)::date, count(DISTINCT f.destination)
           FROM flights f JOIN airports a ON a.code = f.origin
           GROUP BY 1, 2""",
    )
    destinations = {(origin, day): count for origin, day, count in rows}
    for hub in HUB_AIRPORTS:
        for offset in range(DAYS):
            assert destinations.get((hub, DST_START + timedelta(days=offset)), 0) >= 3, hub


async def test_departures_keep_their_local_time_when_the_clocks_change(seeded_url: str) -> None:
    scheduled = {service.flight_number: service.departure_local for service in daily_services()}
    rows = await fetch(
        seeded_url,
        """SELECT f.flight_number, f.origin, f.departure_at, (f.departure_at AT TIME ZONE a.tz)::time
           FROM flights f JOIN airports a ON a.code = f.origin ORDER BY f.departure_at""",
    )
    for flight_number, _, _, local_time in rows:
        assert local_time == scheduled[flight_number]
    # So in UTC a London departure leaves an hour earlier on the second day (GMT, then BST).
    london = [(number, departure_at) for number, origin, departure_at, _ in rows if origin == "LHR"]
    first_day, second_day = london[0][1], next(at for number, at in london[1:] if number == london[0][0])
    assert second_day - first_day == timedelta(hours=23)


async def test_arrival_is_departure_plus_block_time(seeded_url: str) -> None:
    rows = await fetch(seeded_url, "SELECT flight_number, arrival_at - departure_at FROM flights")
    durations = {service.flight_number: service.duration for service in daily_services()}
    for flight_number, duration in rows:
        assert duration == durations[flight_number]
        assert duration.total_seconds() % 300 == 0
    # JFK-LHR is about seven and a half hours.
    assert timedelta(hours=6, minutes=30) < durations["BA101"] < timedelta(hours=8, minutes=30)


async def test_short_hauls_get_narrow_bodies_and_long_hauls_wide_bodies(seeded_url: str) -> None:
    rows = await fetch(
        seeded_url,
        """SELECT DISTINCT f.origin || '-' || f.destination, f.aircraft,
                  bool_or(s.cabin IN ('PREMIUM_ECONOMY', 'FIRST')) OVER (PARTITION BY f.id)
           FROM flights f JOIN seats s ON s.flight_id = f.id
           WHERE (f.origin, f.destination) IN (('LHR', 'CDG'), ('JFK', 'LHR'), ('LAX', 'SYD'))""",
    )
    kinds = {(route, aircraft): wide for route, aircraft, wide in rows}
    assert all(not wide for (route, _), wide in kinds.items() if route == "LHR-CDG")
    assert all(wide for (route, _), wide in kinds.items() if route in ("JFK-LHR", "LAX-SYD"))
    assert ("LAX-SYD", "A380-800") in kinds


async def test_fare_buckets_share_out_exactly_the_cabin_seat_map(seeded_url: str) -> None:
    mismatches = await fetch(
        seeded_url,
        """WITH buckets AS (
               SELECT flight_id, cabin, sum(seats_total) AS sold, count(*) AS classes,
                      bool_and(seats_available = seats_total) AS untouched, bool_or(refundable) AS has_refundable
               FROM flight_prices GROUP BY 1, 2),
           seat_map AS (SELECT flight_id, cabin, count(*) AS seats FROM seats GROUP BY 1, 2)
           SELECT * FROM buckets b FULL JOIN seat_map m USING (flight_id, cabin)
           WHERE b.sold IS DISTINCT FROM m.seats OR b.classes NOT BETWEEN 2 AND 3 OR NOT b.untouched
              OR NOT b.has_refundable""",
    )
    assert mismatches == []
    [(flights_without_fares,)] = await fetch(
        seeded_url,
        "SELECT count(*) FROM flights f WHERE NOT EXISTS (SELECT 1 FROM flight_prices p WHERE p.flight_id = f.id)",
    )
    assert flights_without_fares == 0


async def test_dearer_fare_classes_cost_more(seeded_url: str) -> None:
    rows = await fetch(
        seeded_url,
        """SELECT p.fare_class, p.price_amount FROM flight_prices p
           WHERE p.flight_id = (SELECT min(id) FROM flights WHERE flight_number = 'BA101')""",
    )
    prices = dict(rows)
    assert prices["K"] < prices["M"] < prices["Y"] < prices["W"] < prices["J"] < prices["F"]


async def test_yen_fares_are_whole_yen_not_hundredths(seeded_url: str) -> None:
    rows = await fetch(
        seeded_url,
        """SELECT f.airline_code, p.currency, p.price_amount FROM flight_prices p JOIN flights f ON f.id = p.flight_id
           WHERE f.origin = 'SIN' AND f.destination = 'HND' AND p.fare_class = 'K'""",
    )
    fares = {airline: (currency, amount) for airline, currency, amount in rows}
    yen_currency, yen = fares["NH"]
    dollar_currency, cents = fares["SQ"]
    assert (yen_currency, dollar_currency) == ("JPY", "SGD")
    # A 5,300 km economy saver: tens of thousands of yen, hundreds of Singapore dollars (tens of thousands of cents).
    assert 30_000 <= yen <= 200_000
    assert 30_000 <= cents <= 200_000
    assert yen % 100 == 0


async def test_seat_maps_have_valid_unique_numbers_and_features(seeded_url: str) -> None:
    rows = await fetch(
        seeded_url,
        """SELECT f.id, f.aircraft, s.seat_no, s.row_no, s.cabin, s.features
           FROM seats s JOIN flights f ON f.id = s.flight_id
           WHERE f.id IN (SELECT DISTINCT ON (aircraft) id FROM flights ORDER BY aircraft, id)""",
    )
    assert {aircraft for _, aircraft, *_ in rows} >= {"A320", "B777-300ER", "A380-800"}
    numbers: set[tuple[int, str]] = set()
    for flight_id, aircraft, seat_no, row_no, cabin, features in rows:
        match = re.fullmatch(r"([0-9]{1,2})([A-HJK])", seat_no)
        assert match, seat_no
        assert int(match[1]) == row_no
        assert (flight_id, seat_no) not in numbers
        numbers.add((flight_id, seat_no))
        letter = match[2]
        if letter in "AK" or (aircraft == "A320" and letter == "F"):
            assert "WINDOW" in features, (aircraft, seat_no)
        if aircraft == "B777-300ER" and cabin == "ECONOMY":
            expected = {"A": "WINDOW", "B": "MIDDLE", "C": "AISLE", "D": "AISLE", "E": "MIDDLE"}
            expected |= {"F": "MIDDLE", "G": "AISLE", "H": "AISLE", "J": "MIDDLE", "K": "WINDOW"}
            assert expected[letter] in features, seat_no
        if aircraft == "A320" and cabin == "ECONOMY":
            assert {"A": "WINDOW", "B": "MIDDLE", "C": "AISLE", "D": "AISLE", "E": "MIDDLE", "F": "WINDOW"}[
                letter
            ] in features
    # Cabins come front to back with row numbers running on, and the exit rows have the legroom.
    cabins_by_row = {(aircraft, row_no): cabin for _, aircraft, _, row_no, cabin, _ in rows}
    assert cabins_by_row[("A380-800", 1)] == "FIRST"
    assert cabins_by_row[("A380-800", 60)] == "ECONOMY"
    exit_seats = [features for *_, features in rows if "EXIT_ROW" in features]
    assert exit_seats
    assert all("EXTRA_LEGROOM" in features for features in exit_seats)


async def test_seeding_twice_adds_nothing(database_url: str) -> None:
    first = await seed_reference_and_flights(database_url, days=1, start=DST_START)
    counts = await table_counts(database_url)
    second = await seed_reference_and_flights(database_url, days=1, start=DST_START)
    assert first.flights > 0
    assert (second.airlines, second.airports, second.flights, second.fares, second.seats) == (0, 0, 0, 0, 0)
    assert await table_counts(database_url) == counts
    # A longer range only adds the missing day.
    third = await seed_reference_and_flights(database_url, days=2, start=DST_START)
    assert third.flights == first.flights


async def test_ids_keep_counting_after_the_seed(database_url: str) -> None:
    assert not await is_seeded(database_url)
    await seed_reference_and_flights(database_url, days=1, start=DST_START)
    assert await is_seeded(database_url)
    [(new_id, highest_seeded)] = await fetch(
        database_url,
        """WITH new AS (
               INSERT INTO flights
                   (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)
               VALUES ('BA', 'BA9999', 'LHR', 'JFK', '2026-05-01 10:00Z', '2026-05-01 18:00Z', 'A350-900')
               RETURNING id)
           SELECT (SELECT id FROM new), (SELECT max(id) FROM flights)""",
    )
    assert new_id > highest_seeded
    await fetch(
        database_url,
        """WITH fare AS (INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,
                                                    seats_available) VALUES (%(id)s, 'ECONOMY', 'K', 100, 'GBP', 1, 1)
                         RETURNING id),
                seat AS (INSERT INTO seats (flight_id, seat_no, cabin, row_no) VALUES (%(id)s, '1A', 'ECONOMY', 1)
                         RETURNING seat_no)
           SELECT (SELECT id FROM fare), (SELECT seat_no FROM seat)""",
        {"id": new_id},
    )


async def test_a_failure_leaves_nothing_behind(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_seats(*_: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(loader, "_copy_seats", broken_seats)
    with pytest.raises(RuntimeError, match="disk full"):
        await seed_reference_and_flights(database_url, days=1, start=DST_START)
    assert await table_counts(database_url) == (0, 0, 0, 0, 0)


async def test_progress_is_reported_per_task(database_url: str) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.totals: dict[str, int] = {}
            self.done: dict[str, int] = {}

        def start(self, task: str, total: int) -> None:
            self.totals[task] = total

        def advance(self, task: str, amount: int = 1) -> None:
            self.done[task] = self.done.get(task, 0) + amount

    recorder = Recorder()
    summary = await seed_reference_and_flights(database_url, days=1, start=DST_START, progress=recorder)
    assert recorder.totals == recorder.done
    assert recorder.totals["seats"] == summary.seats
    assert set(recorder.totals) == {"airports", "flights", "fares", "seats"}


def test_the_timetable_is_deterministic() -> None:
    once = [(f.service.flight_number, f.departure_at, f.fares) for f in planned_flights(DST_START, 3)]
    again = [(f.service.flight_number, f.departure_at, f.fares) for f in planned_flights(DST_START, 3)]
    assert once == again
    numbers = [service.flight_number for service in daily_services()]
    assert len(numbers) == len(set(numbers))


def test_autumn_clock_change_moves_utc_departures_not_local_ones() -> None:
    # Europe goes back to winter time in the night to Sunday 25 October 2026.
    flights = [f for f in planned_flights(date(2026, 10, 24), 2) if f.service.origin.code in ("LHR", "CDG")]
    by_number: dict[str, list[Any]] = {}
    for flight in flights:
        local = flight.departure_at.astimezone(ZoneInfo(flight.service.origin.tz))
        assert local.time() == flight.service.departure_local
        by_number.setdefault(flight.service.flight_number, []).append(flight.departure_at)
    assert all(second - first == timedelta(hours=25) for first, second in by_number.values())
