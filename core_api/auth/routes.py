"""``/auth``: register, login, refresh, logout, me, password reset."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from core_api.auth import service
from core_api.auth.guards import PUBLIC, actor_of, principal_of
from core_api.auth.schemas import (
    LoginRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
)
from core_api.storage.db import load_queries, struct_row
from core_api.users.schemas import User
from core_api.web.deps import Pool
from core_api.web.errors import Conflict, Forbidden, NotFound, Unauthorized

__all__ = ["route_handlers"]

QUERIES = load_queries("auth")


def _context(request: Request[Any, Any, Any]) -> service.AuthContext:
    return request.app.state.auth


@post("/auth/register", operation_id="register", tags=["auth"], opt=PUBLIC, raises=[Conflict])
async def register(request: Request[Any, Any, Any], data: JSONBody[RegisterRequest]) -> TokenPair:
    """Create a CUSTOMER account and log it in. The role is always CUSTOMER; other roles come from an admin."""
    return await service.register(
        _context(request), actor_of(request), email=data.email, password=data.password, full_name=data.full_name
    )


@post("/auth/login", operation_id="login", tags=["auth"], opt=PUBLIC, status_code=200, raises=[Unauthorized, Forbidden])
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginRequest]) -> TokenPair:
    """Exchange email and password for an access token (15 min) and a refresh token.

    Five failures for one email from one client address within 15 minutes (or twenty from anywhere) lock further
    attempts, the right password included, with 429 until the window passes; parallel attempts cannot outrun it.
    """
    return await service.login(_context(request), actor_of(request), email=data.email, password=data.password)


@post("/auth/refresh", operation_id="refreshTokens", tags=["auth"], opt=PUBLIC, status_code=200, raises=[Unauthorized])
async def refresh(request: Request[Any, Any, Any], data: JSONBody[RefreshRequest]) -> TokenPair:
    """Spend a refresh token for a new token pair. A refresh token used twice revokes its whole session."""
    return await service.refresh(_context(request), actor_of(request), refresh_token=data.refresh_token)


@post("/auth/logout", operation_id="logout", tags=["auth"], status_code=HTTP_204_NO_CONTENT)
async def logout(request: Request[Any, Any, Any]) -> None:
    """Revoke this access token (until it expires) and end its session's refresh tokens."""
    principal = principal_of(request)
    assert principal is not None
    await service.logout(_context(request), actor_of(request), principal)


@get("/auth/me", operation_id="getMe", tags=["auth"], raises=[NotFound])
async def me(request: Request[Any, Any, Any], pool: Pool) -> User:
    """The caller's own profile."""
    principal = principal_of(request)
    assert principal is not None
    async with pool.connection() as conn, conn.cursor(row_factory=struct_row(User)) as cursor:
        await cursor.execute(QUERIES["user_by_id"], {"user_id": principal.id})
        user = await cursor.fetchone()
    if user is None:
        raise NotFound("User not found.")
    return user


@post(
    "/auth/password-reset/request",
    operation_id="requestPasswordReset",
    tags=["auth"],
    opt=PUBLIC,
    status_code=HTTP_202_ACCEPTED,
    # No body: as text, None renders as nothing (as JSON it would be `null`).
    media_type=MediaType.TEXT,
)
async def request_password_reset(request: Request[Any, Any, Any], data: JSONBody[PasswordResetRequest]) -> None:
    """Ask for a password-reset email. The answer is the same whether or not the account exists.

    Every request counts toward the login lockout's limits of its kind (5 per email and address, 20 per email in
    15 minutes; 429 beyond), so nobody can flood a mailbox.
    """
    await service.request_password_reset(_context(request), actor_of(request), email=data.email)


@post(
    "/auth/password-reset/confirm",
    operation_id="confirmPasswordReset",
    tags=["auth"],
    opt=PUBLIC,
    status_code=HTTP_204_NO_CONTENT,
    raises=[Unauthorized],
)
async def confirm_password_reset(request: Request[Any, Any, Any], data: JSONBody[PasswordResetConfirm]) -> None:
    """Set a new password with a reset token; every session of the account ends."""
    await service.confirm_password_reset(
        _context(request), actor_of(request), token=data.token, new_password=data.new_password
    )


route_handlers = [register, login, refresh, logout, me, request_password_reset, confirm_password_reset]
