"""``POST /webhooks/stripe``: verify, store once, apply once (SPEC §5).

Each event is verified with the Stripe SDK (``Stripe-Signature``, HMAC-SHA256 over ``t.payload``, 300 s
tolerance), then stored by its id in ``webhook_events`` and applied in the same transaction: the
``INSERT … ON CONFLICT DO NOTHING`` decides which delivery applies it. A replay arriving while the first delivery's
transaction is open waits on its row and then finds it stored; one arriving after finds it at once. Either way it is
answered 200 ``duplicate`` and changes nothing. An event that fails to apply rolls back with its row, so the
provider's retry applies it.

Order does not matter: each handler reads the payment's state under its lock (booking first, then payment) and moves
it only forward. ``payment_failed`` after ``succeeded`` changes nothing; ``succeeded`` after ``payment_failed`` (the
customer retried) confirms. The sandbox provider builds and signs the events Stripe would and sends them through
:func:`receive`, the verification included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import stripe

from core_api.audit.schemas import EventType
from core_api.audit.service import record
from core_api.bookings._common import emit_booking_event
from core_api.bookings.schemas import BookingStatus
from core_api.payments._records import (
    PAYMENT_EVENTS,
    QUERIES,
    LockedPayment,
    emit_payment_event,
    lock_booking_row,
    lock_payment,
)
from core_api.payments._refunds import lock_refund, mark_refund_succeeded, reserve_refund, settle_refund
from core_api.payments.schemas import OPEN, PAID, PaymentStatus, RefundStatus, WebhookAck
from core_api.storage.db import transaction
from core_api.web.errors import AppError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.bookings._common import LockedBooking
    from core_api.payments.service import PaymentService

__all__ = ["SIGNATURE_TOLERANCE_SECONDS", "SignatureInvalid", "apply_event", "receive", "sandbox_event", "sign"]

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
HANDLED = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.refunded",
        "customer.created",
        "payment_method.attached",
        "invoice.payment_succeeded",
    }
)
# Provider ids of people and cards are kept encrypted on the payment, never in the stored event.
_SCRUBBED = frozenset({"customer", "payment_method", "billing_details", "email", "name", "phone", "address"})


class SignatureInvalid(AppError):
    """The signature is the webhook's authentication: a delivery without a valid one is 401 (the API answers no
    400s; Stripe retries any non-2xx the same way)."""

    status, code, title = 401, "INVALID_SIGNATURE", "Webhook signature invalid"


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload``: ``t=<unix time>,v1=<HMAC-SHA256 hex>``."""
    at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[ENCRYPTED]" if k in _SCRUBBED and v else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


