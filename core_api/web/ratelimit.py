"""Per-client request limits kept in Redis (SPEC §10): the tiers, the limiter and the middleware enforcing them.

A client is the authenticated user (``user:<uuid>``) when the authentication middleware found one, else the peer
address (``ip:<address>``). Every tier (``10/second;100/minute;1000/hour`` by default) is checked and counted in one
Lua script, so one request costs one Redis round trip and tiers never disagree under concurrency. Redis is optional:
when it is down or slow the request passes and a warning is logged now and then, never a 5xx.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from redis.exceptions import RedisError

from core_api.web.errors import problem_response

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from redis.commands.core import AsyncScript

__all__ = [
    "OccasionalWarning",
    "RateLimitDecision",
    "RateLimitMiddleware",
    "RateLimiter",
    "RefusalRecorder",
    "Tier",
    "client_key",
    "is_exempt",
    "is_exempt_path",
    "parse_rate_limits",
]

logger = logging.getLogger(__name__)

KEY_PREFIX = "flightdesk:rl"

_UNITS: dict[str, int] = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_UNIT_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
_TIER = re.compile(r"^\s*(?P<limit>\d+)\s*/\s*(?P<unit>[A-Za-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Tier:
    """At most ``limit`` requests in any ``period_seconds`` long stretch of time."""

    limit: int
    period_seconds: int

    def __str__(self) -> str:
        return f"{self.limit}/{_UNIT_NAMES.get(self.period_seconds, f'{self.period_seconds}s')}"


def parse_rate_limits(spec: str) -> tuple[Tier, ...]:
    """Parse ``"10/second;100/minute;1000/hour"`` into tiers, shortest period first.

    Units are second, minute, hour, day (plural or s/m/h/d accepted). Raises :class:`ValueError` naming the faulty
    part on malformed input, a zero limit, or two tiers of the same period.
    """
    parts = [part for part in spec.split(";") if part.strip()]
    if not parts:
        raise ValueError("rate limits: expected at least one tier such as '10/second;100/minute;1000/hour'")
    tiers: dict[int, Tier] = {}
    for part in parts:
        match = _TIER.match(part)
        unit = match["unit"].lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"rate limit tier {part.strip()!r}: expected N/unit, with unit one of second, minute, hour, day"
            )
        limit = int(match["limit"])
        if limit < 1:
            raise ValueError(f"rate limit tier {part.strip()!r}: the limit must be at least 1")
        period = _UNITS[unit]
        if period in tiers:
            raise ValueError(f"rate limits: two tiers per {_UNIT_NAMES[period]} ({tiers[period]} and {part.strip()})")
        tiers[period] = Tier(limit, period)
    return tuple(sorted(tiers.values(), key=lambda tier: tier.period_seconds))


# Algorithm: a sliding window of sub-window counters, counted conservatively.
#
# Each tier's window is cut into BUCKETS slices; a Redis hash per client and tier maps slice number -> requests.
# A request is counted against every slice that overlaps the last `period` seconds, including the partly
# overlapping oldest one, so the stretch counted is between `period` and `period + period/BUCKETS` long. Hence no
# `period`-long stretch ever holds more than `limit` allowed requests: there is no 2x burst around a window edge
# as with fixed windows, nor an N-burst-then-rate overshoot as with a token bucket / GCRA (which allows ~2N in a
# window after idling), nor the estimate error of the two-window weighted counter. The price is that a client may
# wait up to one slice (2 % of the period) longer than strictly needed. Unlike a sorted-set log of every request,
# memory stays at most BUCKETS + 1 small fields per tier whatever the limit (1000/hour would otherwise keep 1000
# timestamps per client).
#
# The script checks all tiers first and counts the request only when every tier has room, so a request denied by
# one tier uses no quota anywhere. Time is the Redis server's, so every API process shares one clock.
BUCKETS = 50  # divides 10**6, so slice widths are whole microseconds for every whole-second period

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tiers = #KEYS
local counts, oldest_live, allowed = {}, {}, 1
local waits = {}
for i = 1, tiers do
    local limit, window, width = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
    local first = math.floor((now - window) / width)
    local fields = redis.call('HGETALL', KEYS[i])
    local live, stale, total = {}, {}, 0
    for j = 1, #fields, 2 do
        local slice, count = tonumber(fields[j]), tonumber(fields[j+1])
        if slice < first then
            stale[#stale+1] = fields[j]
        else
            live[#live+1] = {slice, count}
            total = total + count
        end
    end
    if #stale > 0 then
        redis.call('HDEL', KEYS[i], unpack(stale))
    end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    counts[i] = total
    oldest_live[i] = live[1] and live[1][1] or math.floor(now / width)
    waits[i] = 0
    if total >= limit then
        allowed = 0
        -- Slices leave the window oldest first; wait until enough have left for one more request to fit.
        local left = total
        for _, entry in ipairs(live) do
            left = left - entry[2]
            if left < limit then
                waits[i] = (entry[1] + 1) * width + window - now
                break
            end
        end
    end
end
local result = {allowed}
for i = 1, tiers do
    local window, width = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
    if allowed == 1 then
        redis.call('HINCRBY', KEYS[i], string.format('%d', math.floor(now / width)), 1)
        redis.call('PEXPIRE', KEYS[i], math.ceil((window + width) / 1000))
    end
    result[#result+1] = counts[i]
    result[#result+1] = (oldest_live[i] + 1) * width + window - now
    result[#result+1] = waits[i]
end
return result
"""


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """Whether a request may pass, told for the most restrictive tier (the one the client is closest to)."""

    allowed: bool
    tier: Tier
    remaining: int
    """Requests left in that tier after this one."""
    reset_seconds: int
    """Seconds until the oldest requests counted in that tier stop counting (quota starts coming back)."""
    retry_after_seconds: int
    """Seconds until a retry can pass every tier; 0 when allowed."""

    @property
    def limit(self) -> int:
        return self.tier.limit

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def _whole_seconds(microseconds: int) -> int:
    # Rounded up: a client told to come back after this many seconds finds room.
    return max(1, math.ceil(microseconds / 1_000_000))


