"""One connected socket as the hub sees it: who is behind it, which flights it follows, and its send queue.

The hub only ever calls :meth:`Subscriber.offer`, which never waits: a frame goes into the socket's bounded queue
or, when the queue is full, the socket is marked for closing. The socket's own task (:meth:`Subscriber.pump`)
drains the queue, so a client that reads slowly holds up nobody but itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from litestar.status_codes import WS_1013_TRY_AGAIN_LATER

if TYPE_CHECKING:
    from core_api.auth.schemas import Principal

__all__ = ["Subscriber"]


class Subscriber:
    """A socket's routing identity, subscriptions and bounded outgoing queue."""

    def __init__(self, principal: Principal, *, queue_size: int) -> None:
        self.principal = principal
        self.flights: set[int] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._closing = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._send_started: float | None = None

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def offer(self, frame: str) -> bool:
        """Queue a frame without waiting; a full queue closes the socket (1013) instead. False if not queued."""
        if self.closing:
            return False
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.request_close(WS_1013_TRY_AGAIN_LATER, "too slow: send queue full")
            return False
        return True

    def request_close(self, code: int, reason: str) -> None:
        """Ask the socket's handler to close with ``code``; the first request wins."""
        if not self.closing:
            self.close_code, self.close_reason = code, reason
            self._closing.set()

    async def wait_closing(self) -> None:
        await self._closing.wait()

    def stalled(self, now: float, limit_seconds: float) -> bool:
        """Whether one frame has been on its way to the client for longer than ``limit_seconds``."""
        return self._send_started is not None and now - self._send_started > limit_seconds

    async def pump(self, send_text: Callable[[str], Awaitable[None]]) -> None:
        """Send queued frames in order until cancelled or the send fails (the client is gone)."""
        while True:
            frame = await self._queue.get()
            self._send_started = time.monotonic()
            await send_text(frame)
            self._send_started = None
