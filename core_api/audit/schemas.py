"""Wire types of the audit trail, and its catalogue: :class:`EventType`, every event the system records.

An event type is ``domain.action`` in lower case. Call sites pass a member (``EventType.BOOKING_CREATED``) or its
string (``"booking.created"``, as before the catalogue existed); the writer refuses anything not listed here, so
the catalogue is the complete list of what the trail can hold. Events of domains still being built (payments,
notifications) are listed ahead, so that their call sites need no change here.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

__all__ = [
    "SECURITY_EVENTS",
    "AuditEntry",
    "AuditPage",
    "ChainStatus",
    "CleanupResult",
    "CountByKey",
    "DailyCount",
    "EntityType",
    "EventCategory",
    "EventType",
    "Statistics",
]


class EventCategory(enum.StrEnum):
    AUTH = "auth"
    USERS = "users"
    BOOKINGS = "bookings"
    PAYMENTS = "payments"
    FLIGHTS = "flights"
    NOTIFICATIONS = "notifications"
    SECURITY = "security"
    SYSTEM = "system"


_CATEGORY_OF_DOMAIN = {
    "auth": EventCategory.AUTH,
    "user": EventCategory.USERS,
    "booking": EventCategory.BOOKINGS,
    "payment": EventCategory.PAYMENTS,
    "refund": EventCategory.PAYMENTS,
    "webhook": EventCategory.PAYMENTS,
    "flight": EventCategory.FLIGHTS,
    "notification": EventCategory.NOTIFICATIONS,
    "security": EventCategory.SECURITY,
    "system": EventCategory.SYSTEM,
}


class EventType(enum.StrEnum):
    """Every audit event, by ``domain.action``."""

    # auth: sign-up, sessions, passwords
    AUTH_REGISTER = "auth.register"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_LOCKOUT = "auth.lockout"
    AUTH_REFRESH = "auth.refresh"
    AUTH_REFRESH_REUSE_DETECTED = "auth.refresh_reuse_detected"
    AUTH_LOGOUT = "auth.logout"
    AUTH_PASSWORD_RESET_REQUESTED = "auth.password_reset_requested"
    AUTH_PASSWORD_RESET_COMPLETED = "auth.password_reset_completed"
    AUTH_PASSWORD_CHANGED = "auth.password_changed"
    AUTH_PASSWORD_CHANGE_FAILED = "auth.password_change_failed"
    # users: the directory
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_REACTIVATED = "user.reactivated"
    USER_DELETED = "user.deleted"
    # bookings: the lifecycle of SPEC §5
    BOOKING_CREATED = "booking.created"
    BOOKING_UPDATED = "booking.updated"
    BOOKING_CONFIRMED = "booking.confirmed"
    BOOKING_PAYMENT_FAILED = "booking.payment_failed"
    BOOKING_CANCELLED = "booking.cancelled"
    BOOKING_EXPIRED = "booking.expired"
    # payments, refunds and the provider's webhooks
    PAYMENT_CREATED = "payment.created"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_KEPT = "payment.kept"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_REFUND_FAILED = "payment.refund_failed"
    REFUND_CREATED = "refund.created"
    REFUND_REQUESTED = "refund.requested"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    WEBHOOK_RECEIVED = "webhook.received"
    WEBHOOK_REJECTED = "webhook.rejected"
    # flights: operations
    FLIGHT_CREATED = "flight.created"
    FLIGHT_UPDATED = "flight.updated"
    FLIGHT_DELAYED = "flight.delayed"
    FLIGHT_CANCELLED = "flight.cancelled"
    # notifications
    NOTIFICATION_QUEUED = "notification.queued"
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"
    NOTIFICATION_RETRIED = "notification.retried"
    NOTIFICATION_CLEARED = "notification.cleared"
    # security: refusals of the gateway
    SECURITY_ACCESS_DENIED = "security.access_denied"
    SECURITY_RATE_LIMITED = "security.rate_limited"
    # system: the trail itself
    SYSTEM_AUDIT_CLEANUP = "system.audit_cleanup"

    @property
    def domain(self) -> str:
        return self.value.partition(".")[0]

    @property
    def category(self) -> EventCategory:
        return _CATEGORY_OF_DOMAIN[self.domain]


SECURITY_EVENTS: tuple[EventType, ...] = (
    EventType.AUTH_LOGIN_FAILED,
    EventType.AUTH_LOCKOUT,
    EventType.AUTH_REFRESH_REUSE_DETECTED,
    EventType.AUTH_PASSWORD_CHANGE_FAILED,
    EventType.SECURITY_ACCESS_DENIED,
    EventType.SECURITY_RATE_LIMITED,
)
"""What ``GET /audit/security/events`` lists (and the partial index ``audit_logs_security_time_idx`` covers)."""


class EntityType(enum.StrEnum):
    """What an audit row can be about (singular, lower case)."""

    USER = "user"
    BOOKING = "booking"
    PAYMENT = "payment"
    REFUND = "refund"
    FLIGHT = "flight"
    NOTIFICATION = "notification"
    WEBHOOK = "webhook"


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One audit row as an admin reads it: personal data filled in while it is kept, ``[ERASED]`` once erased."""

    id: int
    occurred_at: datetime
    event_type: str
    category: str
    actor_id: UUID | None
    actor_role: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    entity_type: str | None
    entity_id: str | None
    before: Any
    after: Any
    metadata: Any
    sealed: bool
    """Whether the row is linked into the hash chain yet (the sealer runs seconds behind the writes)."""


class AuditPage(msgspec.Struct, frozen=True):
    """A page of rows, newest first; pass ``next_cursor`` as ``cursor`` for the next (``null``: that was the last)."""

    items: list[AuditEntry]
    next_cursor: str | None


class ChainStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of walking the sealed chain."""

    valid: bool
    checked: int
    """Sealed rows whose chain hash was recomputed (those retention removed are not counted)."""
    first_broken_position: int | None = None
    first_broken_id: int | None = None
    """The audit row at the first position whose hash, link or row does not check out."""
    reason: str | None = None
    sealed_through: int = 0
    """The last chain position sealed so far."""
    checkpoint_position: int = 0
    """Retention removed the rows up to this position; the chain is checked from the one after it."""
    unsealed: int = 0
    """Committed rows not linked into the chain yet."""
    oldest_unsealed_at: datetime | None = None


class CleanupResult(msgspec.Struct, frozen=True, kw_only=True):
    deleted: int
    cutoff: datetime
    checkpoint_position: int
    """The chain position retention now starts after; ``GET /audit/verify`` checks from the next one."""
    kept_older: int
    """Rows older than the cutoff kept because a younger row precedes them in the chain, or they are not sealed yet."""


class CountByKey(msgspec.Struct, frozen=True):
    key: str | None
    count: int


class DailyCount(msgspec.Struct, frozen=True):
    day: str
    count: int


class Statistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counts over ``[from, to)``."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    total: int
    by_category: list[CountByKey]
    by_event_type: list[CountByKey]
    by_actor_role: list[CountByKey]
    per_day: list[DailyCount]
    security_events: int
    unsealed: int
