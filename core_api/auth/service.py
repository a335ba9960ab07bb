"""Authentication rules: register, log in, refresh with rotation and reuse detection, log out, reset passwords.

A login opens a session: one refresh-token family with an absolute lifetime. Every refresh spends the presented
token and issues a new one in the same family; presenting a spent token again means it was stolen (or replayed),
so the whole family is revoked. Ending a session (logout, reuse, password change, deactivation) also ends its
access tokens, because every authenticated request checks its session (see :func:`authenticate`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from core_api.audit.schemas import EventType
from core_api.audit.service import Actor, record
from core_api.auth.lockout import LoginThrottle
from core_api.auth.passwords import hash_password, verify_password
from core_api.auth.revocation import revoke_password_resets, revoke_user_sessions
from core_api.auth.schemas import Principal, TokenPair
from core_api.auth.tokens import (
    AccessTokenVerifier,
    Keyring,
    hash_opaque_token,
    issue_access_token,
    new_opaque_token,
)
from core_api.outbox import emit
from core_api.security.crypto import Cipher
from core_api.settings import Settings
from core_api.storage.db import DbPool, load_queries, struct_row, transaction
from core_api.users.schemas import Role, User
from core_api.users.service import create_user, normalise_email, validate_password
from core_api.web.errors import Forbidden, Unauthorized

__all__ = [
    "authenticate",
    "confirm_password_reset",
    "forget_expired_state",
    "login",
    "logout",
    "refresh",
    "register",
    "request_password_reset",
]

QUERIES = load_queries("auth")
PASSWORD_RESET_TTL_SECONDS = 30 * 60
# Associated data of a password-reset token sealed into its outbox event and mail (it opens under no other name).
RESET_TOKEN_SEAL = "auth.password_reset_requested:token"  # noqa: S105 - a label, not a secret

_INVALID_CREDENTIALS = "Invalid email or password."


class AuthContext:
    """What the auth flows need from the app: settings, signing keys, the pool and the login throttle."""

    def __init__(self, settings: Settings, keyring: Keyring, pool: DbPool, throttle: LoginThrottle, cipher: Cipher):
        self.settings = settings
        self.keyring = keyring
        self.tokens = AccessTokenVerifier(keyring, settings)
        self.pool = pool
        self.throttle = throttle
        self.cipher = cipher


async def _open_session(ctx: AuthContext, tx: AsyncConnection[Any], user: User, actor: Actor) -> TokenPair:
    family_id = uuid.uuid4()
    await tx.execute(
        QUERIES["open_session"],
        {
            "user_id": user.id,
            "family_id": family_id,
            "ip": actor.ip,
            "user_agent": actor.user_agent[:512] if actor.user_agent else None,
            "ttl": ctx.settings.auth.session_ttl_seconds,
        },
    )
    return await _issue_pair(ctx, tx, user, family_id)


async def _issue_pair(ctx: AuthContext, tx: AsyncConnection[Any], user: User, family_id: uuid.UUID) -> TokenPair:
    refresh_token = new_opaque_token("rt")
    await tx.execute(
        QUERIES["insert_refresh_token"],
        {
            "user_id": user.id,
            "family_id": family_id,
            "token_hash": hash_opaque_token(refresh_token),
            "ttl": ctx.settings.auth.refresh_ttl_seconds,
        },
    )
    access_token, claims = issue_access_token(
        ctx.keyring, ctx.settings, user_id=user.id, role=user.role.value, session_id=family_id
    )
    return TokenPair(
        user=user, access_token=access_token, refresh_token=refresh_token, expires_in=claims.exp - claims.iat
    )


async def register(ctx: AuthContext, actor: Actor, *, email: str, password: str, full_name: str) -> TokenPair:
    """Self-registration: always a CUSTOMER, logged in at once."""
    async with transaction(ctx.pool) as tx:
        user = await create_user(tx, actor, email=email, password=password, full_name=full_name, role=Role.CUSTOMER)
        pair = await _open_session(ctx, tx, user, actor)
        user_actor = Actor(id=user.id, role=user.role, ip=actor.ip, user_agent=actor.user_agent)
        await record(tx, EventType.AUTH_REGISTER, user_actor, ("user", user.id))
        # The welcome mail (core_api.notifications) is sent from this event, once the account exists.
        payload = {"user_id": str(user.id), "email": user.email, "full_name": user.full_name}
        await emit(tx, "auth.register", ("user", user.id), payload)
    return pair


async def login(ctx: AuthContext, actor: Actor, *, email: str, password: str) -> TokenPair:
    """Check the password (same cost whether or not the email exists) and open a session.

    The attempt is reserved with the lockout before the password is checked (429 when it is locked out), so
    parallel guesses cannot outrun the count; only a login that opens a session releases its reservation.
    """
    email = email.strip()
    attempt = await ctx.throttle.reserve("login", email, actor.ip)
    try:
        async with ctx.pool.connection() as conn:
            row = await (await conn.execute(QUERIES["user_for_login"], {"email": email})).fetchone()
        matches, needs_rehash = await verify_password(row["password_hash"] if row else None, password)
    except BaseException:
        # No verdict reached the caller (our own error, or they hung up): the attempt guessed nothing.
        await ctx.throttle.release(attempt)
        raise
    if not matches:
        locked = await ctx.throttle.failed(attempt)
        email_sha256 = hash_opaque_token(email.lower()).hex()
        async with transaction(ctx.pool) as tx:
            user_id = row["id"] if row else None
            await record(
                tx, EventType.AUTH_LOGIN_FAILED, actor, ("user", user_id) if user_id else None,
                metadata={"email_sha256": email_sha256, "known_user": row is not None},
            )  # fmt: skip
            if locked:
                await record(tx, EventType.AUTH_LOCKOUT, actor, ("user", user_id) if user_id else None,
                             metadata={"email_sha256": email_sha256, "scopes": locked})  # fmt: skip
        raise Unauthorized(_INVALID_CREDENTIALS)
    assert row is not None
    if not row["is_active"]:
        # Counted as a failure: the right password of a deactivated account opens nothing.
        await ctx.throttle.failed(attempt)
        async with transaction(ctx.pool) as tx:
            await record(tx, EventType.AUTH_LOGIN_FAILED, actor, ("user", row["id"]), metadata={"reason": "inactive"})
        raise Forbidden("This account is deactivated.")
    new_hash = await hash_password(password) if needs_rehash else None
    async with transaction(ctx.pool) as tx:
        async with tx.cursor(row_factory=struct_row(User)) as cursor:
            await cursor.execute(QUERIES["record_login"], {"user_id": row["id"], "new_hash": new_hash})
            user = await cursor.fetchone()
        assert user is not None
        pair = await _open_session(ctx, tx, user, actor)
        user_actor = Actor(id=user.id, role=user.role, ip=actor.ip, user_agent=actor.user_agent)
        await record(
            tx, EventType.AUTH_LOGIN, user_actor, ("user", user.id), metadata={"rehashed": new_hash is not None}
        )
    await ctx.throttle.succeeded(attempt)
    return pair


async def refresh(ctx: AuthContext, actor: Actor, *, refresh_token: str) -> TokenPair:
    """Spend a refresh token for a new pair; a token presented twice revokes its whole family."""
    async with transaction(ctx.pool) as tx:
        token = await (
            await tx.execute(QUERIES["lock_refresh_token"], {"token_hash": hash_opaque_token(refresh_token)})
        ).fetchone()
        if token is None:
            raise Unauthorized("The refresh token is not valid.")
        now = datetime.now(UTC)
        if token["spent_at"] is not None and token["revoked_at"] is None and token["session_revoked_at"] is None:
            await tx.execute(QUERIES["revoke_family"], {"family_id": token["family_id"], "reason": "reuse_detected"})
            await record(
                tx, EventType.AUTH_REFRESH_REUSE_DETECTED, actor, ("user", token["user_id"]),
                metadata={"session_id": str(token["family_id"])},
            )  # fmt: skip
        elif (
            token["spent_at"] is not None
            or token["revoked_at"] is not None
            or token["session_revoked_at"] is not None
            or token["expires_at"] <= now
            or token["session_expires_at"] <= now
        ):
            raise Unauthorized("The refresh token is not valid.")
        else:
            async with tx.cursor(row_factory=struct_row(User)) as cursor:
                await cursor.execute(QUERIES["user_by_id"], {"user_id": token["user_id"]})
                user = await cursor.fetchone()
            if user is None or not user.is_active:
                raise Unauthorized("The refresh token is not valid.")
            await tx.execute(QUERIES["spend_refresh_token"], {"id": token["id"]})
            await tx.execute(QUERIES["touch_session"], {"family_id": token["family_id"], "ip": actor.ip})
            pair = await _issue_pair(ctx, tx, user, token["family_id"])
            user_actor = Actor(id=user.id, role=user.role, ip=actor.ip, user_agent=actor.user_agent)
            await record(tx, EventType.AUTH_REFRESH, user_actor, ("user", user.id),
                         metadata={"session_id": str(token["family_id"])})  # fmt: skip
            return pair
    # The revocation above is committed before the caller hears "no".
    raise Unauthorized("The refresh token was already used; the session has been revoked.")


async def logout(ctx: AuthContext, actor: Actor, principal: Principal) -> None:
    """Blacklist this access token until it expires and end its session."""
    async with transaction(ctx.pool) as tx:
        await tx.execute(
            QUERIES["blacklist_token"],
            {
                "jti": principal.token_id,
                "user_id": principal.id,
                "expires_at": datetime.fromtimestamp(principal.token_expires_at, UTC),
                "reason": "logout",
            },
        )
        await tx.execute(QUERIES["revoke_family"], {"family_id": principal.session_id, "reason": "logout"})
        await record(tx, EventType.AUTH_LOGOUT, actor, ("user", principal.id),
                     metadata={"session_id": str(principal.session_id)})  # fmt: skip


async def request_password_reset(ctx: AuthContext, actor: Actor, *, email: str) -> str | None:
    """Create a reset token for the account behind ``email``; the caller never learns whether one exists.

    Returns the token for delivery (the notification issue emails it), or ``None`` when no account matches.
    """
    email = normalise_email(email)
    # Every request counts as a failure, so the endpoint cannot be used to flood a mailbox; reserved first, so
    # parallel requests cannot slip past the count.
    attempt = await ctx.throttle.reserve("password_reset", email, actor.ip)
    locked = await ctx.throttle.failed(attempt)
    async with transaction(ctx.pool) as tx:
        row = await (await tx.execute(QUERIES["user_for_login"], {"email": email})).fetchone()
        if locked:
            await record(tx, EventType.AUTH_LOCKOUT, actor, ("user", row["id"]) if row else None,
                         metadata={"kind": "password_reset", "scopes": locked})  # fmt: skip
        if row is None or not row["is_active"]:
            return None
        token = new_opaque_token("pr")
        await tx.execute(
            QUERIES["insert_password_reset"],
            {"user_id": row["id"], "token_hash": hash_opaque_token(token), "ttl": PASSWORD_RESET_TTL_SECONDS},
        )
        await record(tx, EventType.AUTH_PASSWORD_RESET_REQUESTED, actor, ("user", row["id"]))
        # The mail carrying the token goes out from this event (core_api.notifications), only if this commits. The
        # token travels sealed (outbox rows are kept and published on Redis): only the mail's rendering opens it.
        sealed = ctx.cipher.seal_text(token, context=RESET_TOKEN_SEAL)
        payload = {"user_id": str(row["id"]), "email": row["email"], "sealed_token": sealed}
        await emit(tx, "auth.password_reset_requested", ("user", row["id"]), payload)
    return token


async def confirm_password_reset(ctx: AuthContext, actor: Actor, *, token: str, new_password: str) -> None:
    """Spend a reset token of a live, active account: set the new password, end every session of the user and
    spend the user's other reset tokens.

    The account is re-checked here, not only when the token was issued: a token mailed before a deactivation or
    deletion must not work after it (those revoke the tokens as well; this check also covers a change racing us).
    """
    validate_password(new_password, "new_password")
    password_hash = await hash_password(new_password)
    token_hash = hash_opaque_token(token)
    async with transaction(ctx.pool) as tx:
        owner = await (await tx.execute(QUERIES["lock_password_reset_owner"], {"token_hash": token_hash})).fetchone()
        taken = None
        if owner is not None and owner["is_active"]:
            params = {"token_hash": token_hash, "user_id": owner["id"]}
            taken = await (await tx.execute(QUERIES["take_password_reset"], params)).fetchone()
        if taken is None:
            raise Unauthorized("The reset token is invalid or expired.")
        user_id = taken["user_id"]
        await tx.execute(QUERIES["change_password"], {"user_id": user_id, "password_hash": password_hash})
        await revoke_password_resets(tx, user_id)
        await revoke_user_sessions(tx, user_id, "password_reset")
        await record(tx, EventType.AUTH_PASSWORD_RESET_COMPLETED, actor, ("user", user_id))


async def authenticate(ctx: AuthContext, token: str) -> Principal:
    """The caller behind a bearer token, checked against the database: live user, open session, not blacklisted.

    A session that is missing (never written, or another user's) is treated exactly like a revoked one.
    """
    claims = ctx.tokens.verify(token)
    async with ctx.pool.connection() as conn:
        row = await (
            await conn.execute(QUERIES["principal_state"], {"sub": claims.sub, "sid": claims.sid, "jti": claims.jti})
        ).fetchone()
    changed_at = row["credentials_changed_at"] if row else None
    if (
        row is None
        or not row["is_active"]
        or row["deleted_at"] is not None
        or row["session_ended"]
        or row["blacklisted"]
        or (changed_at is not None and claims.iat < int(changed_at.timestamp()))
    ):
        raise Unauthorized(
            "The access token has been revoked.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="token revoked"'},
        )
    return Principal(
        id=row["id"],
        role=Role(row["role"]),
        airline_code=row["airline_code"],
        session_id=claims.sid,
        token_id=claims.jti,
        token_expires_at=claims.exp,
    )


async def forget_expired_state(pool: DbPool) -> int:
    """Delete what can no longer matter: blacklist entries of expired access tokens, and the PostgreSQL lockout
    counters whose window has ended. Returns how many rows went."""
    async with transaction(pool) as tx:
        blacklist = await tx.execute(QUERIES["purge_expired_blacklist"])
        counters = await tx.execute(QUERIES["forget_ended_lockout_windows"])
        return blacklist.rowcount + counters.rowcount
