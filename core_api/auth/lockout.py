"""Login lockout (SPEC §10): too many failed attempts at one email lock further attempts until the window ends.

Counters. Every attempt counts against two counters of its kind (``login``; ``password_reset``): its email from
its client address, limited to ``max_failures_per_client`` (5) so that guessing from one place stops there without
handing anyone who knows an email the power to lock its owner out from everywhere, and its email from anywhere,
limited to ``max_failures_per_email`` (20) against guesses spread over many addresses.

Reservation. :meth:`LoginThrottle.reserve` counts the attempt as *in flight* on both counters in one atomic step
and refuses it (429) when either already holds its limit of in-flight attempts plus failures; only a reserved
attempt gets its password checked. A refusal says how long to wait: until the window ends when failures alone fill
a counter (locked out), a second when attempts still being checked fill it (their outcome decides).
:meth:`~LoginThrottle.failed` turns the reservation into a failure; :meth:`~LoginThrottle.succeeded` releases it
and forgets the failures counted for its own email and address (a success from one address says nothing about
guesses from others, so the per-email count stays). Hence however many attempts arrive at once, at most the limit
are evaluated. :meth:`~LoginThrottle.release` takes back an attempt whose password was never checked (our own
error came first: it guessed nothing); a reservation never settled (a crash) keeps counting until its window
ends, erring on the side of the lock.

Window. Fixed, opening with the first attempt counted: once a counter's failures reach its limit, every attempt
(the right password included) is refused until the window that began with its first attempt ends; attempts
refused meanwhile are not counted and do not prolong it. A settlement only touches the window its reservation was
counted in.

Stores. Redis, one Lua script per step; while Redis fails, PostgreSQL (``login_throttle``: one row per counter,
locked in key order, each shared only by attempts at the same email). A reservation is settled in the store that
took it. The stores do not add up: what was counted in PostgreSQL during an outage is not seen by Redis once it is
back, so across an outage an address may get up to twice its limit within one window.

Keys hold SHA-256 digests of the lower-cased email and of the client address, never either in the clear (the
PostgreSQL key is the SHA-256 of the Redis key).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import RedisError

from core_api.storage.db import load_queries, transaction
from core_api.web.errors import RateLimited
from core_api.web.ratelimit import OccasionalWarning

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from core_api.settings import AuthSettings
    from core_api.storage.db import DbPool

__all__ = ["KINDS", "SCOPES", "Attempt", "LoginThrottle", "counter_keys"]

logger = logging.getLogger(__name__)

KINDS = frozenset({"login", "password_reset"})
SCOPES = ("email_and_client", "email")
"""What each counter of an attempt counts, in the order of :func:`counter_keys`."""
KEY_PREFIX = "flightdesk:lockout"
QUERIES = load_queries("auth")

# KEYS: the attempt's counters. ARGV[1]: window in ms; ARGV[1 + i]: the limit of KEYS[i].
# Checks every counter first and counts the attempt only when all have room, so a refused attempt counts nowhere.
# Returns {1, window of KEYS[1], window of KEYS[2], ...} when reserved, else {0, ms to wait, locked}: locked (1)
# when a counter holds its limit of failures (wait for its window to end), 0 when the counters are full only with
# attempts still being checked (their outcome decides; a second is the honest wait).
_RESERVE = """
local wait, locked = 0, 0
for i, key in ipairs(KEYS) do
    local counts = redis.call('HMGET', key, 'in_flight', 'failures')
    local failures = tonumber(counts[2]) or 0
    local limit = tonumber(ARGV[1 + i])
    if failures >= limit then
        local ttl = redis.call('PTTL', key)
        if ttl < 0 then  -- a counter without expiry cannot come from these scripts; never lock forever
            redis.call('PEXPIRE', key, ARGV[1])
            ttl = tonumber(ARGV[1])
        end
        wait, locked = math.max(wait, ttl, 1), 1
    elseif (tonumber(counts[1]) or 0) + failures >= limit then
        wait = math.max(wait, 1000)
    end
end
if wait > 0 then
    return {0, wait, locked}
