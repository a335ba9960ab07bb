"""The realtime socket ``/api/v1/ws``: authenticate, register with the hub, answer commands, close when told.

A client passes its access token as ``?token=`` or as a subprotocol next to ``bearer``
(``new WebSocket(url, ["bearer", token])``, which keeps it out of URLs and their logs); the server then accepts
the ``bearer`` subprotocol. The token is checked by the same code as HTTP requests (signature, expiry, session,
blacklist); a missing or refused token gets close code 4401 before any frame. The socket is closed with 4401 as
well when its token expires or, at the next re-check, when its session ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.status_codes import WS_1011_INTERNAL_ERROR

from core_api.auth.guards import PUBLIC
from core_api.auth.service import authenticate
from core_api.realtime.schemas import decode_command, encode_message, flight_topic
from core_api.web.errors import AppError

if TYPE_CHECKING:
    from core_api.auth.schemas import Principal
    from core_api.auth.service import AuthContext
    from core_api.realtime.hub import Hub
    from core_api.realtime.subscriber import Subscriber

__all__ = ["CLOSE_UNAUTHORIZED", "TOKEN_SUBPROTOCOL", "realtime_socket", "route_handlers"]

logger = logging.getLogger(__name__)

TOKEN_SUBPROTOCOL = "bearer"  # noqa: S105 - the name of a subprotocol, not a secret
CLOSE_UNAUTHORIZED = 4401
"""Close code for a missing, invalid, expired or revoked token (4000 + the HTTP status, by convention)."""
CLOSE_TIMEOUT_SECONDS = 1.0
MAX_COMMAND_CHARS = 1024


def _credentials(socket: WebSocket[Any, Any, Any]) -> tuple[str | None, bool]:
    """The offered token and whether the client asked for the ``bearer`` subprotocol."""
    offered: list[str] = list(socket.scope.get("subprotocols") or [])
    bearer = [protocol for protocol in offered if protocol.lower() == TOKEN_SUBPROTOCOL]
    others = [protocol for protocol in offered if protocol.lower() != TOKEN_SUBPROTOCOL]
    if bearer and others:
        return others[0], True
    return socket.query_params.get("token") or None, bool(bearer)


async def _authenticate(context: AuthContext, token: str | None) -> tuple[Principal | None, int, str]:
    if not token:
        return None, CLOSE_UNAUTHORIZED, "access token required"
    try:
        return await authenticate(context, token), 0, ""
    except AppError as exc:
        return None, CLOSE_UNAUTHORIZED, exc.detail[:120]
    except psycopg.Error as exc:
        logger.warning("realtime: could not check a token: %s: %s", type(exc).__name__, exc)
        return None, WS_1011_INTERNAL_ERROR, "try again later"


@websocket("/ws", opt=PUBLIC, name="realtime")
async def realtime_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Booking and availability events as they happen; see the module docstring and SPEC §4."""
    token, wants_bearer = _credentials(socket)
    principal, close_code, reason = await _authenticate(socket.app.state.auth, token)
    await socket.accept(subprotocols=TOKEN_SUBPROTOCOL if wants_bearer else None)
    if principal is None:
        await socket.close(code=close_code, reason=reason)
        return
    hub: Hub = socket.app.state.hub
    subscriber = hub.connect(principal)
    try:
        subscriber.offer(
            encode_message(
                "connected",
                {
                    "user_id": str(principal.id),
                    "role": principal.role.value,
                    "heartbeat_seconds": hub.options.heartbeat_seconds,
                },
            )
        )
        await _serve(socket, hub, subscriber, token or "")
    finally:
        hub.disconnect(subscriber)


async def _serve(socket: WebSocket[Any, Any, Any], hub: Hub, subscriber: Subscriber, token: str) -> None:
    """Run the socket's writer, reader and token watch until one ends, then close if the server decided to."""
    tasks = [
        asyncio.create_task(subscriber.pump(socket.send_text)),
        asyncio.create_task(_read_commands(socket, hub, subscriber)),
        asyncio.create_task(_watch_token(socket.app.state.auth, token, subscriber, hub.options.recheck_seconds)),
        asyncio.create_task(subscriber.wait_closing()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, WebSocketDisconnect):
                logger.debug("realtime: socket task ended: %r", outcome)
    if subscriber.closing and socket.connection_state != "disconnect":
        assert subscriber.close_code is not None
        try:
            # Bounded: the close frame of a client that stopped reading never leaves either.
            await asyncio.wait_for(socket.close(subscriber.close_code, subscriber.close_reason), CLOSE_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - whatever the server raises, the client is gone and we are done
            logger.debug("realtime: close failed: %r", exc)


async def _read_commands(socket: WebSocket[Any, Any, Any], hub: Hub, subscriber: Subscriber) -> None:
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        frame: str | bytes = message.get("text") or message.get("bytes") or b""  # type: ignore[assignment]
        subscriber.offer(_answer(hub, subscriber, frame))


def _answer(hub: Hub, subscriber: Subscriber, frame: str | bytes) -> str:
    """The reply to one client frame: an acknowledgement, or an error naming what was wrong."""
    if len(frame) > MAX_COMMAND_CHARS:
        return encode_message("error", {"message": f"messages are at most {MAX_COMMAND_CHARS} characters"})
    try:
        command = decode_command(frame)
        if command.subscribe is not None:
            hub.follow(subscriber, flight_topic(command.subscribe))
            return encode_message("subscribed", {"topic": command.subscribe})
        assert command.unsubscribe is not None
        hub.unfollow(subscriber, flight_topic(command.unsubscribe))
        return encode_message("unsubscribed", {"topic": command.unsubscribe})
    except ValueError as exc:
        return encode_message("error", {"message": str(exc)})


async def _watch_token(context: AuthContext, token: str, subscriber: Subscriber, recheck_seconds: float) -> None:
    """Close the socket (4401) when its access token expires or stops being accepted (logout, revoked session), or
    when its user's role or airline changed: the hub chose what to deliver by the access the socket connected with,
    so a demoted admin must not keep an admin's view; reconnecting gets the current one."""
    expires_at = subscriber.principal.token_expires_at
    while True:
        remaining = expires_at - time.time()
        if remaining <= 0:
            subscriber.request_close(CLOSE_UNAUTHORIZED, "access token expired")
            return
        await asyncio.sleep(min(remaining, recheck_seconds))
        if time.time() >= expires_at:
            continue
        try:
            current = await authenticate(context, token)
        except AppError:
            # The token may have expired while it was being checked.
            expired = time.time() >= expires_at
            subscriber.request_close(CLOSE_UNAUTHORIZED, "access token expired" if expired else "access token revoked")
            return
        except psycopg.Error as exc:
            # The database being briefly away is not the client's fault; the next check decides.
            logger.warning("realtime: could not re-check a token: %s: %s", type(exc).__name__, exc)
            continue
        connected = subscriber.principal
        if (current.role, current.airline_code) != (connected.role, connected.airline_code):
            subscriber.request_close(CLOSE_UNAUTHORIZED, "access changed")
            return


route_handlers = [realtime_socket]
