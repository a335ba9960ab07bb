"""Notification rules: queue a mail once per (event, recipient), hand it to a send job, and the admin's views.

**Once.** A mail is a ``notifications`` row keyed by the event that caused it and its recipient (unique in the
database). The outbox handlers insert it with ``ON CONFLICT DO NOTHING``, so twenty concurrent replays of one event
make one row; only a worker that *claims* the row (PENDING → SENDING, one UPDATE) may send it, so two jobs for one
row send once. A worker killed mid-send leaves its claim with a lease that runs out; the job's next run takes it
again. (A worker killed after the SMTP server accepted the mail but before the row says SENT sends it again when
the job re-runs: that window is the at-least-once part no SMTP client can close; the Message-ID stays the same.)

**Priority.** arq takes ready jobs in score order (the time they are due). A send job is enqueued as if it had
been due ``(9 - priority) * PRIORITY_STEP_SECONDS`` ago, so password resets and failed payments (priority 1) go
ahead of every ordinary mail (priority 5) queued in the last four minutes of backlog, and ordinary mail ahead of the
reminder cron's waves (priority 7) for two minutes, on the same queue and workers; nothing is ever deferred because
of its priority.

**From the API.** Routes never talk to arq: ``POST /notifications/send`` and ``retry-failed`` change rows and write a
``notification.queued`` outbox event in the same transaction; its handler enqueues the send jobs. A job that is
lost anyway (Redis flushed) is found by the worker's stalled-mail sweep.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from core_api.audit.schemas import EventType
from core_api.audit.service import Actor, record
from core_api.notifications.rendering import TEMPLATES
from core_api.notifications.schemas import (
    Notification,
    NotificationCount,
    NotificationPage,
    NotificationSend,
    NotificationStats,
    NotificationStatus,
    TemplateName,
)
from core_api.outbox import emit
from core_api.storage.db import DbPool, load_queries, struct_row, transaction
from core_api.users.schemas import Role
from core_api.web.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from arq.connections import ArqRedis
    from psycopg import AsyncConnection

    from core_api.auth.schemas import Principal

__all__ = [
    "PRIORITY_STEP_SECONDS",
    "QUEUED_EVENT",
    "SEND_JOB",
    "clear_completed",
    "enqueue_send",
    "erase_user_notifications",
    "job_id_of",
    "list_notifications",
    "notification_stats",
    "queue_mail",
    "retry_failed",
    "send_by_admin",
]

QUERIES = load_queries("notifications")

SEND_JOB = "send_notification"
QUEUED_EVENT = "notification.queued"
"""Outbox event the API writes for mails it queued; its handler enqueues their send jobs."""
PRIORITY_STEP_SECONDS = 60


def job_id_of(notification_id: uuid.UUID | str) -> str:
    return f"notification:{notification_id}"


async def enqueue_send(redis: ArqRedis, notification_id: uuid.UUID | str, priority: int) -> None:
    """Enqueue the send job of one mail; a job arq still holds for it (queued, deferred, running) stays the only one."""
    head_start = timedelta(seconds=(9 - priority) * PRIORITY_STEP_SECONDS)
    await redis.enqueue_job(
        SEND_JOB,
        str(notification_id),
        _job_id=job_id_of(notification_id),
        _defer_until=datetime.now(UTC) - head_start,
    )


async def queue_mail(
    conn: AsyncConnection[Any],
    *,
    event_id: uuid.UUID,
    template: TemplateName,
    recipient: str,
    context: msgspec.Struct,
    public_url: str,
    user_id: uuid.UUID | str | None = None,
    booking_id: uuid.UUID | str | None = None,
) -> tuple[uuid.UUID, int] | None:
    """The mail of ``event_id`` to ``recipient``, inserted unless it exists: ``(id, priority)`` when it still waits
    for its send job (new, or a replay whose job may have been lost), ``None`` when it is sent, failed or in flight.
    """
    mail = TEMPLATES[template]
    recipient = recipient.strip()
    params = {
        "user_id": user_id,
        "booking_id": booking_id,
        "event_id": event_id,
        "template": template.value,
        "recipient": recipient,
        "subject": mail.subject_for(context, public_url),
        "priority": mail.priority,
        "payload": msgspec.json.encode(context).decode(),
    }
    row = await (await conn.execute(QUERIES["insert_notification"], params)).fetchone()
    if row is not None:
        return row["id"], mail.priority
    existing = await (
        await conn.execute(QUERIES["notification_of_event"], {"event_id": event_id, "recipient": recipient})
    ).fetchone()
    if existing is None or existing["status"] != NotificationStatus.PENDING:
        return None
    return existing["id"], existing["priority"]


# -- the API ---------------------------------------------------------------------------------------------------


class _Row(Notification, frozen=True, kw_only=True):
    total: int


async def list_notifications(
    pool: DbPool,
    principal: Principal,
    *,
    status: NotificationStatus | None,
    template: TemplateName | None,
    page: int,
    page_size: int,
) -> NotificationPage:
    """Newest first: an admin's view is every mail, anyone else's the mails sent to their account."""
    params = {
        "user_id": None if principal.role is Role.ADMIN else principal.id,
        "status": status.value if status else None,
        "template": template.value if template else None,
        "limit": page_size,
        "offset": (page - 1) * page_size,
    }
    async with pool.connection() as conn, conn.cursor(row_factory=struct_row(_Row)) as cursor:
        await cursor.execute(QUERIES["list_notifications"], params)
        rows = await cursor.fetchall()
    items = [Notification(**{f: getattr(r, f) for f in Notification.__struct_fields__}) for r in rows]
    return NotificationPage(items=items, total=rows[0].total if rows else 0, page=page, page_size=page_size)


_STAT_FIELD = {
    NotificationStatus.PENDING: "queued",
    NotificationStatus.SENDING: "in_progress",
    NotificationStatus.SENT: "completed",
    NotificationStatus.FAILED: "failed",
}


async def notification_stats(pool: DbPool) -> NotificationStats:
    async with pool.connection() as conn:
        rows = await (await conn.execute(QUERIES["notification_counts"])).fetchall()
    totals = dict.fromkeys(_STAT_FIELD.values(), 0)
    per_template: dict[str, dict[str, int]] = {
        name.value: dict.fromkeys(_STAT_FIELD.values(), 0) for name in TemplateName
    }
    for row in rows:
        field = _STAT_FIELD.get(NotificationStatus(row["status"]))
        if field is None:
            continue
        totals[field] += row["n"]
        per_template.setdefault(row["template"], dict.fromkeys(_STAT_FIELD.values(), 0))[field] += row["n"]
    return NotificationStats(
        **totals, by_template={name: NotificationCount(**counts) for name, counts in per_template.items()}
    )


def _context_errors(template: TemplateName, context: dict[str, Any]) -> msgspec.Struct:
    """``context`` decoded into the template's fields, or a 422 naming the field (``context.flight.departure_at``)."""
    mail = TEMPLATES[template]
    try:
        return msgspec.json.decode(msgspec.json.encode(context), type=mail.context_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        detail, _, location = message.rpartition(" - at `$")
        if not detail:  # at the root of the context
            detail, location = message, ""
        path = "context" + location.rstrip("`")
        # A missing or unknown field is reported at its object; name the field itself.
        named = re.fullmatch(r"Object (?:missing required|contains unknown) field `([^`]+)`", detail)
        if named:
            path = f"{path}.{named[1]}"
        raise ValidationFailed.of([FieldError(path, detail)]) from None


async def send_by_admin(
    pool: DbPool, actor: Actor, principal: Principal, data: NotificationSend, public_url: str
) -> Notification:
    """Queue one mail by hand (its own event id, so it never collides with an event's mail)."""
    if data.template is TemplateName.PASSWORD_RESET:
        # Its token must be one that auth created (and sealed): a hand-written one would open no account.
        raise ValidationFailed.for_field(
            "template", "password_reset mails are sent by POST /auth/password-reset/request, which creates the token"
        )
    context = _context_errors(data.template, data.context)
    event_id = uuid.uuid4()
    async with transaction(pool) as tx:
        queued = await queue_mail(
            tx,
            event_id=event_id,
            template=data.template,
            recipient=data.recipient,
            context=context,
            public_url=public_url,
            booking_id=data.booking_id,
        )
        assert queued is not None  # a fresh event id
        notification_id, _ = queued
        await emit(tx, QUEUED_EVENT, ("notification", notification_id), {"notification_ids": [str(notification_id)]})
        await record(
            tx,
            EventType.NOTIFICATION_QUEUED,
            actor,
            ("notification", notification_id),
            after={"template": data.template.value, "recipient": data.recipient},
            metadata={"by": "admin"},
        )
        async with tx.cursor(row_factory=struct_row(Notification)) as cursor:
            await cursor.execute(QUERIES["notification"], {"id": notification_id})
            row = await cursor.fetchone()
    assert row is not None
    return row


async def clear_completed(pool: DbPool, actor: Actor) -> int:
    """Hide every sent mail from lists and stats (the rows stay, as the de-duplication keys of their events)."""
    async with transaction(pool) as tx:
        cleared = (await tx.execute(QUERIES["clear_completed"])).rowcount
        await record(tx, EventType.NOTIFICATION_CLEARED, actor, None, metadata={"cleared": cleared})
    return cleared


async def retry_failed(pool: DbPool, actor: Actor) -> int:
    """Give every failed mail three fresh attempts; their send jobs are enqueued through the outbox."""
    async with transaction(pool) as tx:
        rows = await (await tx.execute(QUERIES["retry_failed"])).fetchall()
        ids = [str(row["id"]) for row in rows]
        if ids:
            await emit(tx, QUEUED_EVENT, ("notification", ids[0]), {"notification_ids": ids})
        await record(tx, EventType.NOTIFICATION_RETRIED, actor, None, metadata={"retried": len(ids)})
    return len(ids)


async def erase_user_notifications(tx: AsyncConnection[Any], user_id: uuid.UUID) -> int:
    """Strip the personal data from a deleted user's mails (in the deletion's transaction); returns how many."""
    return (await tx.execute(QUERIES["erase_user_notifications"], {"user_id": user_id})).rowcount
