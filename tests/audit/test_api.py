"""``/audit``: who may call what, the keyset cursor, filters, timelines and histories, security events, the
verification report, retention, personal data erased with its user, and the backlog in metrics and health.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core_api.audit.schemas import SECURITY_EVENTS, EventType
from core_api.audit.sealer import seal_pending
from core_api.audit.service import SYSTEM, Actor, record
from core_api.storage.db import transaction
from core_api.users.schemas import Role
from tests.audit.conftest import AUDIT_ROUTES
from tests.support.accounts import Account, MakeAccount

LOGS = "/api/v1/audit/logs"


async def _all_pages(client: httpx.AsyncClient, admin: Account, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.get(
            LOGS, params={**params, **({"cursor": cursor} if cursor else {})}, headers=admin.headers
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.mark.parametrize(("method", "path"), AUDIT_ROUTES)
@pytest.mark.parametrize("role", [*Role, None], ids=[*(role.value for role in Role), "anonymous"])
async def test_roles_on_every_audit_route(
    client: httpx.AsyncClient, make_account: MakeAccount, method: str, path: str, role: Role | None
) -> None:
    caller = await make_account(role) if role is not None else None
    response = await client.request(method, path.format(user=uuid.uuid4()), headers=caller.headers if caller else {})
    if role is None:
        expected = 401
    elif role is Role.ADMIN or (role is Role.BUSINESS_OWNER and path.endswith("/statistics")):
        expected = 200
    else:
        expected = 403
    assert response.status_code == expected, response.text


async def test_the_cursor_pages_through_ten_thousand_rows_without_repeats_or_gaps(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account
) -> None:
    async with pool.connection() as conn:
        # Seven rows share each second, so the keyset must break ties by id.
        await conn.execute(
            "INSERT INTO audit_logs (occurred_at, event_type, entity_type, entity_id)"
            " SELECT timestamptz '2026-01-01 00:00:00+00' + (n / 7) * interval '1 second', 'booking.updated',"
            " 'booking', 'b' || n FROM generate_series(1, 10000) AS n"
        )
        expected = [
            row["id"]
            for row in await (
                await conn.execute(
                    "SELECT id FROM audit_logs WHERE event_type = 'booking.updated' ORDER BY occurred_at DESC, id DESC"
                )
            ).fetchall()
        ]
    items = await _all_pages(client, admin, {"event_type": "booking.updated", "limit": 100})
    assert [item["id"] for item in items] == expected
    assert len(expected) == 10_000


async def test_filters_combine(client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    base = datetime(2026, 3, 1, tzinfo=UTC)
    async with transaction(pool) as tx:
        for hour, (who, event, entity) in enumerate(
            [
                (ann, EventType.BOOKING_CREATED, ("booking", "b1")),
                (ann, EventType.BOOKING_UPDATED, ("booking", "b1")),
                (bob, EventType.BOOKING_CREATED, ("booking", "b2")),
                (ann, EventType.BOOKING_CANCELLED, ("booking", "b2")),
                (bob, EventType.FLIGHT_DELAYED, ("flight", "9")),
            ]
        ):
            await record(tx, event, Actor(id=who, role="CUSTOMER"), entity, occurred_at=base + timedelta(hours=hour))

    async def ids(**params: str) -> list[tuple[str, str | None]]:
        response = await client.get(LOGS, params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        return [(item["event_type"], item["entity_id"]) for item in response.json()["items"]]

    assert await ids(actor=str(ann)) == [
        ("booking.cancelled", "b2"),
        ("booking.updated", "b1"),
        ("booking.created", "b1"),
    ]
    assert await ids(actor=str(ann), event_type="booking.created") == [("booking.created", "b1")]
    assert await ids(entity="booking:b2") == [("booking.cancelled", "b2"), ("booking.created", "b2")]
    assert await ids(entity="booking:b2", actor=str(bob)) == [("booking.created", "b2")]
    assert await ids(entity="flight") == [("flight.delayed", "9")]
    window = {"from": (base + timedelta(hours=1)).isoformat(), "to": (base + timedelta(hours=3)).isoformat()}
    assert await ids(**window) == [("booking.created", "b2"), ("booking.updated", "b1")]
    assert await ids(event_type="booking.created", **window) == [("booking.created", "b2")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"actor": "not-a-uuid"}, "actor"),
        ({"event_type": "booking.exploded"}, "event_type"),
        ({"entity": "spaceship:1"}, "entity"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ],
)
async def test_bad_filters_are_refused_naming_the_field(
    client: httpx.AsyncClient, admin: Account, params: dict[str, str], field: str
) -> None:
    response = await client.get(LOGS, params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_every_filter_combination_reads_an_index_in_keyset_order(pool: AsyncConnectionPool) -> None:
    """With sequential scans and sorts priced out, each combination still finds a plan: an index gives its order."""
    from core_api.audit.service import QUERIES

    filters = {"actor_id": uuid.uuid4(), "event_type": "auth.login", "entity_type": "user", "entity_id": "x"}
    combinations = [
        {},
        {"actor_id"},
        {"event_type"},
        {"entity_type", "entity_id"},
        {"actor_id", "event_type"},
        {"actor_id", "entity_type", "entity_id"},
        {"event_type", "entity_type", "entity_id"},
    ]
    async with pool.connection() as conn:
        await conn.execute("SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off")
        for chosen in combinations:
            for window in (False, True):
                params = {name: (filters[name] if name in chosen else None) for name in filters}
                now = datetime.now(UTC)
                params |= {"from": now - timedelta(days=1) if window else None, "to": now if window else None}
                params |= {"cursor_at": now, "cursor_id": 10**9, "limit": 50}
                cursor = await conn.execute("EXPLAIN (FORMAT JSON) " + QUERIES["list_logs"], params, prepare=False)
                plan = json.dumps((await cursor.fetchone())["QUERY PLAN"])
                assert '"Node Type": "Sort"' not in plan, (chosen, window, plan)
                assert "audit_logs_" in plan, (chosen, window)


async def test_security_events_and_their_index_agree(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account
) -> None:
    async with pool.connection() as conn:
        definition = (
            await (
                await conn.execute("SELECT pg_get_indexdef('audit_logs_security_time_idx'::regclass) AS d")
            ).fetchone()
        )["d"]
    assert sorted(definition.split("ARRAY[")[1].split("]")[0].replace("'", "").replace("::text", "").split(", ")) == (
        sorted(event.value for event in SECURITY_EVENTS)
    )
    failed = await client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong pass"})
    assert failed.status_code == 401
    response = await client.get("/api/v1/audit/security/events", headers=admin.headers)
    assert response.status_code == 200
    [event] = response.json()["items"]
    assert event["event_type"] == "auth.login_failed"
    assert event["ip"] == "127.0.0.1"
    only = await client.get("/api/v1/audit/security/events", params={"event_type": "auth.login"}, headers=admin.headers)
    assert only.status_code == 422


async def test_a_deleted_users_audit_rows_keep_no_personal_data_and_the_chain_still_verifies(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account
) -> None:
    created = await client.post(
        "/api/v1/users",
        json={"email": "erin.erasable@example.com", "password": "a long password", "full_name": "Erin Erasable",
              "role": "CUSTOMER"},
        headers=admin.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    login = await client.post(
        "/api/v1/auth/login", json={"email": "erin.erasable@example.com", "password": "a long password"},
        headers={"User-Agent": "Erin's phone"},
    )  # fmt: skip
    assert login.status_code == 200
    timeline = (await client.get(f"/api/v1/audit/user/{user_id}/timeline", headers=admin.headers)).json()["items"]
    shown = json.dumps(timeline)
    for personal in ("erin.erasable@example.com", "Erin Erasable", "Erin's phone"):
        assert personal in shown
    async with pool.connection() as conn:
        stored = json.dumps(await (await conn.execute("SELECT before, after, metadata FROM audit_logs")).fetchall())
    assert "Erin" not in stored.replace("erin.erasable", "Erin"), "the chained rows hold references only"

    assert (await client.delete(f"/api/v1/users/{user_id}", headers=admin.headers)).status_code == 204
    await seal_pending(pool)
    timeline = (await client.get(f"/api/v1/audit/user/{user_id}/timeline", headers=admin.headers)).json()["items"]
    shown = json.dumps(timeline)
    assert "Erin" not in shown.replace("erin.erasable", "Erin")
    created_row = next(item for item in timeline if item["event_type"] == "user.created")
    assert created_row["after"]["email"] == created_row["after"]["full_name"] == "[ERASED]"
    assert next(item for item in timeline if item["event_type"] == "auth.login")["user_agent"] is None
    verified = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
    assert verified["valid"] is True
    assert verified["unsealed"] == 0
    assert verified["checked"] >= 4


async def test_verify_reports_the_unsealed_backlog(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, admin: Account
) -> None:
    await seal_pending(pool)
    async with transaction(pool) as tx:
        for i in range(3):
            await record(tx, EventType.FLIGHT_UPDATED, SYSTEM, ("flight", str(i)))
    body = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
    assert (body["valid"], body["unsealed"]) == (True, 3)
    assert body["oldest_unsealed_at"] is not None
    metrics = (await client.get("/metrics")).text
    assert "flightdesk_audit_unsealed_rows 3.0" in metrics
    health = (await client.get("/api/v1/health/services")).json()
    sealer = next(service for service in health["services"] if service["name"] == "audit_sealer")
    assert sealer["status"] == "up"
    assert "3 audit rows not sealed yet" in sealer["detail"]

    await seal_pending(pool)
    body = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
    assert (body["valid"], body["unsealed"], body["sealed_through"]) == (True, 0, body["checked"])


async def test_cleanup_keeps_the_chain_valid_and_is_audited(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_account: MakeAccount
) -> None:
    now = datetime.now(UTC)
    async with transaction(pool) as tx:
        for days in (200, 150, 120, 100, 95):
            at = now - timedelta(days=days)
            after = {"contact_email": f"{days}@example.com"}
            await record(tx, EventType.BOOKING_EXPIRED, SYSTEM, ("booking", f"old-{days}"), after=after, occurred_at=at)
    async with transaction(pool) as tx:
        # Out of time order in the chain: an old row behind a younger one is kept until a later cleanup.
        await record(tx, EventType.BOOKING_EXPIRED, SYSTEM, ("booking", "young"), occurred_at=now - timedelta(days=10))
        await record(
            tx, EventType.BOOKING_EXPIRED, SYSTEM, ("booking", "old-late"), occurred_at=now - timedelta(days=300)
        )
    await seal_pending(pool)
    admin = await make_account(Role.ADMIN)

    response = await client.delete(LOGS + "/cleanup", params={"older_than_days": 90}, headers=admin.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["deleted"], result["kept_older"], result["checkpoint_position"]) == (5, 1, 5)

    await seal_pending(pool)
    verified = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
    assert verified["valid"] is True, verified
    assert verified["checkpoint_position"] == 5
    assert verified["checked"] == verified["sealed_through"] - 5
    items = await _all_pages(client, admin, {})
    kept = {item["entity_id"] for item in items}
    assert {"young", "old-late"} <= kept
    assert not any(str(entity).startswith("old-1") or entity == "old-95" for entity in kept)
    [audited] = [item for item in items if item["event_type"] == "system.audit_cleanup"]
    assert audited["actor_id"] == admin.id
    assert (audited["metadata"]["deleted"], audited["metadata"]["checkpoint_position"]) == (5, 5)
    async with pool.connection() as conn:
        left = await (await conn.execute("SELECT count(*) AS n FROM audit_personal_data")).fetchone()
    assert left["n"] == 3, "the deleted rows' personal data went with them (left: the admin's rows)"

    again = (await client.delete(LOGS + "/cleanup", params={"older_than_days": 90}, headers=admin.headers)).json()
    assert again["deleted"] == 0
    await seal_pending(pool)
    assert (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()["valid"] is True


async def test_statistics_count_by_category_and_type(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_account: MakeAccount
) -> None:
    owner = await make_account(Role.BUSINESS_OWNER)
    async with transaction(pool) as tx:
        for _ in range(3):
            await record(tx, EventType.BOOKING_CREATED, Actor(role="CUSTOMER"), ("booking", "x"))
        await record(tx, EventType.SECURITY_ACCESS_DENIED, Actor(role="CUSTOMER"))
    response = await client.get("/api/v1/audit/statistics", headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    by_type = {entry["key"]: entry["count"] for entry in body["by_event_type"]}
    by_category = {entry["key"]: entry["count"] for entry in body["by_category"]}
    assert by_type["booking.created"] == 3
    assert by_category["bookings"] == 3
    assert body["security_events"] == 1
    assert body["total"] == sum(by_type.values())
    assert body["unsealed"] == body["total"]
