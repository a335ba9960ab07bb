"""Reference data of the demo seed: the twelve airlines, their home currencies, and the world's airports.

Airports come from the ``airportsdata`` package (IATA-keyed). Rows the ``airports`` table would reject (a code
that is not three upper-case letters, a country that is not two, a time zone ``zoneinfo`` does not know, a
coordinate out of range) are skipped here rather than failing the whole seed.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import airportsdata

__all__ = [
    "AIRLINES",
    "AIRLINES_BY_CODE",
    "CURRENCY_EXPONENTS",
    "HUB_AIRPORTS",
    "Airline",
    "Airport",
    "great_circle_km",
    "load_airports",
]


@dataclass(frozen=True)
class Airline:
    code: str
    name: str
    country: str
    # Fares are filed in the airline's home currency; the airlines table has no column for it.
    currency: str


AIRLINES: tuple[Airline, ...] = (
    Airline("AA", "American Airlines", "US", "USD"),
    Airline("UA", "United Airlines", "US", "USD"),
    Airline("DL", "Delta Air Lines", "US", "USD"),
    Airline("BA", "British Airways", "GB", "GBP"),
    Airline("AF", "Air France", "FR", "EUR"),
    Airline("LH", "Lufthansa", "DE", "EUR"),
    Airline("KL", "KLM Royal Dutch Airlines", "NL", "EUR"),
    Airline("IB", "Iberia", "ES", "EUR"),
    Airline("EK", "Emirates", "AE", "AED"),
    Airline("SQ", "Singapore Airlines", "SG", "SGD"),
    Airline("NH", "All Nippon Airways", "JP", "JPY"),
    Airline("QF", "Qantas", "AU", "AUD"),
)
AIRLINES_BY_CODE: dict[str, Airline] = {airline.code: airline for airline in AIRLINES}

# ISO 4217 minor-unit exponents: an amount of 1 in the database is 10**-exponent of the currency. The yen has none.
CURRENCY_EXPONENTS: dict[str, int] = {"USD": 2, "GBP": 2, "EUR": 2, "AED": 2, "SGD": 2, "JPY": 0, "AUD": 2}

# The airports the demo schedule connects.
HUB_AIRPORTS: tuple[str, ...] = (
    "JFK",
    "LAX",
    "SFO",
    "ORD",
    "LHR",
    "CDG",
    "FRA",
    "AMS",
    "MAD",
    "DXB",
    "SIN",
    "HND",
    "SYD",
)

_AIRPORT_CODE = re.compile(r"^[A-Z]{3}$")
_COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
_EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Airport:
    code: str
    name: str
    city: str
    country: str
    tz: str
    latitude: float
    longitude: float


@functools.cache
def _is_known_zone(name: str) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _accepted(code: str, row: dict[str, object]) -> Airport | None:
    """The airport as the table's checks accept it, or None when a check would reject the row."""
    country, tz, name = row.get("country"), row.get("tz"), row.get("name")
    latitude, longitude = row.get("lat"), row.get("lon")
    if not (_AIRPORT_CODE.match(code) and isinstance(country, str) and _COUNTRY_CODE.match(country)):
        return None
    if not (isinstance(tz, str) and _is_known_zone(tz) and isinstance(name, str) and name):
        return None
    if not (isinstance(latitude, float | int) and isinstance(longitude, float | int)):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    city = row.get("city")
    return Airport(code, name, city if isinstance(city, str) else "", country, tz, float(latitude), float(longitude))


@functools.cache
def load_airports() -> dict[str, Airport]:
    """Every airportsdata airport with an IATA code that the ``airports`` table accepts, keyed by code."""
    airports: dict[str, Airport] = {}
    for code, row in sorted(airportsdata.load("IATA").items()):
        airport = _accepted(code, dict(row))
        if airport is not None:
            airports[code] = airport
    missing = [code for code in HUB_AIRPORTS if code not in airports]
    if missing:
        raise RuntimeError(f"airportsdata lacks the hub airports {missing}")
    return airports


def great_circle_km(origin: Airport, destination: Airport) -> float:
    """Haversine distance between two airports."""
    lat1, lon1 = math.radians(origin.latitude), math.radians(origin.longitude)
    lat2, lon2 = math.radians(destination.latitude), math.radians(destination.longitude)
    half_chord = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(half_chord))
