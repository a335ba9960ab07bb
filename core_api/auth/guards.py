"""Who may call what: the bearer-token middleware and the role guard driven by route metadata.

Routes declare access in ``opt``: ``opt={"public": True}`` for anonymous endpoints, ``opt={"roles": {...}}`` to
restrict to roles, ``opt={"ops": True}`` for what tells about the infrastructure (``/metrics``,
``/health/services``): loopback clients, or a caller presenting ``Authorization: Bearer <FLIGHTDESK_OPS_TOKEN>``
(never a user's token; the ops token is no user's either). Anything else needs an authenticated caller.
Ownership (which rows a caller may see) is the services' job, in their queries, and a row the caller may not see
is 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware

from core_api.audit.schemas import EventType
from core_api.audit.service import Actor, record
from core_api.auth.schemas import Principal
from core_api.auth.service import authenticate
from core_api.storage.db import transaction
from core_api.web.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from core_api.auth.service import AuthContext

__all__ = ["OPS", "PUBLIC", "AuthenticationMiddleware", "actor_of", "authorize", "principal_of", "roles"]

logger = logging.getLogger(__name__)


def roles(*allowed: str) -> dict[str, Any]:
    """Route ``opt`` restricting a handler to the given roles."""
    return {"roles": frozenset(allowed)}


PUBLIC: dict[str, Any] = {"public": True}
OPS: dict[str, Any] = {"ops": True}


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized(
                    "Use 'Authorization: Bearer <access token>'.",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
                )
            return token.strip()
    return None


class AuthenticationMiddleware(ASGIMiddleware):
    """Resolve the bearer token, if any, to a :class:`Principal` in ``scope["user"]``; a bad token is 401."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        # The bearer of an ops route is the ops token, checked by the guard; it is not a JWT to decode.
        token = None if _is_ops(scope["route_handler"]) else _bearer_token(scope)
        if token is not None:
            context: AuthContext = scope["app"].state.auth
            scope["user"] = await authenticate(context, token)
        await next_app(scope, receive, send)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    user = connection.scope.get("user")
    return user if isinstance(user, Principal) else None


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    """The audit actor of a request: the caller (if any), their IP and user agent."""
    principal = principal_of(connection)
    client = connection.client
    return Actor(
        id=principal.id if principal else None,
        role=principal.role.value if principal else None,
        ip=client.host if client else None,
        user_agent=connection.headers.get("user-agent"),
    )


def _is_ops(handler: BaseRouteHandler) -> bool:
    return bool(handler.opt.get("ops"))


def _is_loopback(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:  # a Unix socket or a test client's name: not known to be local
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _ops_access(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Let loopback clients and holders of the ops token through; everyone else is 401, told nothing more."""
    client = connection.client
    if _is_loopback(client.host if client else None):
        return
    expected: str | None = connection.app.state.auth.settings.ops_token
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if expected and scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), expected.encode()):
        return
    raise Unauthorized(
        "Operations endpoints answer loopback clients and callers with the ops token.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The guard of every API route (and of ``/metrics``): public, ops, authenticated, or restricted to roles per
    the route's ``opt``."""
    if handler.opt.get("public"):
        return
    if _is_ops(handler):
        _ops_access(connection)
        return
    principal = principal_of(connection)
    if principal is None:
        raise Unauthorized(headers={"WWW-Authenticate": "Bearer"})
    allowed = handler.opt.get("roles")
    if allowed and principal.role.value not in allowed:
        pool = connection.app.state.pool
        async with transaction(pool) as tx:
            await record(
                tx,
                EventType.SECURITY_ACCESS_DENIED,
                actor_of(connection),
                metadata={"method": connection.scope.get("method"), "path": connection.url.path},
            )
        raise Forbidden("Your role may not do this.")
