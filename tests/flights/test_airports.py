"""The airport lookup (``GET /flights/airports?q=``): ranked prefix search over code, city and name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


async def lookup(client: httpx.AsyncClient, q: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/flights/airports", params={"q": q, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.parametrize("q", ["lhr", "LHR", "Lhr", " lhr "])
async def test_exact_code_comes_first_in_any_case(client: httpx.AsyncClient, q: str) -> None:
    airports = await lookup(client, q)

    assert airports[0]["code"] == "LHR"
    assert airports[0] == {
        "code": "LHR",
        "name": "London Heathrow Airport",
        "city": "London",
        "country": "GB",
        "tz": "Europe/London",
        "latitude": pytest.approx(51.4706),
        "longitude": pytest.approx(-0.46194),
    }


async def test_code_prefixes_rank_before_city_and_name_prefixes(client: httpx.AsyncClient) -> None:
    airports = await lookup(client, "jf", limit=50)

    codes = [airport["code"] for airport in airports]
    code_matches = [code for code in codes if code.startswith("JF")]
    assert "JFK" in code_matches
    assert codes[: len(code_matches)] == code_matches, "every code match before any city or name match"


async def test_city_prefix_finds_the_london_airports(client: httpx.AsyncClient) -> None:
    airports = await lookup(client, "lon", limit=50)

    london = [airport["code"] for airport in airports if airport["city"] == "London"]
    assert {"LHR", "LGW", "LCY", "STN", "LTN"} <= set(london)
    # Cities that merely start with "lon" (Londrina, Long Beach) come after the exact city.
    assert [airport["code"] for airport in airports[: len(london)]] == london
    assert all(airport["city"].lower().startswith("lon") for airport in airports[: len(london)])


async def test_name_prefix_and_word_prefix(client: httpx.AsyncClient) -> None:
    kennedy = await lookup(client, "john f kennedy int")
    heathrow = await lookup(client, "heathrow")

    assert [airport["code"] for airport in kennedy] == ["JFK"]
    assert "LHR" in [airport["code"] for airport in heathrow], "a word of the name matches"


async def test_ranks_exact_code_then_prefixes_then_words(client: httpx.AsyncClient) -> None:
    # "par": PAR is not an airport code; PARx codes, then Paris and other "Par…" cities, then names.
    airports = await lookup(client, "par", limit=50)

    def rank(airport: dict[str, Any]) -> int:
        if airport["code"] == "PAR":
            return 0
        if airport["code"].startswith("PAR"):
            return 1
        if airport["city"].lower().startswith("par"):
            return 2
        if airport["name"].lower().startswith("par"):
            return 3
        return 4

    ranks = [rank(airport) for airport in airports]
    assert ranks == sorted(ranks)
    assert "CDG" in [airport["code"] for airport in airports]


async def test_limit_defaults_to_ten_and_caps_at_fifty(client: httpx.AsyncClient) -> None:
    assert len(await lookup(client, "a")) == 10
    assert len(await lookup(client, "a", limit=3)) == 3
    assert len(await lookup(client, "a", limit=50)) == 50


async def test_wildcards_are_taken_literally(client: httpx.AsyncClient) -> None:
    assert await lookup(client, "%") == []
    assert await lookup(client, "_") == []
    # As LIKE patterns these would match LHR; taken literally they match no code, city or name start.
    for q in ("_hr", "l_r", "l%"):
        assert "LHR" not in [airport["code"] for airport in await lookup(client, q, limit=50)]


async def test_no_match_is_an_empty_list(client: httpx.AsyncClient) -> None:
    assert await lookup(client, "zzzzqqq") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 65}, "q"),
        ({"q": "lon", "limit": 0}, "limit"),
        ({"q": "lon", "limit": 51}, "limit"),
        ({"q": "lon", "limit": "ten"}, "limit"),
    ],
)
async def test_bad_query_is_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/v1/flights/airports", params=params)

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert [error["field"] for error in body["errors"]] == [field]


@pytest.mark.parametrize(
    ("q", "code"),
    [
        # Stored without accents (airportsdata spells it "Zurich"), asked with them and without.
        ("zürich", "ZRH"),
        ("Zürich", "ZRH"),
        ("ZÜRICH", "ZRH"),
        ("zu\u0308rich", "ZRH"),
        ("zurich", "ZRH"),
        # Stored with them, asked without them and with.
        ("egilsstadir", "EGS"),
        ("EGILSSTAÐIR", "EGS"),
        ("Egilsstaðir", "EGS"),
        ("isafjordur", "IFJ"),
        ("ísafjörður", "IFJ"),
        ("hofn", "HFN"),
        # Word prefixes too.
        ("zürich air", "ZRH"),
        ("egilsstadir airp", "EGS"),
    ],
)
async def test_accents_and_case_do_not_matter(client: httpx.AsyncClient, q: str, code: str) -> None:
    assert code in [airport["code"] for airport in await lookup(client, q, limit=50)]
