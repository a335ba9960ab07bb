"""What the payment services share: the named queries, the lock order, reading payments back, and the outbox events.

Lock order, for every writer of payments: the booking's row (``bookings.lock_booking``), then the payment's
(``lock_payment``), then refunds. Creating an intent, applying a webhook, refunding and cancelling all follow it,
so none of them deadlocks another.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import Counter

from core_api.bookings._common import QUERIES as BOOKING_QUERIES
from core_api.bookings._common import LockedBooking
from core_api.outbox import emit
from core_api.payments.schemas import Payment, PaymentStatus, Refund
from core_api.security.crypto import CryptoError
from core_api.storage.db import load_queries, struct_row
from core_api.users.schemas import Role

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import AsyncConnection

    from core_api.auth.schemas import Principal
    from core_api.security.crypto import Cipher

__all__ = [
    "PAYMENT_EVENTS",
    "QUERIES",
    "LockedPayment",
    "client_secret_context",
    "emit_payment_event",
    "fetch_payments",
    "lock_booking_row",
    "lock_payment",
]

QUERIES = load_queries("payments")

PAYMENT_EVENTS = Counter(
    "flightdesk_payment_events_total", "Payment changes committed, by outbox event type.", ["event"]
)


class LockedPayment(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    booking_id: uuid.UUID
    provider: str
    provider_payment_id: str | None
    status: PaymentStatus
    amount: int
    currency: str
    amount_refunded: int
    created_by: uuid.UUID | None

    def snapshot(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "amount": {"amount": self.amount, "currency": self.currency},
            "amount_refunded": self.amount_refunded,
            "provider": self.provider,
        }


def client_secret_context(payment_id: uuid.UUID) -> str:
    return f"payments.client_secret:{payment_id}"


async def lock_booking_row(tx: AsyncConnection[Any], booking_id: uuid.UUID) -> LockedBooking:
    """The booking locked, whoever asks (callers have checked access, or are the provider)."""
    async with tx.cursor(row_factory=struct_row(LockedBooking)) as cursor:
        await cursor.execute(BOOKING_QUERIES["lock_booking"], {"id": booking_id})
        booking = await cursor.fetchone()
    assert booking is not None  # payments reference bookings, which are never deleted
    return booking


async def lock_payment(tx: AsyncConnection[Any], payment_id: uuid.UUID) -> LockedPayment:
    async with tx.cursor(row_factory=struct_row(LockedPayment)) as cursor:
        await cursor.execute(QUERIES["lock_payment"], {"id": payment_id})
        payment = await cursor.fetchone()
    assert payment is not None
    return payment


class _PaymentRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    booking_id: uuid.UUID
    pnr: str
    status: PaymentStatus
    amount: int
    currency: str
    amount_refunded: int
    provider: str
    client_secret_enc: bytes | None
    failure_code: str | None
    failure_message: str | None
    created_at: Any
    updated_at: Any
    succeeded_at: Any
    customer_id: uuid.UUID | None
    agent_id: uuid.UUID | None


def _may_pay(principal: Principal | None, row: _PaymentRow) -> bool:
    """The client secret completes the payment: only the booking's customer and agent (and admins) see it."""
    if principal is None:
        return True  # the service itself (sandbox, answers of POST /payments already checked)
    return principal.role is Role.ADMIN or principal.id in (row.customer_id, row.agent_id)


async def fetch_payments(
    conn: AsyncConnection[Any], cipher: Cipher, ids: Sequence[uuid.UUID], principal: Principal | None
) -> list[Payment]:
    """The payments of ``ids`` as the API shows them, in the order of ``ids``, with their refunds."""
    if not ids:
        return []
    async with conn.cursor(row_factory=struct_row(_PaymentRow)) as cursor:
        await cursor.execute(QUERIES["payment_detail"], {"ids": list(ids)})
        rows = {row.id: row for row in await cursor.fetchall()}
    async with conn.cursor(row_factory=struct_row(Refund)) as cursor:
        await cursor.execute(QUERIES["payment_refunds"], {"ids": list(ids)})
        refunds: dict[uuid.UUID, list[Refund]] = {}
        for refund in await cursor.fetchall():
            refunds.setdefault(refund.payment_id, []).append(refund)
    payments = []
    for payment_id in ids:
        row = rows.get(payment_id)
        if row is None:
            continue
        secret = None
        if row.client_secret_enc is not None and _may_pay(principal, row):
            try:
                secret = cipher.open(row.client_secret_enc, context=client_secret_context(row.id))
            except CryptoError:
                secret = None  # sealed with a key no longer configured: the intent cannot be completed anyway
        fields = msgspec.structs.asdict(row)
        for private in ("client_secret_enc", "customer_id", "agent_id"):
            fields.pop(private)
        payments.append(Payment(**fields, client_secret=secret, refunds=refunds.get(payment_id, [])))
    return payments


async def emit_payment_event(
    tx: AsyncConnection[Any],
    event_type: str,
    payment: LockedPayment,
    booking: LockedBooking,
    *,
    amount: int | None = None,
    refund_id: uuid.UUID | None = None,
) -> None:
    """``payment.succeeded|failed|refunded`` in the outbox, with the payload the notifications contract fixes."""
    payload: dict[str, Any] = {
        "payment_id": str(payment.id),
        "booking_id": str(booking.id),
        "pnr": booking.pnr,
        "amount": payment.amount if amount is None else amount,
        "currency": payment.currency,
        "customer_id": str(booking.customer_id) if booking.customer_id else None,
        "contact_email": booking.contact_email,
    }
    if refund_id is not None:
        payload["refund_id"] = str(refund_id)
    await emit(tx, event_type, ("payment", payment.id), payload)
