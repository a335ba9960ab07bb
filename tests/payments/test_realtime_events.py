"""What payments write to the outbox reaches the WebSocket under the names SPEC §4 gives: the rows a sandbox
confirmation and a declined payment commit, fed to the realtime hub as the relay would deliver them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import msgspec
from psycopg_pool import AsyncConnectionPool

from core_api.auth.schemas import Principal
from core_api.outbox import OutboxEvent
from core_api.realtime import Hub
from core_api.users.schemas import Role
from tests.payments.conftest import Account, SmallFlight, book, rows, settle, start_payment


def _frames(events: list[dict[str, Any]], customer: Account) -> list[str]:
    hub = Hub(redis=None)  # type: ignore[arg-type] - routing needs no Redis
    owner = Principal(
        id=uuid.UUID(customer.id),
        role=Role.CUSTOMER,
        airline_code=None,
        session_id=uuid.uuid4(),
        token_id=uuid.uuid4(),
        token_expires_at=2**40,
    )
    socket = hub.connect(owner)
    for event in events:
        hub.dispatch(msgspec.convert(event, OutboxEvent))
    names = []
    while not socket._queue.empty():
        names.append(json.loads(socket._queue.get_nowait())["event"])
    return names


async def test_a_decline_then_a_payment_reach_the_owner_as_payment_failed_then_confirmed(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, customer: Account, flight: SmallFlight
) -> None:
    booking = await book(client, customer, flight)
    first = await start_payment(client, customer, booking["id"])
    await settle(client, customer, first["id"], "failed")
    second = await start_payment(client, customer, booking["id"])
    await settle(client, customer, second["id"])
    events = await rows(
        pool,
        "SELECT id, seq, event_type, aggregate_type, aggregate_id, payload, created_at FROM outbox_events ORDER BY seq",
    )

    assert _frames(events, customer) == [
        "booking:created",
        "booking:payment_pending",
        "booking:payment_failed",
        "booking:payment_pending",
        "booking:confirmed",
    ]
