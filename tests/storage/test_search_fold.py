"""``search_fold()`` (migration 0008): the accent- and case-folded form that lookups of people and places compare —
what it folds, that it is IMMUTABLE (so indexes may use it), and that the lookups built on it keep using their
indexes on tables large enough for the planner to choose.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core_api.storage.db import load_queries, transaction
from tests.conftest import cloned_database


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Zürich", "zurich"),
        ("zurich", "zurich"),
        ("ZÜRICH", "zurich"),
        ("Zu\u0308rich", "zurich"),  # decomposed: a u and a combining diaeresis
        ("Müller", "muller"),
        ("MULLER", "muller"),
        ("Ødegaard", "odegaard"),
        ("ØDEGAARD", "odegaard"),
        ("Straße", "strasse"),
        ("STRAẞE", "strasse"),
        ("Ærøskøbing", "aeroskobing"),
        ("Œuvre", "oeuvre"),
        ("Łódź", "lodz"),
        ("Đorđe Đoković", "dorde dokovic"),
        ("Þórshöfn", "thorshofn"),
        ("Egilsstaðir", "egilsstadir"),
        ("São Paulo", "sao paulo"),
        ("İstanbul", "istanbul"),
        ("Nguyễn Thị Minh Khai", "nguyen thi minh khai"),
        ("Brașov Țară", "brasov tara"),
        ("Dvořák", "dvorak"),
        ("Ĳsselmeer", "ijsselmeer"),
        ("O'Neil-Smith", "o'neil-smith"),
        ("東京", "東京"),
    ],
)
async def test_search_fold_drops_accents_and_case_both_ways(
    migrated: AsyncConnectionPool, text: str, folded: str
) -> None:
    async with migrated.connection() as conn:
        row = await (await conn.execute("SELECT search_fold(%s) AS folded", (text,))).fetchone()
    assert row is not None
    assert row["folded"] == folded


async def test_every_latin_letter_with_a_diacritic_folds_to_ascii(migrated: AsyncConnectionPool) -> None:
    """Each letter of Latin-1 Supplement, Latin Extended-A and Latin Extended Additional that decomposes into an
    ASCII letter and combining marks folds to that letter, lower-cased.
    """
    letters = [
        chr(code)
        for code in [*range(0xC0, 0x180), *range(0x1E00, 0x1F00)]
        if (parts := unicodedata.normalize("NFD", chr(code)))[0].isascii()
        and parts[0].isalpha()
        and len(parts) > 1
        and all(unicodedata.combining(part) for part in parts[1:])
    ]
    async with migrated.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT letter, search_fold(letter) AS folded FROM unnest(%s::text[]) AS letter", (letters,)
            )
        ).fetchall()
    wrong = {
        row["letter"]: row["folded"]
        for row in rows
        if row["folded"] != unicodedata.normalize("NFD", row["letter"])[0].lower()
    }
    assert len(rows) > 400
    assert wrong == {}


async def test_search_fold_is_immutable_strict_and_parallel_safe(migrated: AsyncConnectionPool) -> None:
    async with migrated.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT provolatile, proisstrict, proparallel FROM pg_proc WHERE proname = 'search_fold'"
            )
        ).fetchone()
    assert row == {"provolatile": "i", "proisstrict": True, "proparallel": "s"}


# The lookups keep using their indexes -------------------------------------------------------------------------

ROWS = 10_000
AIRPORTS = 10_000  # (three-letter codes run out at 26^3)
PNR_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


@pytest.fixture(scope="module")
async def migrated(postgres_url: str, template_database: str) -> AsyncIterator[AsyncConnectionPool]:
    """A migrated database of this module's own (its tests only read, or fill it once in ``crowded``)."""
    async with (
        cloned_database(postgres_url, template_database) as url,
        AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row}, min_size=1, max_size=2) as pool,
    ):
        yield pool


@pytest.fixture(scope="module")
async def crowded(migrated: AsyncConnectionPool) -> AsyncConnectionPool:
    """The module's database with 10 000 airports, users, bookings and passengers (a few with accents),
    analysed; built once, read by every test that asks for it.
    """
    await _fill(migrated, {"rows": ROWS, "airports": AIRPORTS, "alphabet": PNR_ALPHABET})
    return migrated


