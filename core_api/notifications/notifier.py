"""What the notification jobs and outbox handlers share: the pool, arq's Redis, the mailer, the mail settings and
the cipher that opens sealed values of a mail's context (a password-reset token) when it is rendered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core_api.notifications.delivery import Mailer

if TYPE_CHECKING:
    from arq.connections import ArqRedis

    from core_api.security.crypto import Cipher
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
    cipher: Cipher
    lease_seconds: float = LEASE_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, pool: DbPool, redis: ArqRedis, cipher: Cipher) -> Notifier:
        return cls(
            pool=pool,
            redis=redis,
            cipher=cipher,
            mailer=Mailer.from_settings(settings.smtp),
            public_url=settings.notifications.public_url or settings.api_url,
            retry_base=settings.notifications.retry_base_seconds,
            reminder_hours=settings.notifications.reminder_hours,
        )
