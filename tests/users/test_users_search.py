"""Listing users: search, filters, pagination bounds, and the statistics."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.users.conftest import Account, MakeUser


@pytest.fixture
async def directory(make_user: MakeUser, admin: Account) -> dict[str, str]:
    """A few users with searchable names, on top of the admin; name → id."""
    people = {
        "John Smith": ("john.smith@example.com", Role.CUSTOMER),
        "Jane Smithers": ("jane@smithers.example.org", Role.TRAVEL_AGENT),
        "Ana Ölmez": ("ana.olmez@example.com", Role.CUSTOMER),
        "Bob Builder": ("bob+agent@example.com", Role.AIRLINE_AGENT),
        "Mary-Ann O'Neil": ("mary@example.net", Role.BUSINESS_OWNER),
    }
    ids = {}
    for name, (email, role) in people.items():
        ids[name] = str((await make_user(role, email=email, full_name=name)).id)
    return ids


async def names(client: httpx.AsyncClient, admin: Account, **params: object) -> list[str]:
    response = await client.get("/api/v1/users", params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    return [user["full_name"] for user in response.json()["items"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("smith", {"John Smith", "Jane Smithers"}),
        ("SMI", {"John Smith", "Jane Smithers"}),
        ("john smi", {"John Smith"}),
        ("john.smith@example.com", {"John Smith"}),
        ("smithers.example", {"Jane Smithers"}),
        ("example.net", {"Mary-Ann O'Neil"}),
        ("ann", {"Mary-Ann O'Neil"}),
        ("o'neil", {"Mary-Ann O'Neil"}),
        ("ölmez", {"Ana Ölmez"}),
        ("olmez", {"Ana Ölmez"}),
        ("OLMEZ", {"Ana Ölmez"}),
        ("bob+agent", {"Bob Builder"}),
        ("mith", set()),
        ("%", set()),
        ("zzz", set()),
    ],
)
async def test_search_matches_word_prefixes_of_name_and_email(
    client: httpx.AsyncClient, admin: Account, directory: dict[str, str], q: str, expected: set[str]
) -> None:
    assert set(await names(client, admin, q=q)) == expected


async def test_blank_search_lists_everyone(client: httpx.AsyncClient, admin: Account, directory: dict) -> None:
    assert len(await names(client, admin, q="  ")) == len(directory) + 1


async def test_filters_combine(client: httpx.AsyncClient, admin: Account, directory: dict[str, str]) -> None:
    assert await names(client, admin, role="CUSTOMER") == ["Ana Ölmez", "John Smith"]
    assert await names(client, admin, role="ADMIN") == [admin.user.full_name]
    assert await names(client, admin, role="CUSTOMER", q="smith") == ["John Smith"]
    await client.put(f"/api/v1/users/{directory['John Smith']}", json={"is_active": False}, headers=admin.headers)
    assert await names(client, admin, role="CUSTOMER", is_active="true") == ["Ana Ölmez"]
    assert await names(client, admin, is_active="false") == ["John Smith"]
    assert await names(client, admin, is_active="false", q="jane") == []


async def test_deleted_users_are_not_listed(client: httpx.AsyncClient, admin: Account, directory: dict) -> None:
    await client.delete(f"/api/v1/users/{directory['John Smith']}", headers=admin.headers)
    assert "John Smith" not in await names(client, admin)
    assert await names(client, admin, q="deleted") == []
    response = await client.get("/api/v1/users", headers=admin.headers)
    assert response.json()["total"] == len(directory)


async def test_pagination_is_stable_and_counts_everything(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_user: MakeUser, admin: Account
) -> None:
    for number in range(24):
        await make_user(Role.CUSTOMER, email=f"page{number}@example.com", full_name=f"Pager {number:02}")
    # Give half of them the same creation time, so the order has to fall back to the id.
    async with pool.connection() as conn:
        await conn.execute("UPDATE users SET created_at = '2026-01-01T00:00:00Z' WHERE full_name < 'Pager 12'")

    def get(**params: object) -> Awaitable[httpx.Response]:
        return client.get("/api/v1/users", params={"q": "pager", **params}, headers=admin.headers)

    first = (await get(page_size=10)).json()
    assert (first["total"], first["page"], first["page_size"], len(first["items"])) == (24, 1, 10, 10)
    second = (await get(page_size=10, page=2)).json()
    third = (await get(page_size=10, page=3)).json()
    assert len(second["items"]) == 10
    assert len(third["items"]) == 4
    beyond = (await get(page_size=10, page=4)).json()
    assert (beyond["items"], beyond["total"]) == ([], 24)

    listed = [user["id"] for page in (first, second, third) for user in page["items"]]
    assert len(set(listed)) == 24
    everything = (await get(page_size=100)).json()["items"]
    assert [user["id"] for user in everything] == listed
    keys = [(user["created_at"], user["id"]) for user in everything]
    assert [created for created, _ in keys] == sorted((created for created, _ in keys), reverse=True)
    tied = [user_id for created, user_id in keys if created.startswith("2026-01-01")]
    assert tied == sorted(tied)
    # The default page size is 20.
    default = (await client.get("/api/v1/users", headers=admin.headers)).json()
    assert (default["page"], default["page_size"], len(default["items"]), default["total"]) == (1, 20, 20, 25)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 1000}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": 10**30}, "page"),
        ({"role": "PILOT"}, "role"),
        ({"role": "customer"}, "role"),
        ({"is_active": "maybe"}, "is_active"),
        ({"q": "x" * 10_000}, "q"),
    ],
)
async def test_bad_list_parameters_name_the_field(
    client: httpx.AsyncClient, admin: Account, params: dict, field: str
) -> None:
    response = await client.get("/api/v1/users", params=params, headers=admin.headers)
    assert response.status_code in (400, 422), response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [error["field"] for error in problem["errors"]]


async def test_stats_match_what_was_created(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_user: MakeUser, admin: Account, business_owner: Account
) -> None:
    customers = [await make_user(Role.CUSTOMER) for _ in range(3)]
    await make_user(Role.TRAVEL_AGENT)
    await make_user(Role.AIRLINE_AGENT)
    await client.put(f"/api/v1/users/{customers[0].id}", json={"is_active": False}, headers=admin.headers)
    await client.delete(f"/api/v1/users/{customers[1].id}", headers=admin.headers)
    today = datetime.now(UTC).date()
    # Two old accounts: one 10 days ago, one before the window.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE users SET created_at = %s WHERE id = %s", (datetime.now(UTC) - timedelta(days=10), customers[2].id)
        )
        await conn.execute("UPDATE users SET created_at = now() - interval '45 days' WHERE role = 'TRAVEL_AGENT'")

    response = await client.get("/api/v1/users/stats", headers=business_owner.headers)
    assert response.status_code == 200
    stats = response.json()
    assert (stats["total"], stats["active"], stats["inactive"], stats["deleted"]) == (6, 5, 1, 1)
    assert stats["by_role"] == {
        "CUSTOMER": 2, "TRAVEL_AGENT": 1, "AIRLINE_AGENT": 1, "BUSINESS_OWNER": 1, "ADMIN": 1,
    }  # fmt: skip
    days = stats["new_users_per_day"]
    assert len(days) == 30
    assert days[-1]["date"] == today.isoformat()
    assert days[0]["date"] == (today - timedelta(days=29)).isoformat()
    by_date = {day["date"]: day["count"] for day in days}
    # Created today: admin, business owner, two customers (one since deleted, still a sign-up), the airline agent.
    assert by_date[today.isoformat()] == 5
    assert by_date[(today - timedelta(days=10)).isoformat()] == 1
    assert sum(by_date.values()) == 6


@pytest.mark.parametrize("q", ["muller", "Müller", "MULLER", "MÜLLER", "odegaard", "Ødegaard", "søren", "soren"])
async def test_search_ignores_accents_both_ways(
    client: httpx.AsyncClient, admin: Account, make_user: MakeUser, q: str
) -> None:
    for name, email in (("Søren Müller", "sm@example.com"), ("Soren Muller", "plain@example.com"),
                        ("Ødegaard", "mo@example.com"), ("Odegaard", "od@example.com")):  # fmt: skip
        await make_user(Role.CUSTOMER, email=email, full_name=name)

    found = set(await names(client, admin, q=q))

    expected = {"odegaard": {"Ødegaard", "Odegaard"}, "muller": {"Søren Müller", "Soren Muller"},
                "soren": {"Søren Müller", "Soren Muller"}}  # fmt: skip
    plain = q.lower().replace("ü", "u").replace("ø", "o")
    assert found == expected[plain]
