"""Outbox handlers: the events that become mails, each queued once per (event id, recipient) and enqueued.

| event | template | recipient |
| --- | --- | --- |
| ``booking.confirmed`` | booking_confirmation | the booking's contact |
| ``booking.cancelled`` | booking_cancelled | the booking's contact |
| ``payment.succeeded`` | payment_receipt | the payment's ``contact_email`` |
| ``payment.refunded`` | payment_receipt (refund) | the payment's ``contact_email`` |
| ``payment.failed`` | payment_failed (first) | the payment's ``contact_email`` |
| ``flight.changed`` | flight_changed | the contact of the booking it names (one event per booking) |
| ``auth.register`` | welcome | the new account |
| ``auth.password_reset_requested`` | password_reset (first) | the account |
| ``notification.queued`` | (mails the API queued) | |

Booking mails read the booking as it is when the handler runs (its contact, flight and travellers); payment mails
take amount and recipient from the event. Importing this module registers the handlers (the worker does).
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from arq import Retry
from redis.exceptions import RedisError

from core_api.notifications.notifier import Notifier
from core_api.notifications.schemas import (
    BookingCancelledContext,
    BookingConfirmationContext,
    BookingReminderContext,
    FlightChangedContext,
    MailFlight,
    MailMoney,
    PasswordResetContext,
    PaymentFailedContext,
    PaymentReceiptContext,
    TemplateName,
    WelcomeContext,
)
from core_api.notifications.service import QUERIES, QUEUED_EVENT, enqueue_send, queue_mail
from core_api.outbox.dispatch import EventHandler, register_handler

if TYPE_CHECKING:
    from core_api.outbox import OutboxEvent

__all__ = ["HANDLERS", "queue_booking_mail"]

logger = logging.getLogger(__name__)

_BOOKING_CONTEXTS: dict[TemplateName, type[msgspec.Struct]] = {
    TemplateName.BOOKING_CONFIRMATION: BookingConfirmationContext,
    TemplateName.BOOKING_CANCELLED: BookingCancelledContext,
    TemplateName.BOOKING_REMINDER: BookingReminderContext,
}


def _flight_of(booking: dict[str, Any]) -> MailFlight:
    return MailFlight(
        flight_number=booking["flight_number"],
        airline=booking["airline"],
        origin=booking["origin"],
        destination=booking["destination"],
        origin_city=booking["origin_city"],
        destination_city=booking["destination_city"],
        origin_tz=booking["origin_tz"],
        destination_tz=booking["destination_tz"],
        departure_at=booking["departure_at"],
        arrival_at=booking["arrival_at"],
    )


def _greeting(booking: dict[str, Any]) -> str:
    passengers = booking["passengers"] or []
    return str(booking["customer_name"] or (passengers[0] if passengers else "traveller"))[:200]


async def _booking(notifier: Notifier, booking_id: object) -> dict[str, Any] | None:
    async with notifier.pool.connection() as conn:
        row = await (await conn.execute(QUERIES["booking_for_mail"], {"id": str(booking_id)})).fetchone()
    return dict(row) if row is not None else None


async def _queue(notifier: Notifier, **mail: Any) -> None:
    if not mail["recipient"]:
        logger.warning("outbox event %s names no recipient for %s; no mail", mail["event_id"], mail["template"])
        return
    async with notifier.pool.connection() as conn:
        queued = await queue_mail(conn, public_url=notifier.public_url, **mail)
    if queued is not None:
        await enqueue_send(notifier.redis, *queued)


async def queue_booking_mail(
    notifier: Notifier, event_id: uuid.UUID, template: TemplateName, booking_id: object
) -> None:
    """Queue a confirmation, cancellation or reminder to the booking's contact (nothing if the booking is gone)."""
    booking = await _booking(notifier, booking_id)
    if booking is None:
        return
    common = {"customer_name": _greeting(booking), "pnr": booking["pnr"], "flight": _flight_of(booking)}
    if template is TemplateName.BOOKING_CONFIRMATION:
        context: msgspec.Struct = BookingConfirmationContext(
            **common,
            cabin=booking["cabin"].replace("_", " ").title(),
            passengers=list(booking["passengers"]) or ["(no travellers)"],
            total=MailMoney(amount=booking["total_amount"], currency=booking["currency"]),
        )
    else:
        context = _BOOKING_CONTEXTS[template](**common)
    await _queue(
        notifier,
        event_id=event_id,
        template=template,
        recipient=booking["contact_email"],
        context=context,
        user_id=booking["customer_id"],
        booking_id=booking["id"],
    )


def _notifier(ctx: dict[str, Any]) -> Notifier:
    notifier: Notifier = ctx["notifier"]
    return notifier


async def on_booking_confirmed(ctx: dict[str, Any], event: OutboxEvent) -> None:
    await queue_booking_mail(_notifier(ctx), event.id, TemplateName.BOOKING_CONFIRMATION, event.payload["booking_id"])


async def on_booking_cancelled(ctx: dict[str, Any], event: OutboxEvent) -> None:
    await queue_booking_mail(_notifier(ctx), event.id, TemplateName.BOOKING_CANCELLED, event.payload["booking_id"])


