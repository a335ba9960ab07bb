"""``GET /flights/search`` refuses bad queries with a 422 problem naming the parameter, and reads good ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from core_api.flights.schemas import Cabin, SearchQuery
from core_api.flights.search_routes import parse_search_query
from core_api.web.errors import ValidationFailed

SEARCH = "/api/v1/flights/search"


def later(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


async def problem_fields(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get(SEARCH, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    return [error["field"] for error in body["errors"]]


VALID = {"origin": "JFK", "destination": "LHR"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"destination": "LHR"}, "origin"),
        ({"origin": "JFK"}, "destination"),
        ({"origin": "JF", "destination": "LHR"}, "origin"),
        ({"origin": "JFK1", "destination": "LHR"}, "origin"),
        ({"origin": "J-K", "destination": "LHR"}, "origin"),
        ({"origin": "JFK", "destination": "L1R"}, "destination"),
        ({"origin": "JFK", "destination": "jfk"}, "destination"),
        ({**VALID, "adults": "abc"}, "adults"),
        ({**VALID, "adults": "-1"}, "adults"),
        ({**VALID, "adults": "0"}, "adults"),
        ({**VALID, "adults": "1000"}, "adults"),
        ({**VALID, "adults": "1.5"}, "adults"),
        ({**VALID, "adults": "99999999999999999999999"}, "adults"),
        ({**VALID, "children": "9"}, "children"),
        ({**VALID, "children": "-2"}, "children"),
        ({**VALID, "adults": "5", "children": "5"}, "children"),
        ({**VALID, "adults": "1", "infants": "2"}, "infants"),
        ({**VALID, "infants": "x"}, "infants"),
        ({**VALID, "cabin": "LUXURY"}, "cabin"),
        ({**VALID, "sort": "cheapest"}, "sort"),
        ({**VALID, "max_price": "-5"}, "max_price"),
        ({**VALID, "max_price": "12.50"}, "max_price"),
        ({**VALID, "max_price": "1" * 30}, "max_price"),
        ({**VALID, "airline": "BAW"}, "airline"),
        ({**VALID, "airline": "B-"}, "airline"),
    ],
)
async def test_a_bad_parameter_is_named(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    assert await problem_fields(client, date=later(2), **params) == [field]


@pytest.mark.parametrize(
    "value", ["", "2026-02-30", "2026-13-01", "tomorrow", "20260203", "2026-2-3", "2026-02-03T10:00"]
)
async def test_a_malformed_date_is_named(client: httpx.AsyncClient, value: str) -> None:
    params = {**VALID, "date": value} if value else VALID
    assert await problem_fields(client, **params) == ["date"]


async def test_past_and_far_dates_are_refused(client: httpx.AsyncClient) -> None:
    assert await problem_fields(client, **VALID, date=later(-2)) == ["date"]
    assert await problem_fields(client, **VALID, date=later(400)) == ["date"]


async def test_unknown_airports_are_named(client: httpx.AsyncClient) -> None:
    # Well-formed codes that no airport has.
    assert await problem_fields(client, origin="QQQ", destination="LHR", date=later(2)) == ["origin"]
    assert await problem_fields(client, origin="JFK", destination="ZZQ", date=later(2)) == ["destination"]


async def test_every_bad_parameter_is_named_at_once(client: httpx.AsyncClient) -> None:
    fields = await problem_fields(client, origin="JFK", destination="JFK", date="soon", adults="abc", cabin="X")
    assert fields == ["destination", "date", "adults", "cabin"]


async def test_a_good_query_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.get(
        SEARCH, params={"origin": "jfk", "destination": "lhr", "date": later(2), "cabin": "economy", "sort": "Duration"}
    )
    assert response.status_code == 200, response.text
    assert {offer["cabin"] for offer in response.json()["offers"]} == {"ECONOMY"}


def test_the_query_is_normalised() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    query = parse_search_query(
        origin=" jfk",
        destination="Lhr",
        day="2026-03-20",
        adults="2",
        children="1",
        infants="",
        cabin="premium_economy",
        sort=None,
        max_price="150000",
        airline="ba",
        now=now,
    )
    assert query == SearchQuery(
        origin="JFK",
        destination="LHR",
        date=date(2026, 3, 20),
        adults=2,
        children=1,
        infants=0,
        cabin=Cabin.PREMIUM_ECONOMY,
        sort="price",
        max_price=150000,
        airline="BA",
    )


@pytest.mark.parametrize(
    ("now", "day", "allowed"),
    [
        # 03:00 UTC on 10 March: it is still 9 March in Hawaii and at UTC-12, so the 9th is bookable, the 8th not.
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), "2026-03-09", True),
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), "2026-03-08", False),
        # 13:00 UTC: the 10th has begun everywhere (it is 01:00 on the 10th at UTC-12).
        (datetime(2026, 3, 10, 13, 0, tzinfo=UTC), "2026-03-09", False),
        # 361 days after today (at UTC+14) is the last bookable day.
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), (date(2026, 3, 10) + timedelta(days=361)).isoformat(), True),
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), (date(2026, 3, 10) + timedelta(days=362)).isoformat(), False),
    ],
)
def test_the_date_window_is_today_anywhere_to_361_days(now: datetime, day: str, allowed: bool) -> None:
    def parse() -> SearchQuery:
        return parse_search_query(origin="JFK", destination="LHR", day=day, now=now)

    if allowed:
        assert parse().date == date.fromisoformat(day)
    else:
        with pytest.raises(ValidationFailed) as caught:
            parse()
        assert [error.field for error in caught.value.errors or []] == ["date"]
