"""Refunds: counted against the payment in our transaction first, then asked of the provider.

A refund is *reserved* in the transaction of the change that causes it (``POST /payments/{id}/refund``, cancelling a
paid booking, a payment that arrived for seats already sold): the payment row is locked, what remains refundable is
checked and the refund's amount counted in ``amount_refunded`` (whose CHECK keeps it within the captured amount), and
the refund row written ``PENDING``. Concurrent refunds of one payment queue on its row lock, so together they never
exceed the capture. After COMMIT the provider is asked, under the idempotency key ``refund-<refund id>``; its answer
settles the refund in a second transaction (``SUCCEEDED``, or ``FAILED`` with the reservation released). A crash or
an outage between the two leaves the refund ``PENDING``: the worker's reconciler asks again under the same key, so
the provider refunds once however often it is asked.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import SYSTEM, record
from core_api.payments._records import (
    PAYMENT_EVENTS,
    QUERIES,
    LockedPayment,
    emit_payment_event,
    lock_booking_row,
    lock_payment,
)
from core_api.payments.providers import ProviderRefused, ProviderUnavailable
from core_api.payments.schemas import PAID, Refund, RefundStatus
from core_api.storage.db import struct_row, transaction
from core_api.web.errors import Conflict, InvalidState, ValidationFailed

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.bookings._common import LockedBooking
    from core_api.payments.service import PaymentService

__all__ = [
    "PendingRefund",
    "contains_card_number",
    "fetch_refund",
    "lock_refund",
    "mark_refund_succeeded",
    "reconcile_pending_refunds",
    "reserve_cancellation_refund",
    "reserve_refund",
    "settle_refund",
]

logger = logging.getLogger(__name__)

_DIGIT_RUN = re.compile(r"(?:\d[ -]?){12,18}\d")


def contains_card_number(text: str) -> bool:
    """Whether ``text`` carries something shaped like a card number (13-19 digits passing the Luhn check)."""
    for match in _DIGIT_RUN.finditer(text):
        digits = [int(c) for c in match.group() if c.isdigit()]
        total = 0
        for index, digit in enumerate(reversed(digits)):
            if index % 2:
                digit *= 2
                digit -= 9 if digit > 9 else 0
            total += digit
        if total % 10 == 0:
            return True
    return False


async def reserve_refund(
    tx: AsyncConnection[Any],
    actor: Actor,
    booking: LockedBooking,
    payment: LockedPayment,
    *,
    amount: int | None,
    reason: str | None,
    source: str,
) -> uuid.UUID:
    """Count a refund of ``amount`` (default: all that remains) against the locked payment and write it PENDING.

    409 ``INVALID_STATE`` when the payment holds no money, 409 ``CONFLICT`` when more is asked than remains.
    """
    if payment.status not in PAID:
        raise InvalidState(f"The payment is {payment.status.value}; only a payment that succeeded can be refunded.")
    remaining = payment.amount - payment.amount_refunded
    if remaining <= 0:
        raise InvalidState("The payment is refunded in full already.")
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise Conflict(f"At most {remaining} {payment.currency} (minor units) remains to refund; {amount} was asked.")
    if reason is not None and contains_card_number(reason):
        raise ValidationFailed.for_field("reason", "must not contain a card number")
    refund_id = uuid.uuid4()
    await tx.execute(QUERIES["reserve_refund"], {"id": payment.id, "amount": amount})
    await tx.execute(
        QUERIES["insert_refund"],
        {
            "id": refund_id,
            "payment_id": payment.id,
            "booking_id": booking.id,
            "amount": amount,
            "currency": payment.currency,
            "status": RefundStatus.PENDING.value,
            "reason": reason,
            "provider_refund_id": None,
            "created_by": actor.id,
            "source": source,
        },
    )
    await record(
        tx,
        EventType.REFUND_REQUESTED,
        actor,
        ("refund", refund_id),
        before=payment.snapshot(),
        after={"amount": {"amount": amount, "currency": payment.currency}, "status": RefundStatus.PENDING},
        metadata={"payment_id": payment.id, "booking_id": booking.id, "source": source, "reason": reason},
    )
    return refund_id


async def reserve_cancellation_refund(
    tx: AsyncConnection[Any], actor: Actor, booking: LockedBooking
) -> uuid.UUID | None:
    """Inside the cancel of a booking (its row already locked): its open intents are cancelled, and a paid booking
    gets the refund its fare allows reserved — what remains of the payment on a refundable fare, nothing on a
    non-refundable one. Returns the refund's id, if any.
    """
    cancelled = await (await tx.execute(QUERIES["cancel_open_payments"], {"booking_id": booking.id})).fetchall()
    for intent in cancelled:
        metadata = {"booking_id": booking.id, "reason": "booking cancelled"}
        entity = ("payment", intent["id"])
        await record(tx, EventType.PAYMENT_CANCELLED, actor, entity, after={"status": "CANCELLED"}, metadata=metadata)
    row = await (await tx.execute(QUERIES["paid_payment"], {"booking_id": booking.id})).fetchone()
    if row is None:
        return None
    fare = await (await tx.execute(QUERIES["fare_refundable"], {"fare_id": booking.fare_id})).fetchone()
    if fare is None or not fare["refundable"] or row["amount"] - row["amount_refunded"] <= 0:
        return None
    payment = await lock_payment(tx, row["id"])
    return await reserve_refund(
        tx, actor, booking, payment, amount=None, reason="booking cancelled (refundable fare)", source="cancellation"
    )


class PendingRefund(msgspec.Struct, frozen=True, kw_only=True):
    """A refund row with its payment's provider intent (what settling it needs)."""

    id: uuid.UUID
    payment_id: uuid.UUID
    booking_id: uuid.UUID
    amount: int
    currency: str
    status: RefundStatus
    reason: str | None
    source: str
    created_by: uuid.UUID | None
    provider_payment_id: str | None


