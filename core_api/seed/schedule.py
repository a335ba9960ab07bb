"""The demo timetable: which airlines fly which hub routes, their flight numbers, times, aircraft and fares.

Each route is flown daily in both directions by every airline listed for it. A service (one airline, one
direction) keeps its flight number and its local departure time at the origin every day, so the UTC time moves
when the origin's clocks change. Block time comes from the great-circle distance. Fares are filed per cabin in
fare buckets that split the cabin's seats, priced in minor units of the airline's home currency and varied a
little from day to day; everything is derived from fixed seeds, so two runs produce the same rows.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core_api.seed.aircraft import LONG_HAUL_KM, Aircraft, Cabin, aircraft_for
from core_api.seed.reference import (
    AIRLINES_BY_CODE,
    CURRENCY_EXPONENTS,
    Airline,
    Airport,
    great_circle_km,
    load_airports,
)

__all__ = [
    "FARE_CLASSES",
    "ROUTES",
    "FareBucket",
    "FareClass",
    "PlannedFlight",
    "Service",
    "daily_services",
    "fare_buckets",
    "planned_flights",
]

# Hub pairs and the airlines flying them, most important first. Flight numbers are handed out in this order,
# so append new routes at the end to keep existing numbers stable.
ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("JFK", "LHR", ("BA", "AA", "DL")),
    ("JFK", "LAX", ("AA", "DL", "UA")),
    ("LHR", "CDG", ("AF", "BA")),
    ("SIN", "HND", ("SQ", "NH")),
    ("JFK", "SFO", ("UA", "DL")),
    ("JFK", "ORD", ("AA", "UA")),
    ("JFK", "CDG", ("AF", "DL")),
    ("JFK", "FRA", ("LH",)),
    ("JFK", "AMS", ("KL", "DL")),
    ("JFK", "MAD", ("IB",)),
    ("JFK", "DXB", ("EK",)),
    ("LAX", "SFO", ("UA", "AA")),
    ("LAX", "ORD", ("AA", "UA")),
    ("LAX", "LHR", ("BA",)),
    ("LAX", "HND", ("NH",)),
    ("LAX", "SYD", ("QF",)),
    ("SFO", "ORD", ("UA",)),
    ("SFO", "LHR", ("BA",)),
    ("SFO", "HND", ("NH",)),
    ("SFO", "SIN", ("SQ",)),
    ("ORD", "LHR", ("AA", "BA")),
    ("ORD", "FRA", ("LH",)),
    ("LHR", "FRA", ("LH", "BA")),
    ("LHR", "AMS", ("KL", "BA")),
    ("LHR", "MAD", ("IB", "BA")),
    ("LHR", "DXB", ("EK", "BA")),
    ("LHR", "SIN", ("SQ", "BA")),
    ("LHR", "HND", ("NH", "BA")),
    ("CDG", "FRA", ("AF", "LH")),
    ("CDG", "AMS", ("AF", "KL")),
    ("CDG", "MAD", ("AF", "IB")),
    ("CDG", "DXB", ("EK", "AF")),
    ("CDG", "HND", ("AF",)),
    ("CDG", "SIN", ("SQ",)),
    ("FRA", "AMS", ("LH", "KL")),
    ("FRA", "MAD", ("LH", "IB")),
    ("FRA", "DXB", ("EK",)),
    ("FRA", "SIN", ("SQ", "LH")),
    ("FRA", "HND", ("LH", "NH")),
    ("AMS", "MAD", ("KL", "IB")),
    ("AMS", "DXB", ("EK",)),
    ("AMS", "SIN", ("KL", "SQ")),
    ("MAD", "DXB", ("EK",)),
    ("DXB", "SIN", ("EK", "SQ")),
    ("DXB", "HND", ("EK",)),
    ("DXB", "SYD", ("EK", "QF")),
    ("SIN", "SYD", ("QF", "SQ")),
    ("HND", "SYD", ("QF", "NH")),
)

# Each airline's flight numbers start here; a route gets an odd number outbound and the next even one back.
_FIRST_FLIGHT_NUMBER = 101
# Cruise speed used for block times, plus taxi and climb, the result rounded to five minutes.
_BLOCK_SPEED_KMH = 800.0
_TAXI_MINUTES = 30
# Local departure slots: 06:00-22:55 in five-minute steps. Nothing leaves between 01:00 and 04:00, so no departure
# ever falls into a spring-forward gap or an autumn repeated hour, in any zone.
_DAY_SLOTS = tuple(time(hour, minute) for hour in range(6, 23) for minute in range(0, 60, 5))
# Eastbound across the Atlantic the flights leave in the evening and land next morning, as the real ones do.
_EVENING_SLOTS = tuple(slot for slot in _DAY_SLOTS if slot >= time(17, 0))
_ATLANTIC_LONGITUDE = -30.0


@dataclass(frozen=True)
class Service:
    """One daily flight: an airline's flight number on a route in one direction."""

    airline: Airline
    flight_number: str
    origin: Airport
    destination: Airport
    distance_km: float
    departure_local: time
    duration: timedelta
    aircraft: Aircraft


