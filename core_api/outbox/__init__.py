"""The transactional outbox (SPEC §5): every state change writes an event row in its own transaction.

:func:`emit` appends one row to ``outbox_events`` inside the caller's transaction, so the event exists exactly when
the change it announces committed. The relay (``core_api.outbox.relay``, run by ``flightdesk worker``) publishes
committed events at least once to Redis pub/sub (:data:`EVENTS_CHANNEL`, the WebSocket fan-out across API workers)
and to arq (job id = event id, for the jobs that act on events); consumers de-duplicate by event id.

Event types are ``domain.action`` in lower case. Booking events carry :class:`BookingEventPayload`-shaped payloads:
who may see them (customer, agent, airline) and the fare bucket's availability after the change, so the WebSocket
hub can route ``booking:*`` to the entitled users and ``flight:availability`` to the flight's subscribers without a
database read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from core_api.storage.db import load_queries

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["BOOKING_EVENT_TYPES", "EVENTS_CHANNEL", "OutboxEvent", "emit"]

EVENTS_CHANNEL = "flightdesk:events"
"""Redis pub/sub channel the relay publishes every event to, as :class:`OutboxEvent` JSON."""

BOOKING_EVENT_TYPES = frozenset(
    {
        "booking.created",
        "booking.updated",
        "booking.cancelled",
        "booking.expired",
        "booking.confirmed",
        "booking.payment_pending",
        "booking.payment_failed",
    }
)

QUERIES = load_queries("outbox")


class OutboxEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the relay publishes it (the ``outbox_events`` row without its bookkeeping columns)."""

    id: UUID
    seq: int
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    created_at: datetime


async def emit(
    tx: AsyncConnection[Any], event_type: str, aggregate: tuple[str, object], payload: dict[str, Any]
) -> UUID:
    """Append an event to the outbox in ``tx``'s transaction; returns its id (the consumers' de-duplication key).

    The id is drawn here, so the insert needs no answer: inside a pipeline it costs no round trip of its own.
    """
    aggregate_type, aggregate_id = aggregate
    event_id = uuid.uuid4()
    await tx.execute(
        QUERIES["insert_event"],
        {
            "id": event_id,
            "event_type": event_type,
            "aggregate_type": aggregate_type,
            "aggregate_id": str(aggregate_id),
            "payload": msgspec.json.encode(payload).decode(),
        },
    )
    return event_id
