"""Wire types of payments (SPEC §4 payments): what creating, refunding and the sandbox take, and what is read back."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

__all__ = [
    "Payment",
    "PaymentCreate",
    "PaymentPage",
    "PaymentStatus",
    "Refund",
    "RefundCreate",
    "RefundStatus",
    "SandboxConfirm",
    "WebhookAck",
]


class PaymentStatus(enum.StrEnum):
    REQUIRES_PAYMENT = "REQUIRES_PAYMENT"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"


PAID = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED})
"""A payment whose money arrived (refunded or not)."""
OPEN = frozenset({PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.PROCESSING})


class RefundStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Unknown fields are refused: a body carrying a card number or CVC is a 422, never stored or logged.
    pass


class PaymentCreate(_Request):
    """Pay for a booking; the amount is the booking's, never the client's."""

    booking_id: UUID


Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, description="why the money goes back")]
MinorUnits = Annotated[int, msgspec.Meta(ge=1, le=10**12, description="in minor units of the payment's currency")]


class RefundCreate(_Request):
    """Refund all that remains of a payment, or ``amount`` of it."""

    amount: MinorUnits | None = None
    reason: Reason | None = None


class SandboxConfirm(_Request):
    """How the sandbox settles the intent: it then sends the webhook Stripe would."""

    outcome: Literal["succeeded", "failed"]


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    """A refund: ``PENDING`` until the provider answers (the worker retries one that got no answer)."""

    id: UUID
    payment_id: UUID
    booking_id: UUID
    amount: int
    currency: str
    status: RefundStatus
    reason: str | None
    source: str
    created_at: datetime
    updated_at: datetime


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """A payment intent of a booking. ``client_secret`` completes it with the provider's client library (shown to
    the customer and agent of the booking only); amounts are minor units.
    """

    id: UUID
    booking_id: UUID
    pnr: str
    status: PaymentStatus
    amount: int
    currency: str
    amount_refunded: int
    provider: str
    client_secret: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None
    refunds: list[Refund] = msgspec.field(default_factory=list)


class PaymentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Payment]
    total: int
    page: int
    page_size: int


class WebhookAck(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a verified webhook: stored (``duplicate`` when its id was seen before) and applied once."""

    received: bool
    duplicate: bool
    event_id: str
    type: str