def _block_time(distance_km: float) -> timedelta:
    minutes = distance_km / _BLOCK_SPEED_KMH * 60 + _TAXI_MINUTES
    return timedelta(minutes=5 * round(minutes / 5))


def _departure_slot(flight_number: str, origin: Airport, destination: Airport, distance_km: float) -> time:
    eastbound_atlantic = (
        distance_km >= LONG_HAUL_KM
        and origin.longitude < _ATLANTIC_LONGITUDE < destination.longitude
        and destination.longitude < 60  # Europe and the Gulf, not a trans-Pacific hop
    )
    # Seeded by the flight number alone, so a service keeps its slot whatever else changes in the timetable.
    chooser = random.Random(f"slot/{flight_number}")  # noqa: S311 - demo timetable, not security
    return chooser.choice(_EVENING_SLOTS if eastbound_atlantic else _DAY_SLOTS)


@functools.cache
def daily_services() -> tuple[Service, ...]:
    """Every service of the timetable, both directions of every route for every airline on it."""
    airports = load_airports()
    next_number = dict.fromkeys(AIRLINES_BY_CODE, _FIRST_FLIGHT_NUMBER)
    services: list[Service] = []
    for origin_code, destination_code, airline_codes in ROUTES:
        outbound_origin, outbound_destination = airports[origin_code], airports[destination_code]
        distance_km = great_circle_km(outbound_origin, outbound_destination)
        for code in airline_codes:
            number = next_number[code]
            next_number[code] += 2
            legs = (
                (outbound_origin, outbound_destination, number),
                (outbound_destination, outbound_origin, number + 1),
            )
            for origin, destination, leg_number in legs:
                flight_number = f"{code}{leg_number}"
                services.append(
                    Service(
                        airline=AIRLINES_BY_CODE[code],
                        flight_number=flight_number,
                        origin=origin,
                        destination=destination,
                        distance_km=distance_km,
                        departure_local=_departure_slot(flight_number, origin, destination, distance_km),
                        duration=_block_time(distance_km),
                        aircraft=aircraft_for(code, distance_km),
                    )
                )
    return tuple(services)


@dataclass(frozen=True)
class FareClass:
    cabin: Cabin
    code: str
    # Part of the cabin's seats sold in this bucket; rounding leftovers go to the cabin's cheapest bucket.
    seat_share: float
    # Price relative to the cabin's cheapest bucket.
    price_factor: float
    refundable: bool


# Cheapest bucket of each cabin first.
FARE_CLASSES: dict[Cabin, tuple[FareClass, ...]] = {
    Cabin.ECONOMY: (
        FareClass(Cabin.ECONOMY, "K", 0.50, 1.00, refundable=False),  # saver
        FareClass(Cabin.ECONOMY, "M", 0.35, 1.45, refundable=False),  # standard
        FareClass(Cabin.ECONOMY, "Y", 0.15, 2.60, refundable=True),  # flexible
    ),
    Cabin.PREMIUM_ECONOMY: (
        FareClass(Cabin.PREMIUM_ECONOMY, "E", 0.60, 1.00, refundable=False),
        FareClass(Cabin.PREMIUM_ECONOMY, "W", 0.40, 1.40, refundable=True),
    ),
    Cabin.BUSINESS: (
        FareClass(Cabin.BUSINESS, "D", 0.40, 1.00, refundable=False),
        FareClass(Cabin.BUSINESS, "C", 0.40, 1.30, refundable=False),
        FareClass(Cabin.BUSINESS, "J", 0.20, 1.80, refundable=True),
    ),
    Cabin.FIRST: (
        FareClass(Cabin.FIRST, "A", 0.50, 1.00, refundable=False),
        FareClass(Cabin.FIRST, "F", 0.50, 1.40, refundable=True),
    ),
}