end
local now = redis.call('TIME')
local opened = now[1] .. '.' .. now[2]
local windows = {1}
for _, key in ipairs(KEYS) do
    if redis.call('HSETNX', key, 'window', opened) == 1 or redis.call('PTTL', key) < 0 then
        redis.call('PEXPIRE', key, ARGV[1])
    end
    redis.call('HINCRBY', key, 'in_flight', 1)
    windows[#windows + 1] = redis.call('HGET', key, 'window')
end
return windows
"""

# KEYS: the attempt's counters. ARGV[1]: 'failed', 'succeeded' or 'released'; then per counter i (of n): ARGV[1 + i]
# the window
# it was reserved in, ARGV[1 + n + i] its limit, ARGV[1 + 2n + i] '1' when a success forgets its failures.
# Returns, per counter, 1 when this failure filled it (the moment to audit a lockout, once), else 0.
_SETTLE = """
local n = #KEYS
local filled = {}
for i, key in ipairs(KEYS) do
    filled[i] = 0
    if redis.call('HGET', key, 'window') == ARGV[1 + i] then
        local in_flight = redis.call('HINCRBY', key, 'in_flight', -1)
        if in_flight < 0 then
            in_flight = 0
            redis.call('HSET', key, 'in_flight', 0)
        end
        if ARGV[1] == 'failed' then
            if redis.call('HINCRBY', key, 'failures', 1) == tonumber(ARGV[1 + n + i]) then
                filled[i] = 1
            end
        elseif ARGV[1] == 'succeeded' and ARGV[1 + 2 * n + i] == '1' then
            if in_flight == 0 then
                redis.call('DEL', key)
            else
                redis.call('HSET', key, 'failures', 0)
            end
        end
    end
end
return filled
"""

Store = Literal["redis", "postgres"]
Outcome = Literal["failed", "succeeded", "released"]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def counter_keys(kind: str, email: str, client_ip: str | None) -> tuple[str, str]:
    """The Redis keys of an attempt's counters: (its email from its client address, its email from anywhere)."""
    if kind not in KINDS:
        raise ValueError(f"unknown lockout kind {kind!r}; expected one of {sorted(KINDS)}")
    # The braces are a Redis Cluster hash tag: an attempt's counters share a slot, as a multi-key script needs.
    email_key = f"{KEY_PREFIX}:{{{kind}:{_digest(email.strip().lower())}}}"
    return f"{email_key}:client:{_digest(client_ip or 'unknown')}", email_key


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved attempt: its counters, the window it was counted in on each, and the store that counted it."""

    keys: tuple[str, ...]
    windows: tuple[str | datetime, ...]
    store: Store


class LoginThrottle:
    """Reserves and settles attempts per email and client address, in Redis or, while Redis fails, PostgreSQL."""

    def __init__(
        self,
        redis: aioredis.Redis,
        pool: DbPool,
        *,
        max_failures_per_client: int,
        max_failures_per_email: int,
        window_seconds: int,
    ) -> None:
        if min(max_failures_per_client, max_failures_per_email, window_seconds) < 1:
            raise ValueError("the lockout limits and window must be at least 1")
        self.redis = redis
        self.pool = pool
        self.limits = (max_failures_per_client, max_failures_per_email)
        self.window_seconds = window_seconds
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._outage = OccasionalWarning(logger, interval_seconds=10.0)

    @classmethod
    def from_settings(cls, redis: aioredis.Redis, pool: DbPool, settings: AuthSettings) -> LoginThrottle:
        return cls(
            redis,
            pool,
            max_failures_per_client=settings.login_max_failures,
            max_failures_per_email=settings.login_max_failures_per_email,
            window_seconds=settings.login_window_seconds,
        )

    async def reserve(self, kind: str, email: str, client_ip: str | None) -> Attempt:
        """Count an attempt in flight, or raise :class:`RateLimited` (with ``Retry-After``) when it is locked out."""
        keys = counter_keys(kind, email, client_ip)
        try:
            reply: list[Any] = await self._reserve(keys=list(keys), args=[self.window_seconds * 1000, *self.limits])
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            self._warn(exc)
            return await self._reserve_in_postgres(keys)
        if int(reply[0]) == 0:
            raise _refused(-(-int(reply[1]) // 1000), locked=int(reply[2]) == 1)
        return Attempt(keys, tuple(value.decode() for value in reply[1:]), "redis")

    async def failed(self, attempt: Attempt) -> list[str]:
        """Count the attempt as a failure; returns the :data:`SCOPES` this failure locked (audit them, once)."""
        filled = await self._settle_attempt(attempt, "failed")
        return [scope for scope, full in zip(SCOPES, filled, strict=True) if full]

    async def succeeded(self, attempt: Attempt) -> None:
        """Release the attempt and forget the failures of its email from its client address."""
        await self._settle_attempt(attempt, "succeeded")

    async def release(self, attempt: Attempt) -> None:
        """Take back an attempt whose password was never checked, counting it neither way."""
        await self._settle_attempt(attempt, "released")

    async def _settle_attempt(self, attempt: Attempt, outcome: Outcome) -> list[bool]:
        if attempt.store == "postgres":
            return await self._settle_in_postgres(attempt, outcome)
        forget = ["1", "0"]  # a success forgets the failures of its (email, client) counter only
        args: list[str | int] = [outcome, *map(str, attempt.windows), *self.limits, *forget]
        try:
            reply: list[Any] = await self._settle(keys=list(attempt.keys), args=args)
        except (RedisError, OSError) as exc:
            # The reservation stays counted until its window ends: it errs on the side of the lock.
            self._warn(exc)
            return [False] * len(attempt.keys)
        return [int(value) == 1 for value in reply]

    async def _reserve_in_postgres(self, keys: tuple[str, ...]) -> Attempt:
        rows: dict[str, dict[str, Any]] = {}
        async with transaction(self.pool) as tx:
            # Each counter's row is opened and locked in key order, so attempts sharing a counter never deadlock.
            for key in sorted(keys, key=_row_key):
                params = {"key": _row_key(key), "window_seconds": self.window_seconds}
                rows[key] = await (await tx.execute(QUERIES["open_lockout_counter"], params)).fetchone() or {}
            limits = dict(zip(keys, self.limits, strict=True))
            locked = [rows[key] for key in keys if rows[key]["failures"] >= limits[key]]
            if locked:
                raise _refused(max(int(row["seconds_left"]) for row in locked), locked=True)
            if any(rows[key]["in_flight"] + rows[key]["failures"] >= limits[key] for key in keys):
                raise _refused(1, locked=False)
            await tx.execute(QUERIES["reserve_lockout_attempt"], {"keys": [_row_key(key) for key in keys]})
        return Attempt(keys, tuple(rows[key]["window_ends_at"] for key in keys), "postgres")

    async def _settle_in_postgres(self, attempt: Attempt, outcome: Outcome) -> list[bool]:
        failed = outcome == "failed"
        filled = dict.fromkeys(attempt.keys, False)
        forgets = dict(zip(attempt.keys, (True, False), strict=True))
        limits = dict(zip(attempt.keys, self.limits, strict=True))
        windows = dict(zip(attempt.keys, attempt.windows, strict=True))
        async with transaction(self.pool) as tx:
            for key in sorted(attempt.keys, key=_row_key):
                params = {"key": _row_key(key), "window_ends_at": windows[key], "failed": failed,
                          "forget": outcome == "succeeded" and forgets[key]}  # fmt: skip
                row = await (await tx.execute(QUERIES["settle_lockout_attempt"], params)).fetchone()
                filled[key] = failed and row is not None and row["failures"] == limits[key]
        return [filled[key] for key in attempt.keys]

    def _warn(self, exc: BaseException) -> None:
        self._outage.warn("login lockout counted in PostgreSQL, Redis unavailable: %s: %s", type(exc).__name__, exc)


def _row_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _refused(retry_after: int, *, locked: bool) -> RateLimited:
    detail = (
        "Too many failed attempts for this account; try again later."
        if locked
        else "Too many attempts for this account are being checked at once; retry in a moment."
    )
    return RateLimited(detail, headers={"Retry-After": str(max(1, retry_after))})