class RateLimiter:
    """Checks and counts requests of a client against every tier in one atomic Redis call."""

    def __init__(self, tiers: Sequence[Tier]) -> None:
        if not tiers:
            raise ValueError("a rate limiter needs at least one tier")
        self.tiers = tuple(tiers)
        self._args: list[int] = []
        for tier in self.tiers:
            window = tier.period_seconds * 1_000_000
            self._args += [tier.limit, window, window // BUCKETS]
        self._script: AsyncScript | None = None

    def keys(self, client: str) -> list[str]:
        # The braces are a Redis Cluster hash tag: one client's tiers share a slot, as a multi-key script needs.
        return [f"{KEY_PREFIX}:{{{client}}}:{tier.period_seconds}s" for tier in self.tiers]

    async def hit(self, redis: aioredis.Redis, client: str) -> RateLimitDecision:
        """Count one request of ``client`` if every tier has room; raises Redis errors for the caller to judge."""
        if self._script is None or self._script.registered_client is not redis:
            # Script hashes the source once; EVALSHA afterwards, reloading transparently after NOSCRIPT.
            self._script = redis.register_script(_SCRIPT)
        reply: list[Any] = await self._script(keys=self.keys(client), args=self._args)
        allowed = reply[0] == 1
        per_tier = [
            (tier, int(reply[1 + 3 * i]), int(reply[2 + 3 * i]), int(reply[3 + 3 * i]))
            for i, tier in enumerate(self.tiers)
        ]
        if allowed:
            # The tier with the fewest requests left; on a tie the one that takes longest to give quota back.
            tier, count, reset, _ = min(per_tier, key=lambda item: (item[0].limit - item[1], -item[2]))
            return RateLimitDecision(True, tier, max(0, tier.limit - count - 1), _whole_seconds(reset), 0)
        tier, _, _, wait = max(per_tier, key=lambda item: item[3])
        seconds = _whole_seconds(wait)
        return RateLimitDecision(False, tier, 0, seconds, seconds)


class OccasionalWarning:
    """Log a warning at most once per interval, counting the ones held back, so an outage does not flood the logs."""

    def __init__(self, log: logging.Logger, interval_seconds: float = 10.0) -> None:
        self._log = log
        self._interval = interval_seconds
        self._last: float | None = None
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval:
            self._suppressed += 1
            return
        self._last = now
        suppressed, self._suppressed = self._suppressed, 0
        self._log.warning(message, *args, extra={"suppressed": suppressed})


# The payment provider's webhooks: a signed, cheaply verified burst (replays included) that must not be turned away.
_EXEMPT_PATHS = frozenset({"/metrics", "/api/openapi.json", "/api/v1/webhooks/stripe"})
_EXEMPT_PREFIXES = ("/api/v1/health", "/api/docs")


def is_exempt_path(path: str) -> bool:
    """Monitoring, the API docs and the payment provider's webhooks are never limited."""
    return path in _EXEMPT_PATHS or path.startswith(_EXEMPT_PREFIXES)


def is_exempt(scope: Scope) -> bool:
    """Monitoring, the API docs and CORS preflights are never limited."""
    return scope.get("method") == "OPTIONS" or is_exempt_path(scope["path"])


def client_key(scope: Scope) -> str:
    """``user:<id>`` for an authenticated caller (set in ``scope["user"]`` by authentication), else ``ip:<addr>``."""
    user_id = getattr(scope.get("user"), "id", None)
    if user_id is not None:
        return f"user:{user_id}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


class RateLimitMiddleware(ASGIMiddleware):
    """Enforce the tiers per client; must run after authentication so that users are limited per user.

    The Redis client is ``app.state.redis``. Allowed responses carry ``RateLimit-Limit``/``-Remaining``/``-Reset``;
    a denied request gets a 429 ``RATE_LIMITED`` problem with those and ``Retry-After``, and its handler never runs.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, tiers: Sequence[Tier]) -> None:
        self.limiter = RateLimiter(tiers)
        # One middleware instance per app, so one outage warning per ~10 s per process.
        self._outage = OccasionalWarning(logger, interval_seconds=10.0)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if is_exempt(scope):
            await next_app(scope, receive, send)
            return
        try:
            decision = await self.limiter.hit(scope["app"].state.redis, client_key(scope))
        except (RedisError, OSError) as exc:
            # TimeoutError is an OSError. Fail open: losing rate limiting briefly beats refusing every request.
            self._outage.warn("rate limits not enforced, Redis unavailable: %s: %s", type(exc).__name__, exc)
            await next_app(scope, receive, send)
            return
        if not decision.allowed:
            _tell_audit(scope, decision)
            await _reject(scope, receive, send, decision)
            return
        extra = [(name.lower().encode(), value.encode()) for name, value in decision.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await next_app(scope, receive, send_with_headers)


class RefusalRecorder(Protocol):
    """What audits refusals (``core_api.audit.rate_limits.RateLimitAudit``, as ``app.state.rate_limit_audit``)."""

    def note(
        self,
        client: str,
        *,
        user_id: Any,
        role: str | None,
        ip: str | None,
        user_agent: str | None,
        method: str,
        path: str,
        tier: str,
    ) -> None: ...


def _tell_audit(scope: Scope, decision: RateLimitDecision) -> None:
    recorder: RefusalRecorder | None = getattr(scope["app"].state, "rate_limit_audit", None)
    if recorder is None:
        return
    user = scope.get("user")
    role = getattr(user, "role", None)
    peer = scope.get("client")
    user_agent = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"user-agent"), None)
    recorder.note(
        client_key(scope),
        user_id=getattr(user, "id", None),
        role=str(role) if role is not None else None,
        ip=peer[0] if peer else None,
        user_agent=user_agent,
        method=str(scope.get("method", "")),
        path=scope["path"],
        tier=str(decision.tier),
    )


async def _reject(scope: Scope, receive: Receive, send: Send, decision: RateLimitDecision) -> None:
    # Rendered here rather than raised, so the answer does not depend on how exception handlers are wired.
    response = problem_response(
        429,
        "RATE_LIMITED",
        "Too many requests",
        f"Rate limit of {decision.tier} exceeded; retry in {decision.retry_after_seconds} s.",
        headers=decision.headers(),
    )
    # A HEAD request gets the headers of the GET answer (Content-Length included) and no body.
    without_body = scope.get("method") == "HEAD"

    async def send_answer(message: Message) -> None:
        if without_body and message["type"] == "http.response.body":
            message["body"] = b""
        await send(message)

    request: Request[Any, Any, Any] = Request(scope, receive, send)
    await response.to_asgi_response(None, request)(scope, receive, send_answer)