async def lock_refund(tx: AsyncConnection[Any], refund_id: uuid.UUID) -> PendingRefund | None:
    """A refund locked (after its booking and payment: the lock order)."""
    async with tx.cursor(row_factory=struct_row(PendingRefund)) as cursor:
        await cursor.execute(QUERIES["lock_refund"], {"id": refund_id})
        return await cursor.fetchone()


async def mark_refund_succeeded(
    tx: AsyncConnection[Any],
    actor: Actor,
    booking: LockedBooking,
    payment: LockedPayment,
    refund: PendingRefund,
    provider_refund_id: str | None,
) -> None:
    """Settle a locked PENDING refund as succeeded: its outbox event and audit rows."""
    params = {"id": refund.id, "status": "SUCCEEDED", "provider_refund_id": provider_refund_id, "last_error": None}
    await tx.execute(QUERIES["settle_refund"], params)
    await emit_payment_event(tx, "payment.refunded", payment, booking, amount=refund.amount, refund_id=refund.id)
    after = {"status": RefundStatus.SUCCEEDED, "provider_refund_id": provider_refund_id}
    await record(tx, EventType.REFUND_SUCCEEDED, actor, ("refund", refund.id), after=after)
    await record(
        tx,
        EventType.PAYMENT_REFUNDED,
        actor,
        ("payment", payment.id),
        before=payment.snapshot(),
        metadata={"refund_id": refund.id, "amount": refund.amount, "source": refund.source},
    )


async def _mark_refund_failed(
    tx: AsyncConnection[Any], payment: LockedPayment, refund: PendingRefund, error: str
) -> None:
    params = {"id": refund.id, "status": "FAILED", "provider_refund_id": None, "last_error": error}
    await tx.execute(QUERIES["settle_refund"], params)
    await tx.execute(QUERIES["release_refund"], {"id": payment.id, "amount": refund.amount})
    await record(tx, EventType.REFUND_FAILED, SYSTEM, ("refund", refund.id), metadata={"error": error})
    await record(
        tx,
        EventType.PAYMENT_REFUND_FAILED,
        SYSTEM,
        ("payment", payment.id),
        metadata={"refund_id": refund.id, "amount": refund.amount, "error": error},
    )


