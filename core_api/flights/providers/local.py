"""The ``local`` search provider: our own inventory in PostgreSQL, as offers for the whole party.

One query (``search.sql`` / ``local_offers``) finds the bookable fare buckets of the route on the searched day —
the *local* date at the origin airport — with enough seats for the party; each row becomes one offer.

Pricing for the party: every adult and every child takes a seat and pays the bucket's fare; an infant (under two,
on an adult's lap) takes no seat and pays 10 % of that fare, rounded half up to a whole minor unit. So two adults,
one child and one infant on a GBP 412.00 fare pay 3 * 41200 + 4120 = 127720.

:func:`refresh_local_offers` re-reads the seats of offers served from the search cache, so that a bucket sold out
since the search was cached is not offered again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from core_api.flights.schemas import Cabin, Money, Offer, Segment
from core_api.storage.db import load_queries, struct_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core_api.flights.schemas import SearchQuery
    from core_api.storage.db import DbPool

__all__ = ["SOURCE", "LocalProvider", "infant_fare", "offer_id", "party_price", "refresh_local_offers"]

SOURCE = "local"

QUERIES = load_queries("search")


class _FareRow(msgspec.Struct, frozen=True):
    """One bookable fare bucket of a flight, as ``local_offers`` returns it."""

    flight_id: int
    flight_number: str
    airline: str
    origin: str
    destination: str
    departure_at: datetime
    arrival_at: datetime
    origin_tz: str
    destination_tz: str
    cabin: Cabin
    fare_class: str
    fare_amount: int
    currency: str
    seats_available: int


class _BucketSeats(msgspec.Struct, frozen=True):
    flight_id: int
    cabin: Cabin
    fare_class: str
    seats_available: int


def infant_fare(fare: int) -> int:
    """An infant's price: 10 % of the fare in minor units, rounded half up."""
    return (fare + 5) // 10


def party_price(fare: int, *, adults: int, children: int, infants: int) -> int:
    """The whole party's price in minor units: a full fare per seat (adults, children), 10 % per infant."""
    return fare * (adults + children) + infant_fare(fare) * infants


def offer_id(flight_id: int, cabin: Cabin | str, fare_class: str) -> str:
    """Stable across searches: the same bucket is always the same offer (for caching, de-duplication, booking)."""
    return f"{SOURCE}:{flight_id}:{cabin}:{fare_class}"


def _offer(row: _FareRow, query: SearchQuery) -> Offer:
    segment = Segment(
        flight_number=row.flight_number,
        airline=row.airline,
        origin=row.origin,
        destination=row.destination,
        departure_at=row.departure_at.astimezone(UTC),
        arrival_at=row.arrival_at.astimezone(UTC),
        duration_minutes=(row.arrival_at - row.departure_at) // timedelta(minutes=1),
        origin_tz=row.origin_tz,
        destination_tz=row.destination_tz,
    )
    amount = party_price(row.fare_amount, adults=query.adults, children=query.children, infants=query.infants)
    return Offer(
        offer_id=offer_id(row.flight_id, row.cabin, row.fare_class),
        source=SOURCE,
        flight_id=row.flight_id,
        segments=[segment],
        cabin=row.cabin,
        fare_class=row.fare_class,
        price=Money(amount=amount, currency=row.currency),
        seats_left=row.seats_available,
    )


class LocalProvider:
    """Offers from our own flights; one indexed query per search."""

    name = SOURCE

    def __init__(self, pool: DbPool, *, timeout_seconds: float) -> None:
        self.pool = pool
        self.timeout_seconds = timeout_seconds

    async def search(self, query: SearchQuery) -> list[Offer]:
        params = {
            "origin": query.origin,
            "destination": query.destination,
            "day": query.date,
            "seats_needed": query.seats_needed,
            "cabin": query.cabin.value if query.cabin else None,
            "airline": query.airline,
        }
        async with self.pool.connection() as conn, conn.cursor(row_factory=struct_row(_FareRow)) as cursor:
            await cursor.execute(QUERIES["local_offers"], params)
            rows = await cursor.fetchall()
        return [_offer(row, query) for row in rows]


async def refresh_local_offers(pool: DbPool, offers: Sequence[Offer], seats_needed: int) -> list[Offer]:
    """``offers`` with the local ones brought up to date: ``seats_left`` as it is now, and gone when the bucket no
    longer has ``seats_needed`` seats or its flight can no longer be booked (cancelled, departed). One query for the
    buckets of the offers' flights (by primary key, a few rows each); offers of other sources pass unchanged.
    """
    local = [offer for offer in offers if offer.source == SOURCE and offer.flight_id is not None]
    if not local:
        return list(offers)
    flight_ids = sorted({offer.flight_id for offer in local if offer.flight_id is not None})
    async with pool.connection() as conn, conn.cursor(row_factory=struct_row(_BucketSeats)) as cursor:
        await cursor.execute(QUERIES["current_availability"], {"flight_ids": flight_ids})
        rows = await cursor.fetchall()
    seats = {(row.flight_id, row.cabin, row.fare_class): row.seats_available for row in rows}
    fresh: list[Offer] = []
    for offer in offers:
        if offer.source != SOURCE or offer.flight_id is None:
            fresh.append(offer)
            continue
        left = seats.get((offer.flight_id, offer.cabin, offer.fare_class), 0)
        if left >= seats_needed:
            fresh.append(offer if left == offer.seats_left else msgspec.structs.replace(offer, seats_left=left))
    return fresh
