"""Paying for a booking (SPEC §4 payments, §5): creating its intent, reading payments, refunding, and the sandbox's
confirmation. Webhooks are :mod:`core_api.payments.webhooks`, refunds' mechanics :mod:`core_api.payments._refunds`.

Creating an intent locks the booking's row for the whole request, the provider call included: concurrent requests
for one booking queue there, so the second finds the first's open intent and answers it (one open intent per
booking, also a unique index). The call is made before anything is written; a provider that does not answer within
``FLIGHTDESK_PAYMENT_PROVIDER_TIMEOUT_SECONDS`` is a 503 and the transaction rolls back, leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import record
from core_api.bookings import idempotency
from core_api.bookings._common import emit_booking_event, lock_booking, scope_of
from core_api.bookings.schemas import BookingStatus
from core_api.payments._records import (
    QUERIES,
    client_secret_context,
    fetch_payments,
    lock_booking_row,
    lock_payment,
)
from core_api.payments._refunds import fetch_refund, reconcile_pending_refunds, reserve_refund, settle_refund
from core_api.payments.providers import PaymentProvider, ProviderRefused, ProviderUnavailable, load_provider
from core_api.payments.schemas import OPEN, Payment, PaymentCreate, PaymentPage, PaymentStatus, RefundCreate
from core_api.payments.webhooks import receive, sandbox_event, sign
from core_api.security.demo_keys import demo_key
from core_api.storage.db import transaction
from core_api.users.schemas import Role
from core_api.web.errors import (
    Forbidden,
    HoldExpired,
    InvalidState,
    NotFound,
    PaymentFailed,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.audit.service import Actor
    from core_api.auth.schemas import Principal
    from core_api.bookings._common import LockedBooking
    from core_api.security.crypto import Cipher
    from core_api.settings import Settings
    from core_api.storage.db import DbPool

__all__ = [
    "CreateResult",
    "PaymentService",
    "create_payment",
    "get_payment",
    "list_payments",
    "load_webhook_secret",
    "reconcile_pending_refunds",
    "refund_payment",
    "sandbox_confirm",
]

_encode = msgspec.json.Encoder().encode


def load_webhook_secret(settings: Settings) -> str:
    """``FLIGHTDESK_STRIPE_WEBHOOK_SECRET``, or (outside production only) a demo secret kept in the state dir."""
    if settings.stripe.webhook_secret:
        return settings.stripe.webhook_secret
    path = settings.state_dir / "stripe-webhook.key"
    return demo_key(path, lambda: f"whsec_{secrets.token_hex(24)}", setting="FLIGHTDESK_STRIPE_WEBHOOK_SECRET")


class PaymentService:
    """What payments need: the pool, settings, the field cipher, the provider and the webhook signing secret."""

    __slots__ = ("cipher", "pool", "provider", "settings", "webhook_secret")

    def __init__(
        self,
        pool: DbPool,
        settings: Settings,
        cipher: Cipher,
        provider: PaymentProvider | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.cipher = cipher
        self.provider = provider or load_provider(settings)
        self.webhook_secret = webhook_secret or load_webhook_secret(settings)

    async def settle_refund(self, refund_id: uuid.UUID) -> None:
        await settle_refund(self, refund_id)


@dataclass(frozen=True)
class CreateResult:
    status_code: int
    body: bytes
    payment_id: uuid.UUID | None
    replayed: bool


def _may_pay(principal: Principal, customer_id: uuid.UUID | None, agent_id: uuid.UUID | None) -> bool:
    return principal.role is Role.ADMIN or principal.id in (customer_id, agent_id)


async def create_payment(
    service: PaymentService,
    actor: Actor,
    principal: Principal,
    data: PaymentCreate,
    key: idempotency.IdempotencyKey | None = None,
) -> CreateResult:
    """The booking's intent, for the amount the booking owes: created at the provider, or the open one answered.

    404 when the caller may not see the booking, 403 when they may see but not pay it, 409 ``INVALID_STATE`` /
    ``HOLD_EXPIRED`` when it is not awaiting payment, 503 when the provider does not answer (nothing written).
    """
    async with transaction(service.pool) as tx:
        if key is not None:
            stored = await idempotency.claim(tx, key)
            if stored is not None:
                return CreateResult(stored.status_code, stored.body, None, replayed=True)
        booking = await lock_booking(tx, data.booking_id, principal)
        if not _may_pay(principal, booking.customer_id, booking.agent_id):
            raise Forbidden("Only the booking's customer or the agent who made it pays for it.")
        if booking.status is not BookingStatus.PENDING_PAYMENT:
            raise InvalidState(f"The booking is {booking.status.value}; there is nothing to pay.")
        if booking.hold_lapsed:
            raise HoldExpired("The hold on this booking has lapsed; book again.")
        if booking.departed:
            raise InvalidState("The flight has departed.")
        if booking.total_amount <= 0:
            raise InvalidState("The booking costs nothing; there is nothing to pay.")
        open_row = await (await tx.execute(QUERIES["open_payment"], {"booking_id": booking.id})).fetchone()
        if open_row is not None:
            payment_id = open_row["id"]
        else:
            payment_id = uuid.uuid4()
            await _create_intent(service, tx, actor, principal, booking, payment_id)
        [payment] = await fetch_payments(tx, service.cipher, [payment_id], principal)
        body = _encode(payment)
        if key is not None:
            await idempotency.store(tx, key, 201, body)
    return CreateResult(201, body, payment_id, replayed=False)


async def _create_intent(
    service: PaymentService,
    tx: AsyncConnection[Any],
    actor: Actor,
    principal: Principal,
    booking: LockedBooking,
    payment_id: uuid.UUID,
) -> None:
    metadata = {"payment_id": str(payment_id), "booking_id": str(booking.id), "pnr": booking.pnr}
    try:
        async with asyncio.timeout(service.settings.payment.provider_timeout_seconds):
            intent = await service.provider.create_intent(
                amount=booking.total_amount,
                currency=booking.currency,
                metadata=metadata,
                idempotency_key=f"payment-{payment_id}",
            )
    except (ProviderUnavailable, TimeoutError):
        raise ServiceUnavailable("The payment provider did not answer; nothing was charged. Retry shortly.") from None
    except ProviderRefused as exc:
        raise PaymentFailed(str(exc)) from None
    await tx.execute(
        QUERIES["insert_payment"],
        {
            "id": payment_id,
            "booking_id": booking.id,
            "provider": service.provider.name,
            "provider_payment_id": intent.id,
            "amount": booking.total_amount,
            "currency": booking.currency,
            "client_secret_enc": service.cipher.seal(intent.client_secret, context=client_secret_context(payment_id)),
            "key_version": service.cipher.current,
            "created_by": principal.id,
        },
    )
    await emit_booking_event(tx, "booking.payment_pending", booking, status=BookingStatus.PENDING_PAYMENT)
    await record(
        tx,
        EventType.PAYMENT_CREATED,
        actor,
        ("payment", payment_id),
        after={
            "status": PaymentStatus.REQUIRES_PAYMENT,
            "amount": {"amount": booking.total_amount, "currency": booking.currency},
            "provider": service.provider.name,
        },
        metadata={"booking_id": booking.id, "provider_payment_id": intent.id},
    )


async def _visible_payment(conn: AsyncConnection[Any], principal: Principal, payment_id: uuid.UUID) -> uuid.UUID:
    """The booking of a payment the caller may see; 404 otherwise (whether it exists or not)."""
    params = {"id": payment_id, **scope_of(principal).params()}
    row = await (await conn.execute(QUERIES["payment_visible"], params)).fetchone()
    if row is None:
        raise NotFound("Payment not found.")
    return uuid.UUID(str(row["booking_id"]))


async def list_payments(
    service: PaymentService,
    principal: Principal,
    *,
    booking_id: uuid.UUID | None,
    status: PaymentStatus | None,
    page: int,
    page_size: int,
) -> PaymentPage:
    """The payments the caller may see (scoped by their bookings, as ``GET /bookings``), newest first."""
    params = {
        **scope_of(principal).params(),
        "booking_id": booking_id,
        "status": status.value if status else None,
        "limit": page_size,
        "offset": (page - 1) * page_size,
    }
    async with service.pool.connection() as conn:
        row = await (await conn.execute(QUERIES["payment_page"], params)).fetchone()
        assert row is not None
        items = await fetch_payments(conn, service.cipher, row["ids"], principal)
    return PaymentPage(items=items, total=int(row["total"]), page=page, page_size=page_size)


async def get_payment(service: PaymentService, principal: Principal, payment_id: uuid.UUID) -> Payment:
    async with service.pool.connection() as conn:
        await _visible_payment(conn, principal, payment_id)
        payments = await fetch_payments(conn, service.cipher, [payment_id], principal)
    if not payments:
        raise NotFound("Payment not found.")
    return payments[0]


async def refund_payment(
    service: PaymentService,
    actor: Actor,
    principal: Principal,
    payment_id: uuid.UUID,
    data: RefundCreate,
    key: idempotency.IdempotencyKey | None = None,
) -> tuple[int, bytes, bool]:
    """Refund a payment in full or in part: admins, the airline agent of the flight, and the booking's customer or
    agent when its fare is refundable. Answers (status, JSON body, replayed).
    """
    async with transaction(service.pool) as tx:
        if key is not None:
            stored = await idempotency.claim(tx, key)
            if stored is not None:
                return stored.status_code, stored.body, True
        booking_id = await _visible_payment(tx, principal, payment_id)
        booking = await lock_booking_row(tx, booking_id)
        if principal.role is Role.BUSINESS_OWNER:
            raise Forbidden("Business owners may read payments, not refund them.")
        if principal.role in (Role.CUSTOMER, Role.TRAVEL_AGENT):
            fare = await (await tx.execute(QUERIES["fare_refundable"], {"fare_id": booking.fare_id})).fetchone()
            if fare is None or not fare["refundable"]:
                raise Forbidden("This fare is not refundable; the airline or an admin may still refund it.")
        payment = await lock_payment(tx, payment_id)
        refund_id = await reserve_refund(
            tx, actor, booking, payment, amount=data.amount, reason=data.reason, source="api"
        )
        pending = await fetch_refund(tx, refund_id)
        if key is not None:
            await idempotency.store(tx, key, 201, _encode(pending))
    await settle_refund(service, refund_id)
    async with transaction(service.pool) as tx:
        refund = await fetch_refund(tx, refund_id)
        body = _encode(refund)
        if key is not None:  # a replay answers what the provider said, not the pending state before it
            await idempotency.store(tx, key, 201, body)
    return 201, body, False


async def sandbox_confirm(
    service: PaymentService, actor: Actor, principal: Principal, payment_id: uuid.UUID, outcome: str
) -> Payment:
    """Settle a sandbox intent: the sandbox signs the event Stripe would send and delivers it to our webhook path,
    which verifies the signature and applies it like any other.
    """
    async with service.pool.connection() as conn:
        booking_id = await _visible_payment(conn, principal, payment_id)
        row = await (await conn.execute(QUERIES["payment_detail"], {"ids": [payment_id]})).fetchone()
    assert row is not None
    if not _may_pay(principal, row["customer_id"], row["agent_id"]):
        raise Forbidden("Only the booking's customer or the agent who made it pays for it.")
    if row["provider"] != "sandbox" or service.provider.name != "sandbox":
        raise InvalidState("This payment is not with the sandbox provider.")
    if PaymentStatus(row["status"]) not in OPEN | {PaymentStatus.FAILED}:
        raise InvalidState(f"The payment is {row['status']}; there is nothing to settle.")
    async with transaction(service.pool) as tx:
        booking = await lock_booking_row(tx, booking_id)
        payment = await lock_payment(tx, payment_id)
    payload = msgspec.json.encode(sandbox_event(payment, booking, outcome))
    await receive(service, actor, payload, sign(payload, service.webhook_secret))
    return await get_payment(service, principal, payment_id)