async def settle_refund(service: PaymentService, refund_id: uuid.UUID) -> None:
    """Ask the provider for a PENDING refund (idempotently) and record its answer; no answer keeps it PENDING.

    No lock is held while the provider is asked; the answer is applied under the lock order (booking, payment,
    refund) and only while the refund is still PENDING, so the route, the reconciler and the provider's own
    ``charge.refunded`` webhook settle it once between them.
    """
    async with service.pool.connection() as conn, conn.cursor(row_factory=struct_row(PendingRefund)) as cursor:
        await cursor.execute(QUERIES["refund_to_settle"], {"id": refund_id})
        pending = await cursor.fetchone()
    if pending is None or pending.status is not RefundStatus.PENDING or pending.provider_payment_id is None:
        return
    metadata = {
        "refund_id": str(pending.id),
        "payment_id": str(pending.payment_id),
        "booking_id": str(pending.booking_id),
    }
    error: str | None = None
    provider_refund_id: str | None = None
    try:
        async with asyncio.timeout(service.settings.payment.provider_timeout_seconds):
            answer = await service.provider.refund(
                intent_id=pending.provider_payment_id,
                amount=pending.amount,
                metadata=metadata,
                idempotency_key=f"refund-{pending.id}",
            )
        if answer.status == "failed":
            error = "the provider declined the refund"
        elif answer.status != "succeeded":
            provider_refund_id = answer.id  # pending at the provider: its charge.refunded webhook settles it
        else:
            provider_refund_id = answer.id
    except (ProviderUnavailable, TimeoutError) as exc:
        async with service.pool.connection() as conn:
            await conn.execute(QUERIES["refund_unanswered"], {"id": pending.id, "last_error": str(exc) or "timeout"})
        logger.warning("refund %s: the provider did not answer; the reconciler will ask again", pending.id)
        return
    except ProviderRefused as exc:
        error = str(exc)
    async with transaction(service.pool) as tx:
        booking = await lock_booking_row(tx, pending.booking_id)
        payment = await lock_payment(tx, pending.payment_id)
        refund = await lock_refund(tx, pending.id)
        if refund is None or refund.status is not RefundStatus.PENDING:
            return
        if error is not None:
            await _mark_refund_failed(tx, payment, refund, error)
        elif answer.status == "succeeded":
            await mark_refund_succeeded(tx, SYSTEM, booking, payment, refund, provider_refund_id)
        else:
            params = {
                "id": refund.id,
                "status": "PENDING",
                "provider_refund_id": provider_refund_id,
                "last_error": None,
            }
            await tx.execute(QUERIES["settle_refund"], params)
    PAYMENT_EVENTS.labels(event="payment.refunded" if error is None else "payment.refund_failed").inc()


async def reconcile_pending_refunds(service: PaymentService, *, limit: int = 100) -> int:
    """Ask the provider again for refunds left PENDING past ``FLIGHTDESK_PAYMENT_REFUND_RETRY_SECONDS``."""
    params = {"older_than_seconds": service.settings.payment.refund_retry_seconds, "limit": limit}
    async with service.pool.connection() as conn:
        rows = await (await conn.execute(QUERIES["stale_pending_refunds"], params)).fetchall()
    for row in rows:
        await settle_refund(service, row["id"])
    if rows:
        logger.info("reconciled %d pending refunds", len(rows))
    return len(rows)


async def fetch_refund(conn: AsyncConnection[Any], refund_id: uuid.UUID) -> Refund:
    async with conn.cursor(row_factory=struct_row(Refund)) as cursor:
        await cursor.execute(QUERIES["refund_detail"], {"ids": [refund_id]})
        refund = await cursor.fetchone()
    assert refund is not None
    return refund
