"""The worker's side of notifications: the send job, the reminder cron and the sweep for stalled mails.

``send_notification`` claims its row, renders the template, talks SMTP and records the outcome. Every delivery
error becomes arq's ``Retry`` (arq retries nothing else) with an exponential backoff (``retry_base``, then twice
that); the third failed attempt leaves the row FAILED, kept for ``POST /notifications/retry-failed``. Each attempt
counts in the row's ``attempts`` and writes its error to ``last_error``; a sent or finally failed mail writes an
audit row (``notification.sent`` / ``notification.failed``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from arq import Retry
from prometheus_client import Counter

from core_api.audit.schemas import EventType
from core_api.audit.service import SYSTEM, record
from core_api.auth.service import RESET_TOKEN_SEAL
from core_api.notifications.delivery import DeliveryError, build_message
from core_api.notifications.handlers import queue_booking_mail
from core_api.notifications.notifier import Notifier
from core_api.notifications.rendering import TEMPLATES
from core_api.notifications.schemas import PasswordResetContext, TemplateName
from core_api.notifications.service import QUERIES, enqueue_send
from core_api.storage.db import DbPool, transaction

__all__ = [
    "MAX_ATTEMPTS",
    "REMINDER_NAMESPACE",
    "SENDS",
    "Notifier",
    "requeue_stalled_mail",
    "send_notification",
    "send_reminders",
]

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STALLED_AFTER_SECONDS = 300.0
REMINDER_NAMESPACE = uuid.UUID("5f0f3c1e-7a0b-4d55-9a51-3c1f0b6f2d13")
"""Reminders have no outbox event: their event id is uuid5 of this and the booking id, the same on every run."""

SENDS = Counter(
    "flightdesk_notifications_total",
    "Mail send attempts by template and outcome (sent, retried, failed).",
    ["template", "outcome"],
)


async def send_notification(ctx: dict[str, Any], notification_id: str) -> str:
    """Send one queued mail; returns what became of it (``sent``, ``failed``, or the state it was already in)."""
    notifier: Notifier = ctx["notifier"]
    async with notifier.pool.connection() as conn:
        claim = await (
            await conn.execute(QUERIES["claim_notification"], {"id": notification_id, "lease": notifier.lease_seconds})
        ).fetchone()
        if claim is None:
            state = await (await conn.execute(QUERIES["notification_state"], {"id": notification_id})).fetchone()
    if claim is None:
        if state is None:
            return "missing"
        if state["status"] in ("PENDING", "SENDING"):
            # Another run holds it (or just gave it back): look again once that claim could have run out.
            raise Retry(defer=float(state["lease_left"]) + 1.0)
        return str(state["status"]).lower()

    template_name = claim["template"]
    attempts = claim["attempts"]
    try:
        mail = TEMPLATES[template_name]
        rendered = mail.render(_opened(mail.decode(claim["payload"]), notifier), notifier.public_url)
        message = build_message(notifier.mailer.sender, claim["recipient"], rendered, notification_id=claim["id"])
    except Exception as exc:  # a stored context the template cannot render: no retry would help
        logger.exception("notification %s cannot be rendered", notification_id)
        await _finish(notifier.pool, claim, "mark_failed", f"render: {type(exc).__name__}: {exc}"[:1000])
        SENDS.labels(template_name, "failed").inc()
        return "failed"

    try:
        await notifier.mailer.send(message)
    except DeliveryError as exc:
        error = str(exc)
        if attempts < MAX_ATTEMPTS:
            async with transaction(notifier.pool) as tx:
                await tx.execute(QUERIES["mark_retry"], {"id": claim["id"], "error": error})
            SENDS.labels(template_name, "retried").inc()
            delay = notifier.retry_base * 2 ** (attempts - 1)
            logger.warning(
                "notification %s attempt %d failed (%s); retrying in %.1fs", claim["id"], attempts, error, delay
            )
            raise Retry(defer=delay) from exc
        await _finish(notifier.pool, claim, "mark_failed", error)
        SENDS.labels(template_name, "failed").inc()
        logger.error("notification %s failed after %d attempts: %s", claim["id"], attempts, error)
        return "failed"
    await _finish(notifier.pool, claim, "mark_sent", None)
    SENDS.labels(template_name, "sent").inc()
    return "sent"


def _opened(context: msgspec.Struct, notifier: Notifier) -> msgspec.Struct:
    """The context with its sealed values opened: only now, for the message, is a reset token in the clear."""
    if isinstance(context, PasswordResetContext):
        return msgspec.structs.replace(
            context, token=notifier.cipher.open_text(context.token, context=RESET_TOKEN_SEAL)
        )
    return context


async def _finish(pool: DbPool, claim: dict[str, Any], query: str, error: str | None) -> None:
    event = EventType.NOTIFICATION_SENT if query == "mark_sent" else EventType.NOTIFICATION_FAILED
    async with transaction(pool) as tx:
        await tx.execute(QUERIES[query], {"id": claim["id"], "error": error})
        await record(
            tx,
            event,
            SYSTEM,
            ("notification", claim["id"]),
            metadata={"template": claim["template"], "attempts": claim["attempts"], "error": error},
        )


async def send_reminders(ctx: dict[str, Any]) -> int:
    """Queue ``booking_reminder`` for confirmed bookings leaving within ``reminder_hours`` that have none yet."""
    notifier: Notifier = ctx["notifier"]
    async with notifier.pool.connection() as conn:
        rows = await (
            await conn.execute(
                QUERIES["bookings_due_reminder"], {"window": notifier.reminder_hours * 3600.0, "limit": 500}
            )
        ).fetchall()
    for row in rows:
        event_id = uuid.uuid5(REMINDER_NAMESPACE, str(row["id"]))
        await queue_booking_mail(notifier, event_id, TemplateName.BOOKING_REMINDER, row["id"])
    return len(rows)


async def requeue_stalled_mail(ctx: dict[str, Any]) -> int:
    """Enqueue again the mails that wait without a job (lost with Redis) or under a dead sender's claim."""
    notifier: Notifier = ctx["notifier"]
    async with notifier.pool.connection() as conn:
        rows = await (
            await conn.execute(QUERIES["stalled_notifications"], {"idle": STALLED_AFTER_SECONDS, "limit": 1000})
        ).fetchall()
    for row in rows:
        await enqueue_send(notifier.redis, row["id"], row["priority"])
    return len(rows)
