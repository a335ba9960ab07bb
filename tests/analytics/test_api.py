"""``/analytics``: who may read it, the parameters it refuses, and the figures it reports from the marts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from core_api.settings import Settings
from core_api.users.schemas import Role
from pipelines.run import refresh
from tests.support.accounts import MakeAccount
from tests.support.warehouse_rows import KNOWN, add_booking, insert_known_rows

REPORTS = ["dashboard", "bookings", "revenue", "users", "flights", "realtime"]
MARCH = {"from": "2026-03-01", "to": "2026-03-02"}


async def get(client: httpx.AsyncClient, headers: dict[str, str], report: str, **params: str) -> httpx.Response:
    return await client.get(f"/api/v1/analytics/{report}", headers=headers, params=params)


async def test_only_business_owners_and_admins_read_analytics(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, admin = await make_account(Role.BUSINESS_OWNER), await make_account(Role.ADMIN)
    customer, agent = await make_account(Role.CUSTOMER), await make_account(Role.TRAVEL_AGENT)
    for report in REPORTS:
        assert (await client.get(f"/api/v1/analytics/{report}")).status_code == 401
        for refused in (customer, agent):
            response = await get(client, refused.headers, report)
            assert response.status_code == 403, (report, response.text)
        for reader in (owner, admin):
            response = await get(client, reader.headers, report)
            assert response.status_code == 200, (report, response.text)
    # Before the first refresh the reports are empty and say so.
    body = (await get(client, owner.headers, "bookings")).json()
    assert body["freshness"] == {"snapshot": None, "as_of": None, "built_at": None, "age_seconds": None}
    assert body["totals"] == {"bookings": 0, "seats": 0, "confirmed": 0, "cancelled": 0, "expired": 0}


BAD_PARAMETERS = [
    ({"tz": "Mars/Olympus_Mons"}, "tz"),
    ({"from": "2026-03-05", "to": "2026-03-01"}, "from"),
    ({"from": "2020-01-01", "to": "2026-03-01"}, "to"),
    ({"from": "yesterday"}, "from"),
    ({"interval": "hour"}, "interval"),
    ({"compare": "last_year"}, "compare"),
]


async def test_bad_parameters_are_422_naming_the_field(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    owner = await make_account(Role.BUSINESS_OWNER)
    for params, field in BAD_PARAMETERS:
        response = await get(client, owner.headers, "revenue", **params)
        assert response.status_code == 422, (params, response.text)
        body = response.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert [error["field"] for error in body["errors"]] == [field], params


async def test_realtime_refuses_a_bad_window(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    owner = await make_account(Role.BUSINESS_OWNER)
    for params, field in (({"minutes": "0"}, "minutes"), ({"tz": "Nowhere"}, "tz")):
        response = await get(client, owner.headers, "realtime", **params)
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == [field]


@pytest.fixture
async def refreshed(settings: Settings, database_url: str) -> dict[str, int]:
    ids = insert_known_rows(database_url)
    # Dagster runs its own event loop machinery: keep it off the test's loop.
    assert (await asyncio.to_thread(refresh, settings)).success
    return ids


async def test_reports_carry_the_marts_figures_in_the_zone_asked_for(
    client: httpx.AsyncClient, make_account: MakeAccount, refreshed: dict[str, int]
) -> None:
    owner = await make_account(Role.BUSINESS_OWNER)
    revenue = (await get(client, owner.headers, "revenue", tz="Asia/Tokyo", **MARCH)).json()
    assert revenue["freshness"]["snapshot"] == "warehouse-1.duckdb"
    assert revenue["freshness"]["age_seconds"] >= 0
    figures = {"currency": "USD", "gross": 150_000, "refunded": 30_000, "net": 120_000, "payments": 2, "refunds": 1}
    assert revenue["totals"] == [figures]
    assert revenue["series"] == [{**figures, "bucket": "2026-03-02"}]
    assert revenue["by_airline"] == [
        {"airline_code": "FD", "currency": "USD", "gross": 150_000, "refunded": 30_000, "net": 120_000}
    ]

    utc = (await get(client, owner.headers, "bookings", compare="previous_period", **MARCH)).json()
    assert [(point["bucket"], point["bookings"]) for point in utc["series"]] == [("2026-03-01", 1), ("2026-03-02", 2)]
    assert utc["totals"] == {"bookings": 3, "seats": 4, "confirmed": 2, "cancelled": 1, "expired": 0}
    assert utc["previous_period"] == {"from": "2026-02-27", "to": "2026-02-28", "tz": "UTC", "interval": "day"}
    assert utc["previous"]["bookings"] == 0
    assert utc["growth"]["bookings"] is None
    assert utc["by_agent"] == [
        {
            "agent_id": KNOWN["agent"],
            "agent_name": "Arno Agent",
            "bookings": 1,
            "seats": 1,
            "confirmed": 1,
            "cancelled": 0,
        }
    ]
    assert utc["booked"] == [{"amount": 200_000, "currency": "USD"}]
    assert utc["top_routes"] == [{"origin": "JFK", "destination": "LHR", "bookings": 3, "seats": 4}]

    # 1 March alone against 28 February; then 2 March against 1 March: growth 1 -> 2 bookings is +100 %.
    second = (await get(client, owner.headers, "bookings", **{"from": "2026-03-02", "to": "2026-03-02"})).json()
    assert second["growth"]["bookings"] == 1.0
    assert "previous" not in second

    users = (await get(client, owner.headers, "users", **{"from": "2026-02-01", "to": "2026-03-31"})).json()
    assert users["totals"] == {"new_users": 3, "deleted_users": 1}
    assert users["total_users"] == 2
    flights = (await get(client, owner.headers, "flights", **{"from": "2026-03-10", "to": "2026-03-11"})).json()
    assert flights["totals"] == {
        "flights": 2,
        "seats_total": 150,
        "seats_sold": 3,
        "seats_taken": 3,
        "load_factor": 0.02,
    }
    assert flights["fullest"][0]["flight_number"] == "FD100"

    dashboard = (await get(client, owner.headers, "dashboard", tz="Asia/Tokyo", interval="week", **MARCH)).json()
    assert dashboard["bookings"]["bookings"] == 3
    assert dashboard["revenue"] == [figures]
    assert dashboard["funnel"] == {
        "searches": 0,
        "bookings": 3,
        "paid": 2,
        "search_to_booking": None,
        "booking_to_payment": 0.6667,
    }
    assert dashboard["cancellations"] == {
        "cancellations": 1,
        "cancelled_seats": 1,
        "refunds": 1,
        "refunded": [{"amount": 30_000, "currency": "USD"}],
    }
    assert dashboard["security_events"] == [{"event_type": "auth.login_failed", "events": 1}]


async def test_realtime_reads_postgresql_directly(
    client: httpx.AsyncClient, make_account: MakeAccount, database_url: str
) -> None:
    ids = insert_known_rows(database_url)
    owner = await make_account(Role.BUSINESS_OWNER)
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_booking(
            conn,
            "00000000-0000-4000-8000-0000000000b9",
            "AAAAA9",
            fare_id=ids["fare1"],
            flight_id=ids["f1"],
            created=datetime.now(UTC),
        )
    body: dict[str, Any] = (
        await get(client, owner.headers, "realtime", minutes="5", tz="Europe/Paris", compare="previous_period")
    ).json()
    assert body["minutes"] == 5
    assert len(body["series"]) == 5
    assert body["totals"]["bookings_created"] == 1
    assert body["totals"]["bookings_confirmed"] == 1
    assert body["previous"]["bookings_created"] == 0
    assert body["series"][-1]["minute"].endswith(("+01:00", "+02:00"))
