"""The per-process realtime hub: one Redis pub/sub subscription, fanned out to this process's sockets.

The outbox relay publishes every committed event on :data:`~core_api.outbox.EVENTS_CHANNEL`; each API process
subscribes once and routes each event to the sockets entitled to it, from in-memory indexes (no database read):

- ``booking:*`` to the booking's customer, the agent who made it, AIRLINE_AGENTs of its airline and every ADMIN;
- ``flight:availability`` (the payload's ``availability``) to the sockets subscribed to that flight.

Routing never waits on a socket (see :class:`~core_api.realtime.subscriber.Subscriber`). Redis is optional: while
it is down the hub has no events and retries with backoff; nothing fails. The relay delivers at least once, so
the hub drops events whose id it has seen recently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

import msgspec
from litestar.status_codes import WS_1001_GOING_AWAY, WS_1013_TRY_AGAIN_LATER
from redis.exceptions import RedisError

from core_api.outbox import EVENTS_CHANNEL, OutboxEvent
from core_api.realtime.schemas import BOOKING_EVENT_NAMES, BookingAudience, encode_message
from core_api.realtime.subscriber import Subscriber
from core_api.users.schemas import Role
from core_api.web.ratelimit import OccasionalWarning

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from core_api.auth.schemas import Principal

__all__ = ["Hub", "HubOptions"]

logger = logging.getLogger(__name__)

K = TypeVar("K")

_event_decoder = msgspec.json.Decoder(OutboxEvent)


@dataclass(frozen=True, slots=True)
class HubOptions:
    """Tunables of the hub; the defaults are for production, tests shorten the intervals."""

    heartbeat_seconds: float = 20.0
    """A heartbeat frame goes to every socket this often; a socket that cannot take a frame for as long is closed."""
    queue_size: int = 256
    """Frames a socket may have waiting; one more closes it with 1013."""
    max_subscriptions: int = 50
    """Flights one socket may follow."""
    recheck_seconds: float = 60.0
    """How often a socket's access token is checked again (logout, revoked session); it also closes at expiry."""
    channel: str = EVENTS_CHANNEL
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 10.0
    dedup_window: int = 10_000
    """Recent event ids remembered to drop the relay's repeats."""


