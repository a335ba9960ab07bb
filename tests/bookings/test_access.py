"""Who sees and changes which booking: every booking route against callers who may not (BOLA), each role's list,
and manage-my-booking by PNR and last name.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.users.schemas import Role
from tests.bookings.conftest import (
    BOOKINGS,
    Account,
    MakeAccount,
    SmallFlight,
    add_small_flight,
    adult,
    booking_request,
    fare_seats,
    rows,
)


async def _book(client: httpx.AsyncClient, account: Account, flight: SmallFlight, **fields: Any) -> dict[str, Any]:
    response = await client.post(BOOKINGS, json=booking_request(flight, **fields), headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def booking(client: httpx.AsyncClient, customer: Account, flight: SmallFlight) -> dict[str, Any]:
    return await _book(client, customer, flight, fare_class="Y")


ROUTES = [
    ("GET", "", None),
    ("PATCH", "", {"contact_phone": "+44 20 7946 0000"}),
    ("DELETE", "", None),
]


@pytest.mark.parametrize(("method", "suffix", "body"), ROUTES, ids=[method for method, _, _ in ROUTES])
async def test_another_customer_cannot_see_or_touch_a_booking(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    booking: dict[str, Any],
    other_customer: Account,
    flight: SmallFlight,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    response = await client.request(
        method, f"{BOOKINGS}/{booking['id']}{suffix}", json=body, headers=other_customer.headers
    )

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    [stored] = await rows(pool, "SELECT status, contact_phone FROM bookings WHERE id = %s", booking["id"])
    assert stored == {"status": "PENDING_PAYMENT", "contact_phone": None}
    assert await fare_seats(pool, flight.id) == flight.y_seats - 1


@pytest.mark.parametrize(("method", "suffix", "body"), ROUTES, ids=[method for method, _, _ in ROUTES])
async def test_an_unknown_booking_answers_like_a_hidden_one(
    client: httpx.AsyncClient, customer: Account, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    response = await client.request(method, f"{BOOKINGS}/{unknown}{suffix}", json=body, headers=customer.headers)
    assert response.status_code == 404


async def test_a_malformed_booking_id_is_a_422_naming_it(client: httpx.AsyncClient, customer: Account) -> None:
    response = await client.get(f"{BOOKINGS}/not-a-uuid", headers=customer.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "id"


async def test_anonymous_callers_see_no_bookings(client: httpx.AsyncClient, booking: dict[str, Any]) -> None:
    assert (await client.get(BOOKINGS)).status_code == 401
    assert (await client.get(f"{BOOKINGS}/{booking['id']}")).status_code == 401


async def test_each_role_lists_what_it_may_see(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    make_account: MakeAccount,
    customer: Account,
    other_customer: Account,
    agent: Account,
    flight: SmallFlight,
) -> None:
    american = await add_small_flight(pool, number="AA9002", airline="AA")
    own = await _book(client, customer, flight)
    others = await _book(client, other_customer, american)
    made_by_agent = await _book(client, agent, american, customer_id=customer.id)
    ba_agent = await make_account(Role.AIRLINE_AGENT)
    owner = await make_account(Role.BUSINESS_OWNER)
    admin = await make_account(Role.ADMIN)

    async def listed(account: Account, query: str = "") -> list[str]:
        response = await client.get(f"{BOOKINGS}{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return sorted(item["id"] for item in response.json()["items"])

    everything = sorted([own["id"], others["id"], made_by_agent["id"]])
    assert await listed(customer) == sorted([own["id"], made_by_agent["id"]])
    assert await listed(other_customer) == [others["id"]]
    assert await listed(agent) == [made_by_agent["id"]]
    assert await listed(ba_agent) == [own["id"]]  # BA's flight only
    assert await listed(owner) == everything
    assert await listed(admin) == everything
    assert await listed(admin, f"?flight_id={american.id}") == sorted([others["id"], made_by_agent["id"]])
    assert await listed(admin, "?status=CANCELLED") == []
    day = american.departure_at.date().isoformat()
    assert await listed(admin, f"?date={day}&page_size=1") != []
    page = (await client.get(f"{BOOKINGS}?page_size=2&page=2", headers=admin.headers)).json()
    assert (page["total"], page["page"], page["page_size"], len(page["items"])) == (3, 2, 2, 1)


async def test_agents_and_airlines_reach_only_their_own(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    make_account: MakeAccount,
    agent: Account,
    customer: Account,
    flight: SmallFlight,
) -> None:
    other_agent = await make_account(Role.TRAVEL_AGENT)
    american = await add_small_flight(pool, number="AA9003", airline="AA")
    on_american = await _book(client, agent, american, customer_id=customer.id)
    ba_agent = await make_account(Role.AIRLINE_AGENT)

    assert (await client.get(f"{BOOKINGS}/{on_american['id']}", headers=other_agent.headers)).status_code == 404
    assert (await client.get(f"{BOOKINGS}/{on_american['id']}", headers=ba_agent.headers)).status_code == 404
    assert (await client.delete(f"{BOOKINGS}/{on_american['id']}", headers=ba_agent.headers)).status_code == 404
    assert (await client.get(f"{BOOKINGS}/{on_american['id']}", headers=agent.headers)).status_code == 200


async def test_a_business_owner_reads_bookings_but_cannot_change_them(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_account: MakeAccount, booking: dict[str, Any]
) -> None:
    owner = await make_account(Role.BUSINESS_OWNER)
    url = f"{BOOKINGS}/{booking['id']}"

    assert (await client.get(url, headers=owner.headers)).status_code == 200
    assert (await client.delete(url, headers=owner.headers)).status_code == 403
    patched = await client.patch(url, json={"contact_phone": "+1 212 555 0100"}, headers=owner.headers)
    assert patched.status_code == 403
    [stored] = await rows(pool, "SELECT status, contact_phone FROM bookings WHERE id = %s", booking["id"])
    assert stored == {"status": "PENDING_PAYMENT", "contact_phone": None}


async def test_manage_my_booking_needs_the_pnr_and_a_passengers_last_name(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight
) -> None:
    booking = await _book(client, customer, flight, passengers=[adult("Zoë", "van der Berg")])
    pnr = booking["pnr"]

    found = await client.get(f"{BOOKINGS}/pnr/{pnr.lower()}?last_name=VAN%20DER%20BERG")
    wrong_name = await client.get(f"{BOOKINGS}/pnr/{pnr}?last_name=Smith")
    other_pnr = await client.get(f"{BOOKINGS}/pnr/{'A' if pnr[0] != 'A' else 'B'}{pnr[1:]}?last_name=van der Berg")
    no_name = await client.get(f"{BOOKINGS}/pnr/{pnr}")
    bad_pnr = await client.get(f"{BOOKINGS}/pnr/ILO01X?last_name=van der Berg")

    assert found.status_code == 200
    assert found.json()["id"] == booking["id"]
    assert wrong_name.status_code == other_pnr.status_code == 404
    assert wrong_name.json()["detail"] == other_pnr.json()["detail"]
    assert no_name.status_code == 422
    assert no_name.json()["errors"][0]["field"] == "last_name"
    assert bad_pnr.status_code == 422
    assert bad_pnr.json()["errors"][0]["field"] == "pnr"


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Müller", "muller"),
        ("Müller", "MULLER"),
        ("Müller", "Müller"),
        ("Müller", "MÜLLER"),
        ("Muller", "Müller"),
        ("Ødegaard", "odegaard"),
        ("Ødegaard", "ØDEGAARD"),
        ("Odegaard", "Ødegaard"),
        ("Straße", "strasse"),
        ("Nguyễn", "nguyen"),
    ],
)
async def test_manage_my_booking_ignores_accents_and_case_in_the_last_name(
    client: httpx.AsyncClient, customer: Account, flight: SmallFlight, stored: str, asked: str
) -> None:
    booking = await _book(client, customer, flight, passengers=[adult("Ann", stored)])

    found = await client.get(f"{BOOKINGS}/pnr/{booking['pnr']}", params={"last_name": asked})
    other = await client.get(f"{BOOKINGS}/pnr/{booking['pnr']}", params={"last_name": asked + "x"})

    assert found.status_code == 200, found.text
    assert found.json()["id"] == booking["id"]
    assert other.status_code == 404
