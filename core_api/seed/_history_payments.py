"""The payments and refunds of the seeded history: every confirmed booking was paid (one in ten after a declined
first attempt), and a cancelled one on a refundable fare was refunded in full.

The audit events come from :func:`payment_events`, called for each paid booking as the history is generated; the
rows are derived afterwards from the bookings themselves by one statement per table (:data:`PAYMENT_ROWS`), with
the same ids and times: each id is the md5 of a label and the booking's id, as a UUID, in Python and in SQL alike.
"""

from __future__ import annotations

import hashlib
import uuid

from core_api.seed._history_audit import jsonb_text
from core_api.seed._history_model import AuditEvent, PaidBooking

__all__ = ["PAYMENT_ROWS", "payment_events"]

_SECOND = 1_000_000
_FAILED_SHARE = 26
"""First byte of md5('payment:' || booking id) below this (of 256): the booking's first attempt was declined."""


def _derived_id(label: str, booking_id: str) -> str:
    return str(uuid.UUID(hashlib.md5(f"{label}:{booking_id}".encode()).hexdigest()))  # noqa: S324 - an id, not a secret


def _declined_first(booking_id: str) -> bool:
    return hashlib.md5(f"payment:{booking_id}".encode()).digest()[0] < _FAILED_SHARE  # noqa: S324 - a draw


def payment_events(booking: PaidBooking) -> tuple[AuditEvent, ...]:
    """The audit events of one paid booking's payments and refund, at or after its creation."""
    payer, money = booking.payer, {"amount": booking.amount, "currency": booking.currency}
    payment = ("payment", _derived_id("payment", booking.id))
    created = {"status": "REQUIRES_PAYMENT", "amount": money, "provider": "sandbox"}
    metadata = jsonb_text({"booking_id": booking.id})
    events: list[AuditEvent] = []
    if _declined_first(booking.id):
        failed = ("payment", _derived_id("payment-failed", booking.id))
        at = booking.created_at + _SECOND
        events.append(AuditEvent(at, "payment.created", payer.id, payer.role, failed, after=jsonb_text(created),
                                 metadata=metadata))  # fmt: skip
        events.append(AuditEvent(at + _SECOND, "payment.failed", None, "SYSTEM", failed,
                                 after=jsonb_text({"status": "FAILED", "failure_code": "card_declined"})))  # fmt: skip
    started = min(booking.created_at + 3 * _SECOND, booking.confirmed_at)
    events.append(AuditEvent(started, "payment.created", payer.id, payer.role, payment, after=jsonb_text(created),
                             metadata=metadata))  # fmt: skip
    events.append(AuditEvent(booking.confirmed_at, "payment.succeeded", None, "SYSTEM", payment,
                             after=jsonb_text({"status": "SUCCEEDED"}), metadata=metadata))  # fmt: skip
    if booking.cancelled_at is not None and booking.refundable:
        refund = ("refund", _derived_id("refund", booking.id))
        events.append(AuditEvent(booking.cancelled_at, "refund.requested", payer.id, payer.role, refund,
                                 after=jsonb_text({"amount": money, "status": "PENDING"})))  # fmt: skip
        events.append(AuditEvent(booking.cancelled_at + 1, "payment.refunded", None, "SYSTEM", payment,
                                 metadata=jsonb_text({"refund_id": refund[1], "amount": booking.amount})))  # fmt: skip
    return tuple(events)


_PAID = """
FROM bookings AS b
WHERE b.confirmed_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.booking_id = b.id)
"""
PAYMENT_ROWS = (
    # The declined first attempts.
    f"""
    INSERT INTO payments (id, booking_id, provider, provider_payment_id, status, amount, currency, failure_code,
                          failure_message, created_by, created_at, updated_at)
    SELECT md5('payment-failed:' || b.id)::uuid, b.id, 'sandbox', 'pi_seed_' || md5('payment-failed:' || b.id),
           'FAILED', b.total_amount, b.currency, 'card_declined', 'Your card was declined.', b.created_by,
           b.created_at + interval '1 second', b.created_at + interval '2 seconds'
    {_PAID} AND get_byte(decode(md5('payment:' || b.id), 'hex'), 0) < {_FAILED_SHARE}
      AND b.total_amount > 0
    """,
    # The payments that succeeded (refunded in full when a refundable booking was cancelled).
    """
    INSERT INTO payments (id, booking_id, provider, provider_payment_id, status, amount, currency, amount_refunded,
                          created_by, created_at, updated_at, succeeded_at)
    SELECT md5('payment:' || b.id)::uuid, b.id, 'sandbox', 'pi_seed_' || md5('payment:' || b.id),
           CASE WHEN refunded THEN 'REFUNDED' ELSE 'SUCCEEDED' END, b.total_amount, b.currency,
           CASE WHEN refunded THEN b.total_amount ELSE 0 END, b.created_by,
           least(b.created_at + interval '3 seconds', b.confirmed_at), coalesce(b.cancelled_at, b.confirmed_at),
           b.confirmed_at
    FROM bookings AS b
    JOIN flight_prices AS f ON f.id = b.fare_id
    CROSS JOIN LATERAL (SELECT b.cancelled_at IS NOT NULL AND f.refundable AS refunded) AS r
    WHERE b.confirmed_at IS NOT NULL AND b.total_amount > 0
      AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.booking_id = b.id AND p.status <> 'FAILED')
    """,
    """
    INSERT INTO refunds (id, payment_id, booking_id, amount, currency, status, reason, provider_refund_id,
                         created_by, created_at, updated_at, source)
    SELECT md5('refund:' || b.id)::uuid, md5('payment:' || b.id)::uuid, b.id, b.total_amount, b.currency,
           'SUCCEEDED', 'booking cancelled (refundable fare)', 're_seed_' || md5('refund:' || b.id), b.created_by,
           b.cancelled_at, b.cancelled_at, 'cancellation'
    FROM bookings AS b
    JOIN payments AS p ON p.id = md5('payment:' || b.id)::uuid AND p.status = 'REFUNDED'
    WHERE NOT EXISTS (SELECT 1 FROM refunds AS r WHERE r.booking_id = b.id)
    """,
)
