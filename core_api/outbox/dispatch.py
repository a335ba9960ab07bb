"""The arq job that acts on outbox events: :func:`dispatch_event` runs the handlers registered for an event's type.

The relay enqueues one ``dispatch_event`` job per event with the event id as arq job id. De-duplication rests on
that id: while arq keeps the job or its result (``keep_result``, an hour by default), enqueueing the same id again
is a no-op, so an event the relay publishes twice (it crashed between publishing and marking the row) still runs
its handlers once. Past that window, or when a handler raises ``arq.Retry`` (which re-runs every handler of the
event), a handler may see the same event again: handlers whose effect must happen once (an email) record the
event id they acted on and skip ids they have seen.

Domains register their handlers at import time, e.g. ``register_handler("booking.confirmed", send_confirmation)``;
the worker imports those modules so the registry is complete before the first job runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from core_api.outbox import OutboxEvent

__all__ = ["EventHandler", "dispatch_event", "handlers_for", "register_handler"]

logger = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any], OutboxEvent], Awaitable[None]]
"""``async def handler(ctx, event)``: ``ctx`` is the arq job context (``ctx["redis"]`` and the worker's clients)."""

_handlers: dict[str, list[EventHandler]] = {}
_decoder = msgspec.json.Decoder(OutboxEvent)


def register_handler(event_type: str, handler: EventHandler) -> None:
    """Run ``handler`` for every event of ``event_type``, after the handlers registered before it.

    Registering the same handler for the same type twice is a no-op, so re-importing a module cannot double a send.
    """
    registered = _handlers.setdefault(event_type, [])
    if handler not in registered:
        registered.append(handler)


def handlers_for(event_type: str) -> tuple[EventHandler, ...]:
    """The handlers that run for ``event_type``, in the order they run."""
    return tuple(_handlers.get(event_type, ()))


async def dispatch_event(ctx: dict[str, Any], event_json: str) -> int:
    """Decode one published event and run its handlers in order; returns how many ran.

    A handler's exception fails the job (arq keeps the failure); a handler that wants another try raises
    ``arq.Retry``, which re-runs the job, every handler included.
    """
    event = _decoder.decode(event_json)
    handlers = handlers_for(event.event_type)
    if not handlers:
        logger.debug("no handler for outbox event %s (%s)", event.id, event.event_type)
        return 0
    for handler in handlers:
        await handler(ctx, event)
    return len(handlers)
