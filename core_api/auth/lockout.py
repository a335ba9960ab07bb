"""Login lockout per email (SPEC §10): after too many failures within a window, further attempts are refused.

Semantics: a fixed window that opens with the FIRST failure. Failures are counted for ``window_seconds`` from
that first one; once ``max_failures`` are counted, every attempt (the right password included) is locked out
until the window that began with the first failure ends, then counting starts afresh. That is what "5 failures
within 15 minutes lock the account for the rest of those 15 minutes" means to users; failures made while locked
do not prolong the lockout, so an attacker cannot keep a victim locked out longer than one window at a time by
hammering (only by coming back after each window).

Keys are ``flightdesk:lockout:<kind>:<sha256 of the lower-cased email>``: no raw email ever reaches Redis. Redis
being down fails open (no lockout, a warning now and then): logins matter more than the throttle.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from core_api.web.ratelimit import OccasionalWarning

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["KINDS", "LoginThrottle"]

logger = logging.getLogger(__name__)

KINDS = frozenset({"login", "password_reset"})
KEY_PREFIX = "flightdesk:lockout"

# Counts one failure atomically; the first failure opens the window (a key without expiry is repaired, too).
_RECORD_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""


class LoginThrottle:
    """Failed attempts per email and kind (``login``, ``password_reset``), kept in Redis."""

    def __init__(self, redis: aioredis.Redis, max_failures: int, window_seconds: int) -> None:
        if max_failures < 1 or window_seconds < 1:
            raise ValueError("max_failures and window_seconds must be at least 1")
        self.redis = redis
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._record = redis.register_script(_RECORD_FAILURE)
        self._outage = OccasionalWarning(logger, interval_seconds=10.0)

    @staticmethod
    def key(kind: str, email: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown lockout kind {kind!r}; expected one of {sorted(KINDS)}")
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return f"{KEY_PREFIX}:{kind}:{digest}"

    async def retry_after(self, kind: str, email: str) -> int | None:
        """Seconds until the lockout of ``email`` ends (at least 1), or ``None`` when it is not locked out."""
        key = self.key(kind, email)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:  # MULTI: count and expiry of one instant
                pipe.get(key)
                pipe.pttl(key)
                count, ttl_ms = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return None
        if count is None or int(count) < self.max_failures:
            return None
        if ttl_ms < 0:  # no expiry cannot happen through record_failure; never lock forever
            return self.window_seconds
        return max(1, math.ceil(ttl_ms / 1000))

    async def record_failure(self, kind: str, email: str) -> bool:
        """Count a failure; ``True`` exactly when this one reached the limit (audit ``auth.lockout`` then, once)."""
        key = self.key(kind, email)
        try:
            count = await self._record(keys=[key], args=[self.window_seconds * 1000])
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return False
        return int(count) == self.max_failures

    async def clear(self, kind: str, email: str) -> None:
        """Forget the failures of ``email`` (after a successful login)."""
        key = self.key(kind, email)
        try:
            await self.redis.delete(key)
        except (RedisError, OSError) as exc:
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        self._outage.warn("login lockout not enforced, Redis unavailable: %s: %s", type(exc).__name__, exc)