class Hub:
    """Routes events from Redis to this process's sockets; started and stopped by the app's lifespan."""

    def __init__(self, redis: aioredis.Redis, options: HubOptions | None = None) -> None:
        self.options = options or HubOptions()
        self._redis = redis
        self._subscribers: set[Subscriber] = set()
        self._by_user: dict[UUID, set[Subscriber]] = {}
        self._by_airline: dict[str, set[Subscriber]] = {}
        self._admins: set[Subscriber] = set()
        self._by_flight: dict[int, set[Subscriber]] = {}
        self._seen: OrderedDict[UUID, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()
        """Set while the Redis subscription is live."""
        self._first_attempt = asyncio.Event()
        self._outage = OccasionalWarning(logger, interval_seconds=30.0)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self, *, wait_seconds: float = 2.0) -> None:
        """Start listening and heartbeats. Never fails: waits (at most ``wait_seconds``) for the first attempt to
        subscribe, so that a process with Redis up takes sockets only once events flow, and one without Redis starts.
        """
        self._tasks = [
            asyncio.create_task(self._listen(), name="realtime-listen"),
            asyncio.create_task(self._heartbeat(), name="realtime-heartbeat"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_seconds)

    async def stop(self) -> None:
        """Stop listening and ask every socket to close (1001)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for subscriber in list(self._subscribers):
            subscriber.request_close(WS_1001_GOING_AWAY, "server shutting down")

    # -- sockets -------------------------------------------------------------------------------------------------

    def connect(self, principal: Principal) -> Subscriber:
        """Register a socket of ``principal``: from now on it receives the events it is entitled to."""
        subscriber = Subscriber(principal, queue_size=self.options.queue_size)
        self._subscribers.add(subscriber)
        self._by_user.setdefault(principal.id, set()).add(subscriber)
        if principal.role is Role.ADMIN:
            self._admins.add(subscriber)
        elif principal.role is Role.AIRLINE_AGENT and principal.airline_code:
            self._by_airline.setdefault(principal.airline_code.upper(), set()).add(subscriber)
        return subscriber

    def disconnect(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        principal = subscriber.principal
        _discard(self._by_user, principal.id, subscriber)
        self._admins.discard(subscriber)
        if principal.airline_code:
            _discard(self._by_airline, principal.airline_code.upper(), subscriber)
        for flight_id in subscriber.flights:
            _discard(self._by_flight, flight_id, subscriber)
        subscriber.flights.clear()

    def follow(self, subscriber: Subscriber, flight_id: int) -> None:
        """Subscribe a socket to a flight's availability; raises :class:`ValueError` past the per-socket cap."""
        if flight_id not in subscriber.flights and len(subscriber.flights) >= self.options.max_subscriptions:
            raise ValueError(f"at most {self.options.max_subscriptions} subscriptions per connection")
        subscriber.flights.add(flight_id)
        self._by_flight.setdefault(flight_id, set()).add(subscriber)

    def unfollow(self, subscriber: Subscriber, flight_id: int) -> None:
        subscriber.flights.discard(flight_id)
        _discard(self._by_flight, flight_id, subscriber)

    @property
    def connections(self) -> int:
        """Sockets connected to this process."""
        return len(self._subscribers)

    def connections_of(self, user_id: UUID) -> int:
        """Sockets of one user connected to this process."""
        return len(self._by_user.get(user_id, ()))

    # -- routing -------------------------------------------------------------------------------------------------

    def dispatch(self, event: OutboxEvent) -> None:
        """Route one event to the entitled sockets' queues; never waits, never raises for a bad payload."""
        name = BOOKING_EVENT_NAMES.get(event.event_type)
        if name is None or event.aggregate_type != "booking" or self._repeated(event.id):
            return
        try:
            audience = msgspec.convert(event.payload, BookingAudience)
        except msgspec.ValidationError as exc:
            logger.warning("realtime: %s %s has an unroutable payload: %s", event.event_type, event.id, exc)
            return
        _offer(self._audience(audience), encode_message(name, event.payload, event.created_at))
        if audience.availability is not None:
            followers = self._by_flight.get(audience.availability.flight_id, ())
            _offer(followers, encode_message("flight:availability", audience.availability, event.created_at))

    def _audience(self, audience: BookingAudience) -> set[Subscriber]:
        recipients = set(self._admins)
        recipients |= self._by_airline.get(audience.airline_code.upper(), set())
        for user_id in (audience.customer_id, audience.agent_id):
            if user_id is not None:
                recipients |= self._by_user.get(user_id, set())
        return recipients

    def _repeated(self, event_id: UUID) -> bool:
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        if len(self._seen) > self.options.dedup_window:
            self._seen.popitem(last=False)
        return False

    def _dispatch_frame(self, data: bytes) -> None:
        try:
            event = _event_decoder.decode(data)
        except msgspec.DecodeError as exc:
            logger.warning("realtime: ignored a message that is not an outbox event: %s", exc)
            return
        try:
            self.dispatch(event)
        except Exception:
            # A bug in routing one event must not end the subscription for every later one.
            logger.exception("realtime: routing %s %s failed", event.event_type, event.id)

    # -- background tasks ----------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = self.options.backoff_initial_seconds
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.options.channel)
                self.listening.set()
                self._first_attempt.set()
                delay = self.options.backoff_initial_seconds
                logger.info("realtime: subscribed to %s", self.options.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._dispatch_frame(message["data"])
            except (RedisError, OSError) as exc:
                # TimeoutError is an OSError. No Redis means no events, not errors.
                self._outage.warn("realtime: Redis subscription lost, retrying: %s: %s", type(exc).__name__, exc)
            finally:
                self.listening.clear()
                self._first_attempt.set()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, self.options.backoff_max_seconds)

    async def _heartbeat(self) -> None:
        interval = self.options.heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            frame = encode_message("heartbeat", {})
            now = time.monotonic()
            for subscriber in list(self._subscribers):
                if subscriber.stalled(now, interval):
                    subscriber.request_close(WS_1013_TRY_AGAIN_LATER, "not reading")
                else:
                    subscriber.offer(frame)


def _offer(subscribers: Iterable[Subscriber], frame: str) -> None:
    for subscriber in tuple(subscribers):
        subscriber.offer(frame)


def _discard(index: dict[K, set[Subscriber]], key: K, subscriber: Subscriber) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(subscriber)
        if not members:
            del index[key]
