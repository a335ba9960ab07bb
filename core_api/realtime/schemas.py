"""Wire types of the realtime socket: what the server sends, what clients may send, and the routing view of events."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

__all__ = [
    "BOOKING_EVENT_NAMES",
    "AvailabilityData",
    "BookingAudience",
    "ClientCommand",
    "ServerMessage",
    "decode_command",
    "encode_message",
    "flight_topic",
]

BOOKING_EVENT_NAMES: dict[str, str] = {
    "booking.created": "booking:created",
    "booking.updated": "booking:updated",
    "booking.cancelled": "booking:cancelled",
    "booking.confirmed": "booking:confirmed",
    "booking.payment_pending": "booking:payment_pending",
    "booking.payment_failed": "booking:payment_failed",
    # Clients see an expiry as an update whose data.status is EXPIRED (SPEC §4 lists no booking:expired).
    "booking.expired": "booking:updated",
}
"""Outbox event type → the event name clients receive."""

_FLIGHT_TOPIC = re.compile(r"^flight:([1-9][0-9]{0,17})$")
Topic = Annotated[str, msgspec.Meta(max_length=32)]


class ServerMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Every server → client frame: ``{"event": name, "data": {...}, "at": RFC 3339 UTC}``."""

    event: str
    data: Any
    at: datetime


class ClientCommand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client → server frame: exactly one of ``{"subscribe": "flight:<id>"}`` or ``{"unsubscribe": ...}``."""

    subscribe: Topic | None = None
    unsubscribe: Topic | None = None


class AvailabilityData(msgspec.Struct, frozen=True, kw_only=True):
    """A fare bucket's seats after a booking change: the data of ``flight:availability``."""

    flight_id: int
    cabin: str
    fare_class: str
    seats_available: int


class BookingAudience(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a booking event's payload that says who may see it (other payload fields pass through)."""

    booking_id: uuid.UUID
    flight_id: int
    airline_code: str
    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    availability: AvailabilityData | None = None


_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(ClientCommand)


def encode_message(event: str, data: Any, at: datetime | None = None) -> str:
    """One frame's text, encoded once however many sockets it goes to. A naive ``at`` is taken as UTC."""
    when = datetime.now(UTC) if at is None else at.replace(tzinfo=at.tzinfo or UTC).astimezone(UTC)
    return _encoder.encode(ServerMessage(event=event, data=data, at=when)).decode()


def decode_command(frame: str | bytes) -> ClientCommand:
    """Parse a client frame; raises :class:`ValueError` with a message fit to send back to the client."""
    try:
        command = _command_decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise ValueError(
            f'expected {{"subscribe": "flight:<id>"}} or {{"unsubscribe": "flight:<id>"}}: {exc}'
        ) from None
    if (command.subscribe is None) == (command.unsubscribe is None):
        raise ValueError('send exactly one of "subscribe" or "unsubscribe"')
    return command


def flight_topic(topic: str) -> int:
    """The flight id of a ``flight:<id>`` topic; raises :class:`ValueError` for any other topic."""
    match = _FLIGHT_TOPIC.match(topic)
    if match is None:
        raise ValueError(f"unknown topic {topic!r}; topics are flight:<id>")
    return int(match[1])
