"""Wire types of ``/notifications`` and the context each mail template is rendered from.

A template's context Struct is its list of fields: the outbox handlers build one, ``POST /notifications/send``
decodes the admin's ``context`` into it (strictly, so a missing or mistyped field is a 422 naming it), and the
renderer reads only what it declares.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

__all__ = [
    "BookingCancelledContext",
    "BookingConfirmationContext",
    "BookingReminderContext",
    "FlightChangedContext",
    "MailFlight",
    "MailMoney",
    "Notification",
    "NotificationCount",
    "NotificationPage",
    "NotificationSend",
    "NotificationStats",
    "NotificationStatus",
    "PasswordResetContext",
    "PaymentFailedContext",
    "PaymentReceiptContext",
    "TemplateName",
    "WelcomeContext",
    "WriteResult",
]


class TemplateName(enum.StrEnum):
    BOOKING_CONFIRMATION = "booking_confirmation"
    BOOKING_CANCELLED = "booking_cancelled"
    PAYMENT_RECEIPT = "payment_receipt"
    PAYMENT_FAILED = "payment_failed"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a template's name
    WELCOME = "welcome"
    BOOKING_REMINDER = "booking_reminder"
    FLIGHT_CHANGED = "flight_changed"


class NotificationStatus(enum.StrEnum):
    """``PENDING`` waits for (or between) send attempts, ``SENDING`` is held by a worker, ``SENT`` was accepted by
    the SMTP server, ``FAILED`` used its three attempts (``retry-failed`` gives it three more)."""

    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# -- template contexts -------------------------------------------------------------------------------------------

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Pnr = Annotated[str, msgspec.Meta(pattern=r"^[A-HJKMNP-Z2-9]{6}$", description="a 6-character booking reference")]
AirportCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="an IANA zone, e.g. Europe/London")]
EmailAddress = Annotated[
    str,
    msgspec.Meta(pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$", max_length=320, description="an email address"),
]


class _Context(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class MailMoney(_Context, frozen=True):
    amount: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000_000, description="minor units")]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class MailFlight(_Context, frozen=True):
    """A flight as mails show it: departure in the origin's zone, arrival in the destination's."""

    flight_number: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2}[0-9]{1,4}$")]
    airline: Text
    origin: AirportCode
    destination: AirportCode
    origin_tz: TimeZone
    destination_tz: TimeZone
    departure_at: datetime
    arrival_at: datetime
    origin_city: Text | None = None
    destination_city: Text | None = None


class BookingConfirmationContext(_Context, frozen=True):
    customer_name: Text
    pnr: Pnr
    flight: MailFlight
    cabin: Text
    passengers: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=9)]
    total: MailMoney


class BookingCancelledContext(_Context, frozen=True):
    customer_name: Text
    pnr: Pnr
    flight: MailFlight


class PaymentReceiptContext(_Context, frozen=True):
    """A payment taken (``kind`` payment) or money given back (``kind`` refund, with its ``refund_id``)."""

    customer_name: Text
    pnr: Pnr
    amount: MailMoney
    payment_id: Text
    kind: Literal["payment", "refund"] = "payment"
    refund_id: Text | None = None
    flight: MailFlight | None = None


class PaymentFailedContext(_Context, frozen=True):
    customer_name: Text
    pnr: Pnr
    amount: MailMoney
    flight: MailFlight | None = None


class PasswordResetContext(_Context, frozen=True):
    full_name: Text
    token: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]
    """Sealed (``Cipher.seal_text`` under ``RESET_TOKEN_SEAL``) while the mail is stored; opened when it is rendered."""
    expires_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = 30


class WelcomeContext(_Context, frozen=True):
    full_name: Text


class BookingReminderContext(_Context, frozen=True):
    customer_name: Text
    pnr: Pnr
    flight: MailFlight


class FlightChangedContext(_Context, frozen=True):
    """``flight`` carries the new times; ``change`` is ``delayed``, ``retimed`` or ``cancelled``."""

    customer_name: Text
    pnr: Pnr
    change: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    flight: MailFlight
    old_departure_at: datetime
    old_arrival_at: datetime


# -- wire types ----------------------------------------------------------------------------------------------------


class NotificationSend(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A mail an admin sends by hand: ``context`` holds the template's fields (see each template's schema)."""

    template: TemplateName
    recipient: EmailAddress
    context: dict[str, Any]
    booking_id: UUID | None = None


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    user_id: UUID | None
    booking_id: UUID | None
    template: str
    recipient: str
    subject: str
    status: NotificationStatus
    priority: int
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class NotificationPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Notification]
    total: int
    page: int
    page_size: int


class NotificationCount(msgspec.Struct, frozen=True, kw_only=True):
    queued: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0


class NotificationStats(msgspec.Struct, frozen=True, kw_only=True):
    """Mails not cleared: queued (PENDING), in progress (SENDING), completed (SENT), failed; totals and per
    template."""

    queued: int
    in_progress: int
    completed: int
    failed: int
    by_template: dict[str, NotificationCount]


class WriteResult(msgspec.Struct, frozen=True, kw_only=True):
    """How many mails a bulk action touched."""

    count: int