# Cheapest economy fare in US dollars: a fixed part plus a rate per great-circle kilometre.
_ECONOMY_BASE_USD = 49.0
_ECONOMY_USD_PER_KM = 0.075
# Cheapest fare of a cabin relative to the cheapest economy fare, on narrow and on wide bodies.
_CABIN_FACTORS_NARROW = {Cabin.ECONOMY: 1.0, Cabin.BUSINESS: 2.6}
_CABIN_FACTORS_WIDE = {Cabin.ECONOMY: 1.0, Cabin.PREMIUM_ECONOMY: 1.9, Cabin.BUSINESS: 4.8, Cabin.FIRST: 8.5}
# Rough units of each currency per US dollar: only for plausible-looking demo prices.
_UNITS_PER_USD = {"USD": 1.0, "GBP": 0.79, "EUR": 0.92, "AED": 3.67, "SGD": 1.35, "JPY": 150.0, "AUD": 1.52}
# Fares end in whole units (GBP 412, not GBP 411.73); yen fares in hundreds.
_PRICE_STEP_MAJOR = {"JPY": 100}
# Day-to-day demand variation of all of a flight's fares together.
_DAILY_VARIATION = (0.90, 1.15)


@dataclass(frozen=True)
class FareBucket:
    cabin: Cabin
    fare_class: str
    price_amount: int
    currency: str
    seats_total: int
    refundable: bool


def _split_seats(seats: int, classes: tuple[FareClass, ...]) -> list[int]:
    shares = [int(seats * fare_class.seat_share) for fare_class in classes]
    shares[0] += seats - sum(shares)
    return shares


def _minor_units(usd: float, currency: str) -> int:
    step = _PRICE_STEP_MAJOR.get(currency, 1)
    major = max(step, step * round(usd * _UNITS_PER_USD[currency] / step))
    return major * 10 ** CURRENCY_EXPONENTS[currency]


def fare_buckets(service: Service, day: date) -> tuple[FareBucket, ...]:
    """The fare buckets of ``service`` departing on ``day`` (local date at the origin)."""
    # Seeded per flight and day, so a day's prices do not depend on which range was seeded.
    demand = random.Random(f"fare/{service.flight_number}/{day.isoformat()}")  # noqa: S311 - demo prices
    variation = demand.uniform(*_DAILY_VARIATION)
    economy_usd = (_ECONOMY_BASE_USD + _ECONOMY_USD_PER_KM * service.distance_km) * variation
    cabin_factors = _CABIN_FACTORS_WIDE if service.aircraft.wide_body else _CABIN_FACTORS_NARROW
    currency = service.airline.currency
    buckets: list[FareBucket] = []
    for cabin, seats in service.aircraft.seats_per_cabin.items():
        classes = FARE_CLASSES[cabin]
        for fare_class, seats_total in zip(classes, _split_seats(seats, classes), strict=True):
            price = _minor_units(economy_usd * cabin_factors[cabin] * fare_class.price_factor, currency)
            buckets.append(FareBucket(cabin, fare_class.code, price, currency, seats_total, fare_class.refundable))
    return tuple(buckets)


@dataclass(frozen=True)
class PlannedFlight:
    service: Service
    departure_at: datetime
    arrival_at: datetime
    fares: tuple[FareBucket, ...]


def planned_flights(start: date, days: int) -> Iterator[PlannedFlight]:
    """Every service on each local date from ``start`` for ``days`` days, times in UTC."""
    for offset in range(days):
        day = start + timedelta(days=offset)
        for service in daily_services():
            local = datetime.combine(day, service.departure_local, tzinfo=ZoneInfo(service.origin.tz))
            departure_at = local.astimezone(UTC)
            yield PlannedFlight(service, departure_at, departure_at + service.duration, fare_buckets(service, day))
