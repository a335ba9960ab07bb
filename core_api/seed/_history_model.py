"""The shapes the booking history is made of: what can be booked, when, what comes out, and PNRs.

Times are integer microseconds since the Unix epoch (see ``_history_audit``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from core_api.seed._history_people import SeededUser

__all__ = [
    "AuditEvent",
    "BookableFlight",
    "BookingPace",
    "Fare",
    "HistoryChunk",
    "PaidBooking",
    "PaymentHook",
    "PnrSequence",
    "booking_total",
]

_DAY_MICROS = 86_400_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_PNR_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_PNR_SPACE = len(_PNR_ALPHABET) ** 6
# A PNR is three pairs of characters; 961 pairs, looked up rather than divided out one character at a time.
_PNR_PAIRS = tuple(first + second for first in _PNR_ALPHABET for second in _PNR_ALPHABET)
_PNR_PAIR_COUNT = len(_PNR_PAIRS)


def booking_total(price: int, seated: int, infants: int) -> int:
    """Fare price per seated passenger, plus 10 % of it (rounded half up) per infant on a lap."""
    return price * seated + infants * ((price + 5) // 10)


class Fare(NamedTuple):
    """A fare bucket open for booking; ``position`` is its place in the generator's inventory lists.

    A named tuple rather than a frozen dataclass: hundreds of thousands are made, and these are made fastest.
    """

    position: int
    id: int
    cabin: str
    fare_class: str
    price: int
    currency: str
    seats_total: int
    refundable: bool


@dataclass(slots=True)
class BookableFlight:
    id: int
    departure_at: int
    fares: tuple[Fare, ...]
    # Running totals of the buckets' seats, for drawing a bucket in proportion to its size.
    seat_bounds: tuple[int, ...] = field(init=False)
    departure_ordinal: int = field(init=False)

    def __post_init__(self) -> None:
        self.seat_bounds = tuple(itertools.accumulate(fare.seats_total for fare in self.fares))
        self.departure_ordinal = _EPOCH_ORDINAL + self.departure_at // _DAY_MICROS

    @property
    def capacity(self) -> int:
        return self.seat_bounds[-1] if self.seat_bounds else 0


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """An audit row still to be chained; the JSON fields are jsonb texts."""

    occurred_at: int
    event_type: str
    actor_id: str | None
    actor_role: str | None
    entity: tuple[str, str]
    before: str | None = None
    after: str | None = None
    metadata: str = "{}"
    personal: tuple[bytes, dict[str, Any], tuple[str, ...]] | None = None
    """What the row keeps apart (see ``core_api.audit._personal``): salt, values by reference, the users concerned."""


@dataclass(frozen=True, slots=True)
class PaidBooking:
    """What the payment history of a confirmed booking is made from (see :data:`PaymentHook`)."""

    id: str
    payer: SeededUser
    amount: int
    currency: str
    refundable: bool
    created_at: int
    confirmed_at: int
    cancelled_at: int | None


# Called for every booking that was paid; returns the audit events of its payment (and refund), which join the
# chain in time order. ``history.payment_history`` is the one in use.
PaymentHook = Callable[[PaidBooking], Iterable[AuditEvent]]


@dataclass(frozen=True)
class BookingPace:
    """When bookings are made: from ``start`` until ``now``, about ``per_day`` a day, holds of ``hold``."""

    start: int
    now: int
    per_day: int
    hold: int


@dataclass
class HistoryChunk:
    """COPY text (``\\t``-separated lines) of a run of bookings and everything that happened meanwhile."""

    bookings: list[str] = field(default_factory=list)
    passengers: list[str] = field(default_factory=list)
    audit: list[str] = field(default_factory=list)
    personal: list[str] = field(default_factory=list)
    # The seal of this chunk's audit rows (COPY text of one audit_seals row), if any were chained.
    seal: str | None = None
    # Booking slots drawn (made or, rarely, not placed on any flight) — for the progress bar.
    slots: int = 0


class PnrSequence:
    """Distinct PNRs in a scrambled order: a keyed permutation of all 31⁶ codes, so no set of used ones is kept.

    A four-round Feistel network permutes the 30-bit numbers; walking the cycle until a number falls below 31⁶
    turns it into a permutation of the codes. ``taken`` holds PNRs already in the database, which are skipped.
    """

    _HALF_BITS = 15
    _HALF_MASK = (1 << 15) - 1

    def __init__(self, rng: random.Random, taken: Iterable[str] = ()) -> None:
        self._keys = tuple(rng.getrandbits(32) for _ in range(4))
        self._taken = frozenset(taken)
        self._counter = 0

    def _scramble(self, number: int) -> int:
        left, right = number >> self._HALF_BITS, number & self._HALF_MASK
        for key in self._keys:
            mixed = ((right * 0x9E3779B1) ^ key) * 0x85EBCA6B
            left, right = right, left ^ ((mixed >> 13) & self._HALF_MASK)
        return (left << self._HALF_BITS) | right

    def __next__(self) -> str:
        while True:
            if self._counter >= _PNR_SPACE:
                raise RuntimeError("every PNR is in use")
            number = self._scramble(self._counter)
            self._counter += 1
            while number >= _PNR_SPACE:
                number = self._scramble(number)
            high, low = divmod(number, _PNR_PAIR_COUNT)
            high, middle = divmod(high, _PNR_PAIR_COUNT)
            pnr = _PNR_PAIRS[high] + _PNR_PAIRS[middle] + _PNR_PAIRS[low]
            if pnr not in self._taken:
                return pnr

    def __iter__(self) -> PnrSequence:
        return self