async def receive(service: PaymentService, actor: Actor, payload: bytes, signature: str | None) -> WebhookAck:
    """Verify a delivery with the Stripe SDK (401 ``INVALID_SIGNATURE`` otherwise), then apply it once."""
    try:
        stripe.Webhook.construct_event(
            payload.decode("utf-8"), signature, service.webhook_secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
        event = json.loads(payload)
        event_id, event_type = event["id"], event["type"]
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(event["data"], dict):
            raise TypeError("malformed event")
    except stripe.SignatureVerificationError as exc:
        logger.warning("webhook refused: %s", exc.user_message or "bad signature")
        raise SignatureInvalid("The Stripe-Signature header does not match the payload and secret.") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SignatureInvalid("The payload is not a Stripe event.") from None
    return await apply_event(service, actor, event)


async def apply_event(service: PaymentService, actor: Actor, event: dict[str, Any]) -> WebhookAck:
    """Store a verified event and apply it, once, in one transaction with the changes it causes."""
    event_id, event_type = str(event["id"]), str(event["type"])
    obj = event["data"].get("object") or {}
    refund_after: uuid.UUID | None = None
    async with transaction(service.pool) as tx:
        params = {
            "id": event_id,
            "provider": "sandbox" if event_id.startswith("evt_sandbox_") else "stripe",
            "type": event_type,
            "payload": msgspec.json.encode(_scrub(event)).decode(),
        }
        if await (await tx.execute(QUERIES["insert_webhook_event"], params)).fetchone() is None:
            return WebhookAck(received=True, duplicate=True, event_id=event_id, type=event_type)
        payment_id: uuid.UUID | None = None
        error: str | None = None
        match event_type:
            case "payment_intent.succeeded":
                payment_id, refund_after = await _succeeded(service, tx, actor, obj)
            case "payment_intent.payment_failed":
                payment_id = await _failed(tx, actor, obj)
            case "charge.refunded":
                payment_id = await _refunded(tx, actor, obj)
            case _:
                pass  # stored and acknowledged (customer.created, payment_method.attached, invoice.*, unknown)
        if event_type.startswith(("payment_intent.", "charge.")) and payment_id is None:
            error = "no payment of ours has this intent"
        await tx.execute(QUERIES["webhook_processed"], {"id": event_id, "payment_id": payment_id, "error": error})
        await record(
            tx,
            EventType.WEBHOOK_RECEIVED,
            actor,
            ("webhook", event_id),
            metadata={"type": event_type, "payment_id": payment_id, "handled": event_type in HANDLED, "error": error},
        )
    if refund_after is not None:
        await settle_refund(service, refund_after)
    return WebhookAck(received=True, duplicate=False, event_id=event_id, type=event_type)


async def _locked(tx: AsyncConnection[Any], intent_id: object) -> tuple[LockedBooking, LockedPayment] | None:
    if not isinstance(intent_id, str):
        return None
    row = await (await tx.execute(QUERIES["payment_by_provider_id"], {"provider_payment_id": intent_id})).fetchone()
    if row is None:
        return None
    booking = await lock_booking_row(tx, row["booking_id"])
    return booking, await lock_payment(tx, row["id"])


def _sealed(service: PaymentService, value: object, context: str) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    return service.cipher.seal(value, context=context)


async def _succeeded(
    service: PaymentService, tx: AsyncConnection[Any], actor: Actor, intent: dict[str, Any]
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The money arrived: confirm the booking (seats OCCUPIED), or — the hold lapsed and its seats were sold, or the
    booking was cancelled, or another payment paid it — keep the money only to refund it at once.
    """
    locked = await _locked(tx, intent.get("id"))
    if locked is None:
        return None, None
    booking, payment = locked
    if payment.status in PAID:
        return payment.id, None
    other = await (await tx.execute(QUERIES["paid_payment"], {"booking_id": booking.id})).fetchone()
    if other is not None:  # another payment paid the booking: this one goes back
        return payment.id, await _refund_duplicate(tx, actor, booking, payment)
    status_reason: str | None = None
    confirmable = booking.status is BookingStatus.PENDING_PAYMENT
    if booking.status is BookingStatus.EXPIRED:
        row = await (
            await tx.execute(QUERIES["retake_fare_seats"], {"fare_id": booking.fare_id, "seats": booking.seat_count})
        ).fetchone()
        confirmable = row is not None
        status_reason = (
            "paid after the hold lapsed: the seats were taken again (choose seats anew)"
            if confirmable
            else "paid after the hold lapsed and the seats were sold: the payment is refunded automatically"
        )
    elif booking.status is BookingStatus.CANCELLED:
        status_reason = "paid after the booking was cancelled: the payment is refunded automatically"
    sealed = {
        "id": payment.id,
        "customer_enc": _sealed(service, intent.get("customer"), f"payments.customer:{payment.id}"),
        "payment_method_enc": _sealed(service, intent.get("payment_method"), f"payments.payment_method:{payment.id}"),
        "key_version": service.cipher.current,
    }
    await tx.execute(QUERIES["mark_payment_succeeded"], sealed)
    paid = msgspec.structs.replace(payment, status=PaymentStatus.SUCCEEDED)
    await emit_payment_event(tx, "payment.succeeded", paid, booking)
    await record(
        tx,
        EventType.PAYMENT_SUCCEEDED,
        actor,
        ("payment", payment.id),
        before=payment.snapshot(),
        after={"status": PaymentStatus.SUCCEEDED},
        metadata={"booking_id": booking.id, "provider_payment_id": payment.provider_payment_id},
    )
    if confirmable:
        await tx.execute(QUERIES["occupy_seats"], {"flight_id": booking.flight_id, "booking_id": booking.id})
        await tx.execute(QUERIES["confirm_booking"], {"id": booking.id, "status_reason": status_reason})
        await emit_booking_event(tx, "booking.confirmed", booking, status=BookingStatus.CONFIRMED)
        await record(
            tx,
            EventType.BOOKING_CONFIRMED,
            actor,
            ("booking", booking.id),
            before=booking.snapshot(),
            after={"status": BookingStatus.CONFIRMED, "status_reason": status_reason},
            metadata={"payment_id": payment.id},
        )
        PAYMENT_EVENTS.labels(event="payment.succeeded").inc()
        return payment.id, None
    await tx.execute(QUERIES["note_booking"], {"id": booking.id, "status_reason": status_reason})
    refund_id = await reserve_refund(tx, actor, booking, paid, amount=None, reason=status_reason, source="automatic")
    return payment.id, refund_id


async def _refund_duplicate(
    tx: AsyncConnection[Any], actor: Actor, booking: LockedBooking, payment: LockedPayment
) -> uuid.UUID:
    refund_id = uuid.uuid4()
    await tx.execute(QUERIES["cancel_duplicate_payment"], {"id": payment.id})
    await tx.execute(
        QUERIES["insert_refund"],
        {
            "id": refund_id,
            "payment_id": payment.id,
            "booking_id": booking.id,
            "amount": payment.amount,
            "currency": payment.currency,
            "status": RefundStatus.PENDING.value,
            "reason": "the booking was paid by another payment",
            "provider_refund_id": None,
            "created_by": None,
            "source": "automatic",
        },
    )
    await record(
        tx,
        EventType.PAYMENT_CANCELLED,
        actor,
        ("payment", payment.id),
        before=payment.snapshot(),
        after={"status": PaymentStatus.CANCELLED},
        metadata={"refund_id": refund_id, "reason": "duplicate payment"},
    )
    logger.warning("payment %s arrived for booking %s, already paid: refunded in full", payment.id, booking.id)
    return refund_id


async def _failed(tx: AsyncConnection[Any], actor: Actor, intent: dict[str, Any]) -> uuid.UUID | None:
    """The attempt failed: the booking keeps waiting for payment (until its hold lapses) and says so."""
    locked = await _locked(tx, intent.get("id"))
    if locked is None:
        return None
    booking, payment = locked
    if payment.status not in OPEN:
        return payment.id  # failed after succeeded (or twice): nothing changes
    error = intent.get("last_payment_error") or {}
    code = str(error.get("decline_code") or error.get("code") or "payment_failed")[:100]
    message = str(error.get("message") or "The payment failed.")[:500]
    await tx.execute(
        QUERIES["mark_payment_failed"], {"id": payment.id, "failure_code": code, "failure_message": message}
    )
    await emit_payment_event(tx, "payment.failed", payment, booking)
    await record(
        tx,
        EventType.PAYMENT_FAILED,
        actor,
        ("payment", payment.id),
        before=payment.snapshot(),
        after={"status": PaymentStatus.FAILED, "failure_code": code},
    )
    if booking.status is BookingStatus.PENDING_PAYMENT:
        await emit_booking_event(tx, "booking.payment_failed", booking, status=BookingStatus.PENDING_PAYMENT)
        await record(
            tx,
            EventType.BOOKING_PAYMENT_FAILED,
            actor,
            ("booking", booking.id),
            metadata={"payment_id": payment.id, "failure_code": code},
        )
    PAYMENT_EVENTS.labels(event="payment.failed").inc()
    return payment.id


async def _refunded(tx: AsyncConnection[Any], actor: Actor, charge: dict[str, Any]) -> uuid.UUID | None:
    """Record the charge's refunds: ours settle (if still pending), the ones made elsewhere (Stripe's dashboard) are
    added; a charge without its refund list adds what its ``amount_refunded`` says beyond ours.
    """
    locked = await _locked(tx, charge.get("payment_intent"))
    if locked is None:
        return None
    booking, payment = locked
    listed = (charge.get("refunds") or {}).get("data") or []
    for item in listed:
        if not isinstance(item, dict) or item.get("status") not in ("succeeded", None):
            continue
        provider_refund_id = str(item.get("id"))
        known = await (
            await tx.execute(QUERIES["refund_by_provider_id"], {"provider_refund_id": provider_refund_id})
        ).fetchone()
        ours = (item.get("metadata") or {}).get("refund_id")
        refund_id = known["id"] if known else _uuid_or_none(ours)
        if refund_id is not None:
            refund = await lock_refund(tx, refund_id)
            if refund is not None and refund.payment_id == payment.id:
                if refund.status is RefundStatus.PENDING:
                    await mark_refund_succeeded(tx, actor, booking, payment, refund, provider_refund_id)
                continue
        payment = await _external_refund(tx, actor, booking, payment, int(item.get("amount") or 0), provider_refund_id)
    if not listed:
        ours_total = await (await tx.execute(QUERIES["settled_refunds_total"], {"payment_id": payment.id})).fetchone()
        beyond = int(charge.get("amount_refunded") or 0) - int(ours_total["amount"] if ours_total else 0)
        await _external_refund(tx, actor, booking, payment, beyond, None)
    return payment.id


async def _external_refund(
    tx: AsyncConnection[Any],
    actor: Actor,
    booking: LockedBooking,
    payment: LockedPayment,
    amount: int,
    provider_refund_id: str | None,
) -> LockedPayment:
    """A refund made at the provider, not by us: recorded as it is (within what the payment captured)."""
    amount = min(amount, payment.amount - payment.amount_refunded)
    if amount <= 0 or payment.status not in PAID:
        return payment
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
            "status": RefundStatus.SUCCEEDED.value,
            "reason": "refunded at the provider",
            "provider_refund_id": provider_refund_id,
            "created_by": None,
            "source": "provider",
        },
    )
    await emit_payment_event(tx, "payment.refunded", payment, booking, amount=amount, refund_id=refund_id)
    await record(
        tx,
        EventType.REFUND_CREATED,
        actor,
        ("refund", refund_id),
        after={"amount": {"amount": amount, "currency": payment.currency}, "source": "provider"},
        metadata={"payment_id": payment.id, "provider_refund_id": provider_refund_id},
    )
    await record(
        tx, EventType.PAYMENT_REFUNDED, actor, ("payment", payment.id), before=payment.snapshot(),
        metadata={"refund_id": refund_id, "amount": amount, "source": "provider"},
    )  # fmt: skip
    refunded = payment.amount_refunded + amount
    status = PaymentStatus.REFUNDED if refunded >= payment.amount else PaymentStatus.PARTIALLY_REFUNDED
    return msgspec.structs.replace(payment, amount_refunded=refunded, status=status)


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def sandbox_event(
    payment: LockedPayment, booking: LockedBooking, outcome: str, *, created: int | None = None
) -> dict[str, Any]:
    """The event Stripe would send when the intent of ``payment`` succeeds or fails."""
    succeeded = outcome == "succeeded"
    digest = hashlib.sha256(f"sandbox-payer:{booking.customer_id or booking.contact_email}".encode()).hexdigest()
    intent: dict[str, Any] = {
        "id": payment.provider_payment_id,
        "object": "payment_intent",
        "amount": payment.amount,
        "amount_received": payment.amount if succeeded else 0,
        "currency": payment.currency.lower(),
        "status": "succeeded" if succeeded else "requires_payment_method",
        "metadata": {"payment_id": str(payment.id), "booking_id": str(booking.id), "pnr": booking.pnr},
        "customer": f"cus_sandbox_{digest[:14]}",
        "payment_method": f"pm_sandbox_{secrets.token_hex(7)}",
        "livemode": False,
        "last_payment_error": None
        if succeeded
        else {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."},
    }
    return {
        "id": f"evt_sandbox_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "type": "payment_intent.succeeded" if succeeded else "payment_intent.payment_failed",
        "data": {"object": intent},
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
    }
