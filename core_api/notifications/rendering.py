"""Mail templates: each an HTML and a plain-text Jinja2 template plus a subject, compiled once at import.

HTML is autoescaped (a name like ``<b>Bob</b>`` arrives as text), the plain text is not (it is never parsed as
markup) and subjects lose line breaks (a header cannot be split). Times show in the zone of the airport they
happen at (departure in the origin's, arrival in the destination's) with the zone's abbreviation; money in its
currency's minor units (none for JPY, three for KWD). Every booking mail carries its PNR and the manage-my-booking
link built from ``FLIGHTDESK_NOTIFICATIONS_PUBLIC_URL``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import msgspec

from core_api.notifications.schemas import (
    BookingCancelledContext,
    BookingConfirmationContext,
    BookingReminderContext,
    FlightChangedContext,
    MailMoney,
    PasswordResetContext,
    PaymentFailedContext,
    PaymentReceiptContext,
    TemplateName,
    WelcomeContext,
)

__all__ = [
    "BULK_PRIORITY",
    "HIGH_PRIORITY",
    "NORMAL_PRIORITY",
    "TEMPLATES",
    "MailTemplate",
    "Rendered",
    "format_money",
    "local_time",
]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

HIGH_PRIORITY = 1
"""Password resets and failed payments: someone is waiting for them."""
NORMAL_PRIORITY = 5
BULK_PRIORITY = 7
"""Reminders: the cron queues them in waves, which must not hold up the mails of what people just did."""

# ISO 4217 currencies whose minor unit is not the cent.
_MINOR_DIGITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
    "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3,
    "TND": 3,
}  # fmt: skip
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "AUD": "A$", "CAD": "C$", "SGD": "S$", "AED": "AED "}


def format_money(money: MailMoney | dict[str, Any]) -> str:
    """``$1,234.50``, ``¥45,000``, ``KWD 1.250``: the amount in its currency's minor units, grouped."""
    amount, currency = (
        (money["amount"], money["currency"]) if isinstance(money, dict) else (money.amount, money.currency)
    )
    digits = _MINOR_DIGITS.get(currency, 2)
    major = Decimal(amount).scaleb(-digits)
    text = f"{major:,.{digits}f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{currency} {text}"


def local_time(moment: datetime, zone: str) -> str:
    """``Tue 15 Dec 2026, 18:30 GMT``: the moment in ``zone`` (UTC when the zone is unknown)."""
    try:
        tz: Any = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = moment.astimezone(tz)
    return f"{local:%a %d %b %Y, %H:%M} {local.tzname()}"


def _environment(*, html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        # Plain-text mails are never parsed as markup, so only the HTML environment escapes.
        autoescape=html,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = format_money
    env.filters["local_time"] = local_time
    return env


_HTML = _environment(html=True)
_TEXT = _environment(html=False)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class MailTemplate:
    """One mail: its context type (its fields), priority, and compiled subject, text and HTML templates."""

    name: TemplateName
    context_type: type[msgspec.Struct]
    priority: int
    subject: jinja2.Template
    text: jinja2.Template
    html: jinja2.Template

    def subject_for(self, context: msgspec.Struct, public_url: str) -> str:
        return _one_line(self.subject.render(self._variables(context, public_url)))

    def render(self, context: msgspec.Struct, public_url: str) -> Rendered:
        variables = self._variables(context, public_url)
        return Rendered(
            subject=_one_line(self.subject.render(variables)),
            text=self.text.render(variables),
            html=self.html.render(variables),
        )

    def decode(self, payload: dict[str, Any]) -> msgspec.Struct:
        """The context stored with a notification, back as this template's Struct."""
        return msgspec.json.decode(msgspec.json.encode(payload), type=self.context_type)

    @staticmethod
    def _variables(context: msgspec.Struct, public_url: str) -> dict[str, Any]:
        variables = {field: getattr(context, field) for field in context.__struct_fields__}
        pnr = variables.get("pnr")
        variables["manage_url"] = f"{public_url.rstrip('/')}/api/v1/bookings/pnr/{pnr}" if pnr else None
        variables["site_url"] = public_url.rstrip("/")
        return variables


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:250]


_SUBJECTS: dict[TemplateName, tuple[type[msgspec.Struct], int, str]] = {
    TemplateName.BOOKING_CONFIRMATION: (
        BookingConfirmationContext,
        NORMAL_PRIORITY,
        "Booking confirmed: {{ flight.origin }} to {{ flight.destination }} ({{ pnr }})",
    ),
    TemplateName.BOOKING_CANCELLED: (BookingCancelledContext, NORMAL_PRIORITY, "Booking {{ pnr }} cancelled"),
    TemplateName.PAYMENT_RECEIPT: (
        PaymentReceiptContext,
        NORMAL_PRIORITY,
        "{{ 'Refund' if kind == 'refund' else 'Receipt' }} for booking {{ pnr }}: {{ amount | money }}",
    ),
    TemplateName.PAYMENT_FAILED: (PaymentFailedContext, HIGH_PRIORITY, "Payment failed for booking {{ pnr }}"),
    TemplateName.PASSWORD_RESET: (PasswordResetContext, HIGH_PRIORITY, "Reset your Flightdesk password"),
    TemplateName.WELCOME: (WelcomeContext, NORMAL_PRIORITY, "Welcome to Flightdesk, {{ full_name }}"),
    TemplateName.BOOKING_REMINDER: (
        BookingReminderContext,
        BULK_PRIORITY,
        "Your flight {{ flight.flight_number }} to {{ flight.destination }} leaves tomorrow ({{ pnr }})",
    ),
    TemplateName.FLIGHT_CHANGED: (
        FlightChangedContext,
        NORMAL_PRIORITY,
        "Flight {{ flight.flight_number }} {{ change }}: booking {{ pnr }}",
    ),
}

TEMPLATES: dict[str, MailTemplate] = {
    name.value: MailTemplate(
        name=name,
        context_type=context_type,
        priority=priority,
        subject=_TEXT.from_string(subject),
        text=_TEXT.get_template(f"{name.value}.txt"),
        html=_HTML.get_template(f"{name.value}.html"),
    )
    for name, (context_type, priority, subject) in _SUBJECTS.items()
}
"""Every template by name, compiled when this module is imported (a broken template fails the start)."""