async def _payment_mail(ctx: dict[str, Any], event: OutboxEvent, template: TemplateName) -> None:
    notifier = _notifier(ctx)
    payload = event.payload
    booking = await _booking(notifier, payload["booking_id"]) if payload.get("booking_id") else None
    amount = MailMoney(amount=int(payload["amount"]), currency=str(payload["currency"]))
    greeting = _greeting(booking) if booking else "traveller"
    flight = _flight_of(booking) if booking else None
    context: msgspec.Struct
    if template is TemplateName.PAYMENT_FAILED:
        context = PaymentFailedContext(customer_name=greeting, pnr=payload["pnr"], amount=amount, flight=flight)
    else:
        refund_id = payload.get("refund_id")
        context = PaymentReceiptContext(
            customer_name=greeting,
            pnr=payload["pnr"],
            kind="refund" if event.event_type == "payment.refunded" else "payment",
            amount=amount,
            payment_id=str(payload["payment_id"]),
            refund_id=str(refund_id) if refund_id else None,
            flight=flight,
        )
    await _queue(
        notifier,
        event_id=event.id,
        template=template,
        recipient=payload.get("contact_email") or (booking["contact_email"] if booking else ""),
        context=context,
        user_id=payload.get("customer_id"),
        booking_id=payload.get("booking_id"),
    )


async def on_payment_succeeded(ctx: dict[str, Any], event: OutboxEvent) -> None:
    await _payment_mail(ctx, event, TemplateName.PAYMENT_RECEIPT)


async def on_payment_refunded(ctx: dict[str, Any], event: OutboxEvent) -> None:
    await _payment_mail(ctx, event, TemplateName.PAYMENT_RECEIPT)


async def on_payment_failed(ctx: dict[str, Any], event: OutboxEvent) -> None:
    await _payment_mail(ctx, event, TemplateName.PAYMENT_FAILED)


async def on_flight_changed(ctx: dict[str, Any], event: OutboxEvent) -> None:
    notifier = _notifier(ctx)
    payload = event.payload
    booking = await _booking(notifier, payload["booking_id"])
    if booking is None:
        return
    flight = msgspec.structs.replace(
        _flight_of(booking),
        departure_at=datetime.fromisoformat(payload["new_departure_at"]),
        arrival_at=datetime.fromisoformat(payload["new_arrival_at"]),
    )
    context = FlightChangedContext(
        customer_name=_greeting(booking),
        pnr=booking["pnr"],
        change=str(payload["change"]),
        flight=flight,
        old_departure_at=datetime.fromisoformat(payload["old_departure_at"]),
        old_arrival_at=datetime.fromisoformat(payload["old_arrival_at"]),
    )
    await _queue(
        notifier,
        event_id=event.id,
        template=TemplateName.FLIGHT_CHANGED,
        recipient=booking["contact_email"],
        context=context,
        user_id=booking["customer_id"],
        booking_id=booking["id"],
    )


async def _account_name(notifier: Notifier, user_id: object, fallback: str) -> str:
    async with notifier.pool.connection() as conn:
        row = await (await conn.execute(QUERIES["user_for_mail"], {"id": str(user_id)})).fetchone()
    return str(row["full_name"]) if row else fallback


async def on_register(ctx: dict[str, Any], event: OutboxEvent) -> None:
    notifier = _notifier(ctx)
    payload = event.payload
    await _queue(
        notifier,
        event_id=event.id,
        template=TemplateName.WELCOME,
        recipient=payload["email"],
        context=WelcomeContext(full_name=str(payload["full_name"])[:200]),
        user_id=payload["user_id"],
    )


async def on_password_reset_requested(ctx: dict[str, Any], event: OutboxEvent) -> None:
    notifier = _notifier(ctx)
    payload = event.payload
    name = await _account_name(notifier, payload["user_id"], payload["email"])
    await _queue(
        notifier,
        event_id=event.id,
        template=TemplateName.PASSWORD_RESET,
        recipient=payload["email"],
        context=PasswordResetContext(full_name=name[:200], token=payload["sealed_token"]),
        user_id=payload["user_id"],
    )


async def on_notification_queued(ctx: dict[str, Any], event: OutboxEvent) -> None:
    notifier = _notifier(ctx)
    async with notifier.pool.connection() as conn:
        rows = await (
            await conn.execute(QUERIES["pending_by_ids"], {"ids": event.payload["notification_ids"]})
        ).fetchall()
    for row in rows:
        await enqueue_send(notifier.redis, row["id"], row["priority"])


def _retrying(handler: EventHandler) -> EventHandler:
    """The handler, with a failed database or Redis call turned into arq's ``Retry`` (arq drops a job that raises
    anything else, and the event's mail with it). The retry re-runs every handler of the event; each finds the mail
    it queued and queues nothing twice."""

    @functools.wraps(handler)
    async def run(ctx: dict[str, Any], event: OutboxEvent) -> None:
        try:
            await handler(ctx, event)
        except (psycopg.Error, RedisError, OSError) as exc:
            tries = int(ctx.get("job_try") or 1)
            logger.warning("outbox event %s: %s failed (%s); retrying", event.id, handler.__name__, exc)
            raise Retry(defer=min(60.0, 2.0**tries)) from exc

    return run


HANDLERS = {
    "booking.confirmed": on_booking_confirmed,
    "booking.cancelled": on_booking_cancelled,
    "payment.succeeded": on_payment_succeeded,
    "payment.refunded": on_payment_refunded,
    "payment.failed": on_payment_failed,
    "flight.changed": on_flight_changed,
    "auth.register": on_register,
    "auth.password_reset_requested": on_password_reset_requested,
    QUEUED_EVENT: on_notification_queued,
}
for _event_type, _handler in HANDLERS.items():
    register_handler(_event_type, _retrying(_handler))
