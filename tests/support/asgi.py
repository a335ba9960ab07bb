"""Drive an ASGI app in the test's own event loop: lifespan startup/shutdown plus an httpx client.

Litestar's AsyncTestClient runs the app on a portal thread and blocks the calling loop for each request, which
serialises "concurrent" requests and starves anything else the test runs in its loop (such as the fault proxy).
This runs the app as tasks of the test's loop instead, so concurrent requests are really concurrent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["client_from", "serve_in_loop"]


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        await task
        raise RuntimeError(f"app failed to start: {message.get('message')}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@contextlib.asynccontextmanager
async def serve_in_loop(app: Any, *, client_ip: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    async with _lifespan(app), client_from(app, client_ip) as client:
        yield client


def client_from(app: Any, client_ip: str) -> httpx.AsyncClient:
    """Another client of an app already served by :func:`serve_in_loop`, arriving from ``client_ip``."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
