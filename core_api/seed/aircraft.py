"""Aircraft of the demo seed: cabin layouts, the seat map each layout produces, and which type an airline flies.

A layout lists its cabins front to back; row numbers continue from one cabin into the next. Within a row the
seat letters are grouped between aisles (``("ABC", "DEFG", "HJK")`` is 3-4-3); ``I`` is never used because it
reads like ``1``. Every seat gets its features: ``WINDOW`` at either end of the row, ``AISLE`` beside an aisle,
``MIDDLE`` otherwise, ``EXIT_ROW`` and ``EXTRA_LEGROOM`` on exit rows, ``EXTRA_LEGROOM`` on the first row of the
economy and premium economy cabins (a bulkhead).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AIRCRAFT",
    "FLEETS",
    "LONG_HAUL_KM",
    "ULTRA_LONG_HAUL_KM",
    "Aircraft",
    "Cabin",
    "CabinLayout",
    "Fleet",
    "SeatTemplate",
    "aircraft_for",
]


class Cabin(StrEnum):
    FIRST = "FIRST"
    BUSINESS = "BUSINESS"
    PREMIUM_ECONOMY = "PREMIUM_ECONOMY"
    ECONOMY = "ECONOMY"


# Cabins whose first row sits behind a bulkhead with room to stretch; in the front cabins every seat has room.
_BULKHEAD_LEGROOM_CABINS = frozenset({Cabin.PREMIUM_ECONOMY, Cabin.ECONOMY})


@dataclass(frozen=True)
class CabinLayout:
    cabin: Cabin
    rows: int
    # Seat letters between aisles, window side to window side.
    seat_groups: tuple[str, ...]
    # Absolute row numbers (as printed on the boarding pass) of the exit rows inside this cabin.
    exit_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class SeatTemplate:
    """One seat of a layout, copied into ``seats`` for every flight the aircraft operates."""

    seat_no: str
    cabin: Cabin
    row_no: int
    features: tuple[str, ...]


def _seat_features(letter: str, groups: tuple[str, ...]) -> list[str]:
    features = []
    if letter in (groups[0][0], groups[-1][-1]):
        features.append("WINDOW")
    for index, group in enumerate(groups):
        if letter not in group:
            continue
        beside_left_aisle = index > 0 and letter == group[0]
        beside_right_aisle = index < len(groups) - 1 and letter == group[-1]
        if beside_left_aisle or beside_right_aisle:
            features.append("AISLE")
    if not features:
        features.append("MIDDLE")
    return features


@dataclass(frozen=True)
class Aircraft:
    name: str
    wide_body: bool
    cabins: tuple[CabinLayout, ...]
    seats: tuple[SeatTemplate, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seats", tuple(self._seat_map()))

    def _seat_map(self) -> list[SeatTemplate]:
        seats: list[SeatTemplate] = []
        first_row = 1
        for layout in self.cabins:
            last_row = first_row + layout.rows - 1
            stray_exits = [row for row in layout.exit_rows if not first_row <= row <= last_row]
            if stray_exits or last_row > 99:
                raise ValueError(f"{self.name} {layout.cabin}: rows {first_row}-{last_row}, exits {layout.exit_rows}")
            letters = "".join(layout.seat_groups)
            if "I" in letters or len(set(letters)) != len(letters) or not letters.isupper():
                raise ValueError(f"{self.name} {layout.cabin}: bad seat letters {layout.seat_groups}")
            for row in range(first_row, last_row + 1):
                row_features: list[str] = []
                if row in layout.exit_rows:
                    row_features += ["EXIT_ROW", "EXTRA_LEGROOM"]
                elif row == first_row and layout.cabin in _BULKHEAD_LEGROOM_CABINS:
                    row_features.append("EXTRA_LEGROOM")
                for letter in letters:
                    features = _seat_features(letter, layout.seat_groups) + row_features
                    seats.append(SeatTemplate(f"{row}{letter}", layout.cabin, row, tuple(features)))
            first_row = last_row + 1
        return seats

    @functools.cached_property
    def seats_per_cabin(self) -> dict[Cabin, int]:
        counts: dict[Cabin, int] = {}
        for seat in self.seats:
            counts[seat.cabin] = counts.get(seat.cabin, 0) + 1
        return counts


_NARROW_BUSINESS = ("AC", "DF")
_NARROW_ECONOMY = ("ABC", "DEF")
_SUITE_1_2_1 = ("A", "EF", "K")
_PREMIUM_2_3_2 = ("AC", "DEF", "HK")
_PREMIUM_2_4_2 = ("AC", "DEFG", "HK")
_ECONOMY_3_3_3 = ("ABC", "DEF", "HJK")
_ECONOMY_3_4_3 = ("ABC", "DEFG", "HJK")

AIRCRAFT: dict[str, Aircraft] = {
    aircraft.name: aircraft
    for aircraft in (
        Aircraft(
            "A320",
            wide_body=False,
            cabins=(
                CabinLayout(Cabin.BUSINESS, 3, _NARROW_BUSINESS),
                CabinLayout(Cabin.ECONOMY, 27, _NARROW_ECONOMY, exit_rows=(12, 13)),
            ),
        ),
        Aircraft(
            "A321",
            wide_body=False,
            cabins=(
                CabinLayout(Cabin.BUSINESS, 4, _NARROW_BUSINESS),
                CabinLayout(Cabin.ECONOMY, 31, _NARROW_ECONOMY, exit_rows=(11, 25)),
            ),
        ),
        Aircraft(
            "B737-800",
            wide_body=False,
            cabins=(
                CabinLayout(Cabin.BUSINESS, 4, _NARROW_BUSINESS),
                CabinLayout(Cabin.ECONOMY, 26, _NARROW_ECONOMY, exit_rows=(14, 15)),
            ),
        ),
        Aircraft(
            "B787-9",
            wide_body=True,
            cabins=(
                CabinLayout(Cabin.BUSINESS, 8, _SUITE_1_2_1),
                CabinLayout(Cabin.PREMIUM_ECONOMY, 4, _PREMIUM_2_3_2),
                CabinLayout(Cabin.ECONOMY, 26, _ECONOMY_3_3_3, exit_rows=(27,)),
            ),
        ),
        Aircraft(
            "A350-900",
            wide_body=True,
            cabins=(
                CabinLayout(Cabin.BUSINESS, 10, _SUITE_1_2_1),
                CabinLayout(Cabin.PREMIUM_ECONOMY, 4, _PREMIUM_2_4_2),
                CabinLayout(Cabin.ECONOMY, 24, _ECONOMY_3_3_3, exit_rows=(28,)),
            ),
        ),
        Aircraft(
            "B777-300ER",
            wide_body=True,
            cabins=(
                CabinLayout(Cabin.FIRST, 2, _SUITE_1_2_1),
                CabinLayout(Cabin.BUSINESS, 10, _SUITE_1_2_1),
                CabinLayout(Cabin.PREMIUM_ECONOMY, 5, _PREMIUM_2_4_2),
                CabinLayout(Cabin.ECONOMY, 25, _ECONOMY_3_4_3, exit_rows=(31,)),
            ),
        ),
        Aircraft(
            "A380-800",
            wide_body=True,
            cabins=(
                CabinLayout(Cabin.FIRST, 3, _SUITE_1_2_1),
                CabinLayout(Cabin.BUSINESS, 12, _SUITE_1_2_1),
                CabinLayout(Cabin.PREMIUM_ECONOMY, 5, _PREMIUM_2_4_2),
                CabinLayout(Cabin.ECONOMY, 40, _ECONOMY_3_4_3, exit_rows=(21, 40)),
            ),
        ),
    )
}

# Beyond this great-circle distance a route gets a wide body; below it a narrow body (US transcon stays narrow).
LONG_HAUL_KM = 4500.0
# Beyond this an airline puts its flagship (largest) type on the route.
ULTRA_LONG_HAUL_KM = 9000.0


@dataclass(frozen=True)
class Fleet:
    narrow_body: str
    wide_body: str
    flagship: str


FLEETS: dict[str, Fleet] = {
    "AA": Fleet("A321", "B787-9", "B777-300ER"),
    "UA": Fleet("B737-800", "B787-9", "B777-300ER"),
    "DL": Fleet("A321", "A350-900", "A350-900"),
    "BA": Fleet("A320", "B777-300ER", "A380-800"),
    "AF": Fleet("A320", "A350-900", "B777-300ER"),
    "LH": Fleet("A321", "A350-900", "A380-800"),
    "KL": Fleet("B737-800", "B787-9", "B777-300ER"),
    "IB": Fleet("A320", "A350-900", "A350-900"),
    "EK": Fleet("B777-300ER", "B777-300ER", "A380-800"),
    "SQ": Fleet("B737-800", "A350-900", "A380-800"),
    "NH": Fleet("B737-800", "B787-9", "B777-300ER"),
    "QF": Fleet("B737-800", "B787-9", "A380-800"),
}


def aircraft_for(airline_code: str, distance_km: float) -> Aircraft:
    """The type an airline flies on a route of this length."""
    fleet = FLEETS[airline_code]
    if distance_km >= ULTRA_LONG_HAUL_KM:
        return AIRCRAFT[fleet.flagship]
    if distance_km >= LONG_HAUL_KM:
        return AIRCRAFT[fleet.wide_body]
    return AIRCRAFT[fleet.narrow_body]
