"""What the notification jobs and outbox handlers share: the pool, arq's Redis, the mailer and the mail settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core_api.notifications.delivery import Mailer

if TYPE_CHECKING:
    from arq.connections import ArqRedis

    from core_api.settings import Settings
    from core_api.storage.db import DbPool

__all__ = ["LEASE_SECONDS", "Notifier"]

LEASE_SECONDS = 120.0
"""How long a claim holds a mail: well past the SMTP timeout, so only a dead sender's claim runs out."""


@dataclass(frozen=True)
class Notifier:
    """What the notification jobs and handlers share, kept in the arq context as ``ctx["notifier"]``."""

    pool: DbPool
    redis: ArqRedis
    mailer: Mailer
    public_url: str
    retry_base: float
    reminder_hours: int
    lease_seconds: float = LEASE_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, pool: DbPool, redis: ArqRedis) -> Notifier:
        return cls(
            pool=pool,
            redis=redis,
            mailer=Mailer.from_settings(settings.smtp),
            public_url=settings.notifications.public_url or settings.api_url,
            retry_base=settings.notifications.retry_base_seconds,
            reminder_hours=settings.notifications.reminder_hours,
        )