async def _fill(pool: AsyncConnectionPool, params: dict[str, Any]) -> None:
    async with transaction(pool) as tx:
        for statement in (
            """
            INSERT INTO airlines (code, name, country) VALUES ('ZZ', 'Test Air', 'CH')
            """,
            """
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude)
            SELECT c, 'Airport ' || n, 'City ' || n, 'CH', 'Europe/Zurich', 0, 0
            FROM (SELECT n, chr(65 + n / 676) || chr(65 + n / 26 %% 26) || chr(65 + n %% 26) AS c
                  FROM generate_series(0, %(airports)s - 1) AS n) AS a
            """,
            """
            INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES
                ('ZZR', 'Zürich Flughafen', 'Zürich', 'CH', 'Europe/Zurich', 47.46, 8.55),
                ('ZZS', 'Egilsstaðir Airport', 'Egilsstaðir', 'IS', 'Atlantic/Reykjavik', 65.28, -14.4)
            """,
            """
            INSERT INTO users (email, password_hash, full_name, role)
            SELECT 'user' || n || '@example.com', '!', 'Person ' || n, 'CUSTOMER'
            FROM generate_series(1, %(rows)s) AS n
            """,
            """
            INSERT INTO users (email, password_hash, full_name, role)
            VALUES ('jm@example.com', '!', 'Jürgen Müller', 'CUSTOMER')
            """,
            """
            INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)
            VALUES ('ZZ', 'ZZ1', 'ZZR', 'ZZS', now() + interval '1 day', now() + interval '1 day 3 hours', 'A320')
            """,
            """
            INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total,
                                       seats_available)
            SELECT id, 'ECONOMY', 'Y', 100, 'CHF', 100000, 100000 FROM flights
            """,
            """
            INSERT INTO bookings (pnr, flight_id, fare_id, cabin, fare_class, seat_count, total_amount, currency,
                                  contact_email, hold_expires_at)
            SELECT string_agg(substr(%(alphabet)s, (n / (31 ^ k)::int) %% 31 + 1, 1), '' ORDER BY k),
                   f.id, p.id, 'ECONOMY', 'Y', 1, 100, 'CHF', 'a@example.com', now() + interval '15 minutes'
            FROM generate_series(1, %(rows)s) AS n, generate_series(0, 5) AS k, flights AS f, flight_prices AS p
            GROUP BY n, f.id, p.id
            """,
            """
            INSERT INTO passengers (booking_id, flight_id, first_name, last_name, date_of_birth, type)
            SELECT b.id, b.flight_id, 'Ann', CASE WHEN row_number() OVER (ORDER BY b.pnr) = 1 THEN 'Müller'
                                                  ELSE 'Name' || row_number() OVER (ORDER BY b.pnr) END,
                   '1985-04-02', 'ADULT'
            FROM bookings AS b
            """,
        ):
            await tx.execute(statement, params)
    async with pool.connection() as conn:
        await conn.execute("ANALYZE airports, users, bookings, passengers")


def index_names(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        names = {plan["Index Name"]} if "Index Name" in plan else set()
        return names.union(*(index_names(value) for value in plan.values()))
    if isinstance(plan, list):
        return set().union(*(index_names(item) for item in plan))
    return set()


async def explain(pool: AsyncConnectionPool, query: str, params: dict[str, Any]) -> tuple[set[str], str]:
    async with pool.connection() as conn:
        row = await (await conn.execute("EXPLAIN (FORMAT JSON) " + query, params)).fetchone()
    assert row is not None
    plan = row["QUERY PLAN"]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return index_names(plan), json.dumps(plan)


async def test_the_airport_lookup_uses_the_folded_prefix_and_word_indexes(crowded: AsyncConnectionPool) -> None:
    params = {"q": "zur", "code": "ZUR", "code_pattern": "ZUR%", "pattern": "zür%", "words": True, "limit": 10}

    indexes, plan = await explain(crowded, load_queries("flights")["search_airports"], params)

    assert {"airports_city_prefix_idx", "airports_name_prefix_idx", "airports_search_idx"} <= indexes
    assert "Seq Scan" not in plan


async def test_the_users_search_uses_its_folded_word_index(crowded: AsyncConnectionPool) -> None:
    params = {"q": "muller", "role": None, "is_active": None, "limit": 20, "offset": 0}

    indexes, plan = await explain(crowded, load_queries("users")["search_users"], params)

    assert "users_search_idx" in indexes
    assert "Seq Scan" not in plan


async def test_manage_my_booking_uses_the_pnr_and_passenger_indexes(crowded: AsyncConnectionPool) -> None:
    indexes, plan = await explain(
        crowded, load_queries("bookings")["booking_by_pnr"], {"pnr": "AAAAAB", "last_name": "muller"}
    )

    assert "bookings_pnr_key" in indexes
    # The passenger is found by booking or by folded last name, whichever the planner finds cheaper; never scanned.
    assert indexes & {"passengers_booking_id_idx", "passengers_last_name_idx"}
    assert "Seq Scan" not in plan
    # A passenger looked up by folded last name alone finds the folded index too.
    indexes, plan = await explain(
        crowded,
        "SELECT id FROM passengers WHERE search_fold(last_name) = search_fold(%(name)s::text)",
        {"name": "MULLER"},
    )
    assert "passengers_last_name_idx" in indexes
    assert "Seq Scan" not in plan


async def test_the_folded_lookups_find_what_they_should_on_many_rows(crowded: AsyncConnectionPool) -> None:
    queries = load_queries("flights")
    async with crowded.connection() as conn:
        for q, code in (("zurich", "ZZR"), ("ZÜRICH FLUG", "ZZR"), ("egilsstadir", "ZZS"), ("Egilsstaðir", "ZZS")):
            params = {"q": q, "code": q.upper(), "code_pattern": q.upper() + "%", "pattern": q + "%",
                      "words": True, "limit": 10}  # fmt: skip
            rows = await (await conn.execute(queries["search_airports"], params)).fetchall()
            assert [row["code"] for row in rows][:1] == [code], q
        users = await (
            await conn.execute(
                load_queries("users")["search_users"],
                {"q": "jurgen MULLER", "role": None, "is_active": None, "limit": 20, "offset": 0},
            )
        ).fetchall()
        assert [user["full_name"] for user in users] == ["Jürgen Müller"]
