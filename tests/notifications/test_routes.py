"""``/notifications``: who sees which mails, the admin's send (validated against the template), clear and retry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core_api.notifications.jobs import Notifier
from core_api.storage.db import DbPool
from core_api.users.schemas import Role
from tests.notifications.conftest import (
    ConfirmedBooking,
    RunWorker,
    SmtpServer,
    dispatch,
    notifications,
    payment_payload,
    relay_all,
    write_event,
)
from tests.support.accounts import Account, MakeAccount

BASE = "/api/v1/notifications"
ADMIN_ONLY = [
    ("GET", f"{BASE}/stats", None),
    ("POST", f"{BASE}/send", {"template": "welcome", "recipient": "a@example.com", "context": {"full_name": "A"}}),
    ("POST", f"{BASE}/clear-completed", None),
    ("POST", f"{BASE}/retry-failed", None),
]


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.TRAVEL_AGENT, Role.AIRLINE_AGENT, Role.BUSINESS_OWNER])
async def test_only_admins_see_stats_send_clear_and_retry(
    client: httpx.AsyncClient, make_account: MakeAccount, admin: Account, role: Role
) -> None:
    caller = await make_account(role)
    for method, path, body in ADMIN_ONLY:
        assert (await _call(client, method, path, body, caller.headers)).status_code == 403, path
        assert (await _call(client, method, path, body, {})).status_code == 401, path
        assert (await _call(client, method, path, body, admin.headers)).status_code in (200, 202), path
    assert (await client.get(BASE)).status_code == 401
    assert (await client.get(BASE, headers=caller.headers)).status_code == 200


async def test_customers_see_their_own_mails_and_admins_all(
    pool: DbPool,
    client: httpx.AsyncClient,
    notifier: Notifier,
    run_worker: RunWorker,
    make_account: MakeAccount,
    admin: Account,
    booking: ConfirmedBooking,
) -> None:
    other = await make_account(Role.CUSTOMER)
    await dispatch(
        pool, notifier, await write_event(pool, "payment.succeeded", ("payment", "p"), payment_payload(booking))
    )
    payload = {"user_id": other.id, "email": other.user.email, "full_name": other.user.full_name}
    await dispatch(pool, notifier, await write_event(pool, "auth.register", ("user", other.id), payload))
    await run_worker()

    mine = (await client.get(BASE, headers=booking.customer.headers)).json()
    assert [item["template"] for item in mine["items"]] == ["payment_receipt"]
    assert (mine["total"], mine["page"], mine["page_size"]) == (1, 1, 20)
    assert mine["items"][0]["status"] == "SENT"
    theirs = (await client.get(BASE, headers=other.headers)).json()
    assert [item["template"] for item in theirs["items"]] == ["welcome"]
    everything = (await client.get(BASE, params={"page_size": 1}, headers=admin.headers)).json()
    assert (everything["total"], len(everything["items"])) == (2, 1)
    only = (await client.get(BASE, params={"template": "welcome"}, headers=admin.headers)).json()
    assert only["total"] == 1
    bad = await client.get(BASE, params={"page_size": 101}, headers=admin.headers)
    assert bad.status_code == 422


async def test_an_admin_sends_a_template_by_hand_and_bad_context_names_the_field(
    pool: DbPool, client: httpx.AsyncClient, admin: Account, arq_redis: Any, run_worker: RunWorker, smtp: SmtpServer
) -> None:
    body = {"template": "welcome", "recipient": "guest@example.com", "context": {"full_name": "Guest <b>One</b>"}}
    response = await client.post(f"{BASE}/send", json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "PENDING"
    await relay_all(pool, arq_redis)
    await run_worker()
    [mail] = smtp.to("guest@example.com")
    assert mail["Subject"] == "Welcome to Flightdesk, Guest <b>One</b>"

    cases = [
        ({"template": "welcome", "recipient": "x@example.com", "context": {}}, "context.full_name"),
        ({"template": "welcome", "recipient": "x@example.com", "context": {"full_name": 3}}, "context.full_name"),
        ({"template": "welcome", "recipient": "x@example.com", "context": {"full_name": "A", "x": 1}}, "context"),
        ({"template": "welcome", "recipient": "not-an-email", "context": {"full_name": "A"}}, "recipient"),
        ({"template": "nope", "recipient": "x@example.com", "context": {}}, "template"),
        # A reset mail's token must be one that auth created: only a reset request sends one.
        (
            {"template": "password_reset", "recipient": "x@example.com",
             "context": {"full_name": "A", "token": "pr_made-up-token"}},
            "template",
        ),
        (
            {"template": "booking_reminder", "recipient": "x@example.com",
             "context": {"customer_name": "A", "pnr": "ABCDEF", "flight": {"flight_number": "BA1"}}},
            "context.flight",
        ),
    ]  # fmt: skip
    for body, field in cases:
        response = await client.post(f"{BASE}/send", json=body, headers=admin.headers)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert problem["code"] == "VALIDATION_ERROR"
        assert any(error["field"].startswith(field) for error in problem["errors"]), (field, problem)
    assert len(await notifications(pool)) == 1


async def test_clear_completed_hides_sent_mail_and_a_replay_still_sends_nothing(
    pool: DbPool,
    client: httpx.AsyncClient,
    notifier: Notifier,
    run_worker: RunWorker,
    smtp: SmtpServer,
    admin: Account,
    booking: ConfirmedBooking,
) -> None:
    event_id = await write_event(pool, "payment.succeeded", ("payment", "p"), payment_payload(booking))
    await dispatch(pool, notifier, event_id)
    await run_worker()
    stats = (await client.get(f"{BASE}/stats", headers=admin.headers)).json()
    assert stats["completed"] == 1
    assert stats["by_template"]["payment_receipt"]["completed"] == 1

    response = await client.post(f"{BASE}/clear-completed", headers=admin.headers)
    assert response.json() == {"count": 1}
    assert (await client.get(BASE, headers=admin.headers)).json()["total"] == 0
    assert (await client.get(f"{BASE}/stats", headers=admin.headers)).json()["completed"] == 0

    await dispatch(pool, notifier, event_id)
    await run_worker()
    assert len(smtp.to(booking.contact_email)) == 1


async def test_retry_failed_through_the_api_sends_the_failed_mail(
    pool: DbPool,
    client: httpx.AsyncClient,
    notifier: Notifier,
    arq_redis: Any,
    run_worker: RunWorker,
    smtp: SmtpServer,
    admin: Account,
    booking: ConfirmedBooking,
) -> None:
    smtp.refuse_next = 3
    await dispatch(
        pool, notifier, await write_event(pool, "payment.failed", ("payment", "p"), payment_payload(booking))
    )
    await run_worker()
    stats = (await client.get(f"{BASE}/stats", headers=admin.headers)).json()
    assert (stats["failed"], stats["by_template"]["payment_failed"]["failed"]) == (1, 1)
    failed = (await client.get(BASE, params={"status": "FAILED"}, headers=admin.headers)).json()["items"]
    assert failed[0]["attempts"] == 3
    assert "451" in failed[0]["last_error"]

    assert (await client.post(f"{BASE}/retry-failed", headers=admin.headers)).json() == {"count": 1}
    await relay_all(pool, arq_redis)
    await run_worker()
    assert len(smtp.to(booking.contact_email)) == 1
    assert (await client.get(f"{BASE}/stats", headers=admin.headers)).json()["completed"] == 1


async def test_deleting_a_user_strips_the_personal_data_from_their_mails(
    pool: DbPool,
    client: httpx.AsyncClient,
    notifier: Notifier,
    run_worker: RunWorker,
    admin: Account,
    booking: ConfirmedBooking,
) -> None:
    receipt = await write_event(pool, "payment.succeeded", ("payment", "p"), payment_payload(booking))
    await dispatch(pool, notifier, receipt)
    await run_worker()
    response = await client.delete(f"/api/v1/users/{booking.customer.id}", headers=admin.headers)
    assert response.status_code == 204, response.text
    [row] = await notifications(pool)
    assert booking.contact_email not in row["recipient"]
    assert (row["subject"], row["payload"], row["status"]) == ("[erased]", {}, "SENT")
