"""User rules: creating accounts (API and ``flightdesk create-user`` share this path), listing, reading,
updating (self-service and admin), soft deletion and statistics.

Who may see whom: a user sees themself; ADMIN and BUSINESS_OWNER see everyone (BUSINESS_OWNER read-only); anyone
else is told 404. Every change and its audit rows commit in one transaction. A change that would leave no live,
active ADMIN (demoting, deactivating or deleting the last one) is refused with 409, so the system can always be
administered without falling back to the CLI; so is an admin deleting or deactivating their own account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from core_api.audit.schemas import EventType
from core_api.audit.service import Actor, erase_personal_data, record
from core_api.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hash_password, verify_password
from core_api.auth.revocation import revoke_password_resets, revoke_user_sessions
from core_api.auth.schemas import Principal
from core_api.notifications.service import erase_user_notifications
from core_api.storage.db import DbPool, load_queries, struct_row, transaction
from core_api.users.schemas import DailyCount, Role, User, UserPage, UserStats, UserUpdate
from core_api.web.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed, register_constraint

if TYPE_CHECKING:
    from core_api.auth.lockout import LoginThrottle

__all__ = [
    "create_user",
    "delete_user",
    "get_user",
    "list_users",
    "normalise_email",
    "update_user",
    "user_stats",
    "validate_password",
]

QUERIES = load_queries("users")

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
# Roles that may read every user.
_READERS = frozenset({Role.ADMIN, Role.BUSINESS_OWNER})
_ADMIN_FIELDS = ("role", "is_active", "airline_code")

register_constraint("users_email_key", Conflict("A user with this email already exists."))
# Backstops for races with airline changes; the service checks both first.
register_constraint(
    "users_airline_agent_has_airline",
    ValidationFailed.for_field("airline_code", "required for AIRLINE_AGENT and only for AIRLINE_AGENT"),
)
register_constraint("users_airline_code_fkey", ValidationFailed.for_field("airline_code", "unknown airline"))


def normalise_email(email: str, field: str = "email") -> str:
    email = email.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValidationFailed.for_field(field, "not a valid email address")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def validate_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed.for_field(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed.for_field(field, f"must be at most {MAX_PASSWORD_LENGTH} characters")


def _validate_name(full_name: str) -> str:
    full_name = " ".join(full_name.split())
    if not 1 <= len(full_name) <= 200:
        raise ValidationFailed.for_field("full_name", "must be 1 to 200 characters")
    return full_name


async def _one(
    conn: AsyncConnection[Any], query: str, params: Mapping[str, Any] | None = None, *, prepare: bool | None = None
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES[query], params, prepare=prepare)
        return await cursor.fetchone()


async def _user_row(conn: AsyncConnection[Any], query: str, params: Mapping[str, Any]) -> User | None:
    async with conn.cursor(row_factory=struct_row(User)) as cursor:
        await cursor.execute(QUERIES[query], params)
        return await cursor.fetchone()


async def _checked_airline(tx: AsyncConnection[Any], role: Role, airline_code: str | None) -> str | None:
    """The airline code a user of ``role`` gets: required and known for AIRLINE_AGENT, absent for everyone else."""
    if role is not Role.AIRLINE_AGENT:
        if airline_code:
            raise ValidationFailed.for_field("airline_code", "only AIRLINE_AGENT users belong to an airline")
        return None
    if not airline_code:
        raise ValidationFailed.for_field("airline_code", "required for AIRLINE_AGENT")
    airline_code = airline_code.upper()
    row = await _one(tx, "airline_exists", {"code": airline_code})
    if not row or not row["exists"]:
        raise ValidationFailed.for_field("airline_code", "unknown airline")
    return airline_code


async def create_user(
    tx: AsyncConnection[Any],
    actor: Actor,
    *,
    email: str,
    password: str,
    full_name: str,
    role: Role = Role.CUSTOMER,
    airline_code: str | None = None,
    phone: str | None = None,
) -> User:
    """Validate, hash the password, insert the user and audit ``user.created`` in ``tx``'s transaction."""
    email = normalise_email(email)
    validate_password(password)
    full_name = _validate_name(full_name)
    airline_code = await _checked_airline(tx, role, airline_code)
    password_hash = await hash_password(password)
    values = {"email": email, "password_hash": password_hash, "full_name": full_name, "phone": phone,
              "role": role.value, "airline_code": airline_code}  # fmt: skip
    try:
        user = await _user_row(tx, "insert_user", values)
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name != "users_email_key":
            raise
        # Named here rather than by the generic constraint mapping, so the CLI and the API both say which address.
        raise Conflict(f"A user with the email {email} already exists.") from None
    assert user is not None
    await record(tx, EventType.USER_CREATED, actor, ("user", user.id), after=user)
    return user


def _may_see(principal: Principal, user_id: UUID) -> bool:
    return principal.id == user_id or principal.role in _READERS


async def _fetch_user(conn: AsyncConnection[Any], query: str, user_id: UUID) -> User:
    user = await _user_row(conn, query, {"id": user_id})
    if user is None:
        raise NotFound("User not found.")
    return user


async def get_user(pool: DbPool, principal: Principal, user_id: UUID) -> User:
    """A live user the caller may see; everyone else (and deleted users) is 404."""
    if not _may_see(principal, user_id):
        raise NotFound("User not found.")
    async with pool.connection() as conn:
        return await _fetch_user(conn, "user_by_id", user_id)


async def list_users(
    pool: DbPool, *, q: str | None, role: Role | None, is_active: bool | None, page: int, page_size: int
) -> UserPage:
    """Live users matching the filters, newest first; ``q`` matches word prefixes of the name and email."""
    q = q.strip() if q else None
    params = {
        "q": q or None,
        "role": role.value if role else None,
        "is_active": is_active,
        "limit": page_size,
        "offset": (page - 1) * page_size,
    }
    # One snapshot for the total and the page, so they agree. Unprepared, so the planner sees which filters are NULL.
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(QUERIES["read_only_snapshot"])
        row = await _one(conn, "count_users", params, prepare=False)
        assert row is not None
        async with conn.cursor(row_factory=struct_row(User)) as cursor:
            await cursor.execute(QUERIES["search_users" if q else "list_users"], params, prepare=False)
            items = await cursor.fetchall()
    return UserPage(items=items, total=row["total"], page=page, page_size=page_size)


class _RoleCount(msgspec.Struct, frozen=True):
    role: Role
    active: int
    inactive: int
    deleted: int


async def user_stats(pool: DbPool) -> UserStats:
    """Counts by role and state, and sign-ups per UTC day over the last 30 days."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(QUERIES["read_only_snapshot"])
        async with conn.cursor(row_factory=struct_row(_RoleCount)) as cursor:
            await cursor.execute(QUERIES["user_counts"])
            counts = await cursor.fetchall()
        async with conn.cursor(row_factory=struct_row(DailyCount)) as cursor:
            await cursor.execute(QUERIES["new_users_per_day"])
            days = await cursor.fetchall()
    by_role = dict.fromkeys(Role, 0) | {row.role: row.active + row.inactive for row in counts}
    active = sum(row.active for row in counts)
    inactive = sum(row.inactive for row in counts)
    return UserStats(
        total=active + inactive,
        active=active,
        inactive=inactive,
        deleted=sum(row.deleted for row in counts),
        by_role=by_role,
        new_users_per_day=days,
    )


async def _keep_an_admin(tx: AsyncConnection[Any], user: User) -> None:
    """Refuse to remove the last live, active ADMIN; call before demoting, deactivating or deleting ``user``."""
    if user.role is not Role.ADMIN or not user.is_active:
        return
    # Two admins demoting each other at once would each still see the other; the lock makes them take turns.
    await tx.execute(QUERIES["lock_admin_removal"])
    row = await _one(tx, "count_other_active_admins", {"id": user.id})
    if row is None or row["n"] == 0:
        raise Conflict("This is the last active admin; make another admin first.")


async def _refuse(pool: DbPool, event_type: EventType, actor: Actor, user_id: UUID, **metadata: Any) -> None:
    """Audit a refused change in a transaction of its own (the change itself writes nothing)."""
    async with transaction(pool) as tx:
        await record(tx, event_type, actor, ("user", user_id), metadata=metadata)


def _not_oneself(principal: Principal, user_id: UUID, action: str) -> None:
    """Refuse an admin deleting or deactivating their own account: a slip that locks them out at once (and may
    leave the others without the admin they counted on); another admin has to do it."""
    if principal.id == user_id:
        raise Conflict(f"You cannot {action} your own account; ask another admin.")


async def _check_update_allowed(
    pool: DbPool, actor: Actor, principal: Principal, user_id: UUID, changes: UserUpdate
) -> None:
    if not _may_see(principal, user_id):
        raise NotFound("User not found.")
    is_admin = principal.role is Role.ADMIN
    if principal.id != user_id and not is_admin:
        raise Forbidden("Business owners have read-only access to users.")
    admin_fields = [name for name in _ADMIN_FIELDS if getattr(changes, name) is not msgspec.UNSET]
    if admin_fields and not is_admin:
        await _refuse(
            pool, EventType.SECURITY_ACCESS_DENIED, actor, user_id, reason="admin_fields", fields=admin_fields
        )
        raise Forbidden(
            "Only an admin may change role, is_active or airline_code.",
            errors=[FieldError(name, "only an admin may change this") for name in admin_fields],
        )
    if changes.is_active is False:
        _not_oneself(principal, user_id, "deactivate")
    wants_password = changes.new_password is not msgspec.UNSET
    if wants_password != (changes.current_password is not msgspec.UNSET):
        missing = "current_password" if wants_password else "new_password"
        raise ValidationFailed.for_field(missing, "current_password and new_password go together")
    if wants_password and principal.id != user_id:
        raise Forbidden("Only the account holder can change its password; use a password reset instead.")


async def _verified_password_hash(
    pool: DbPool, throttle: LoginThrottle, actor: Actor, user_id: UUID, current_password: str
) -> str:
    """The stored hash, once ``current_password`` matches it (checked outside any transaction: it is slow).

    The check is a guess at the same secret as a login, so it is reserved and counted by the login lockout: a
    stolen access token does not make this an unlimited password oracle.
    """
    async with pool.connection() as conn:
        row = await _one(conn, "password_hash", {"id": user_id})
    if row is None:
        raise NotFound("User not found.")
    attempt = await throttle.reserve("login", row["email"], actor.ip)
    matches, _ = await verify_password(row["password_hash"], current_password)
    if not matches:
        locked = await throttle.failed(attempt)
        async with transaction(pool) as tx:
            await record(tx, EventType.AUTH_PASSWORD_CHANGE_FAILED, actor, ("user", user_id),
                         metadata={"reason": "wrong_current_password"})  # fmt: skip
            if locked:
                await record(tx, EventType.AUTH_LOCKOUT, actor, ("user", user_id), metadata={"scopes": locked})
        raise Forbidden(
            "The current password is not correct.",
            errors=[FieldError("current_password", "does not match the account's password")],
        )
    await throttle.succeeded(attempt)
    return str(row["password_hash"])


async def _new_values(
    tx: AsyncConnection[Any], before: User, changes: UserUpdate, full_name: str | None
) -> dict[str, Any]:
    """The user's fields once ``changes`` apply, checked against the airline rule and the last-admin rule."""
    role = before.role if changes.role is msgspec.UNSET else changes.role
    is_active = before.is_active if changes.is_active is msgspec.UNSET else changes.is_active
    if changes.airline_code is not msgspec.UNSET:
        airline_code = changes.airline_code
    else:
        # Leaving the airline-agent role leaves the airline; staying keeps it.
        airline_code = before.airline_code if role is Role.AIRLINE_AGENT else None
    if (role, airline_code) != (before.role, before.airline_code):
        airline_code = await _checked_airline(tx, role, airline_code)
    if role is not Role.ADMIN or not is_active:
        await _keep_an_admin(tx, before)
    return {
        "full_name": before.full_name if full_name is None else full_name,
        "phone": before.phone if changes.phone is msgspec.UNSET else changes.phone,
        "role": role,
        "airline_code": airline_code,
        "is_active": is_active,
    }


async def _audit_update(
    tx: AsyncConnection[Any], actor: Actor, before: User, after: User, changed: list[str], password_changed: bool
) -> None:
    entity = ("user", before.id)
    if changed:
        await record(tx, EventType.USER_UPDATED, actor, entity, before, after, metadata={"fields": changed})
    if after.role is not before.role:
        await record(tx, EventType.USER_ROLE_CHANGED, actor, entity, {"role": before.role}, {"role": after.role})
    if after.is_active != before.is_active:
        await record(tx, EventType.USER_REACTIVATED if after.is_active else EventType.USER_DEACTIVATED, actor, entity)
    if password_changed:
        await record(tx, EventType.AUTH_PASSWORD_CHANGED, actor, entity)


async def update_user(
    pool: DbPool, throttle: LoginThrottle, actor: Actor, principal: Principal, user_id: UUID, changes: UserUpdate
) -> User:
    """Apply a self-service or admin update; see :class:`UserUpdate` for who may send what."""
    await _check_update_allowed(pool, actor, principal, user_id, changes)
    full_name = None if changes.full_name is msgspec.UNSET else _validate_name(changes.full_name)
    password: dict[str, Any] | None = None
    if changes.new_password is not msgspec.UNSET and changes.current_password is not msgspec.UNSET:
        validate_password(changes.new_password, "new_password")
        verified_hash = await _verified_password_hash(pool, throttle, actor, user_id, changes.current_password)
        password = {"id": user_id, "verified_hash": verified_hash,
                    "password_hash": await hash_password(changes.new_password)}  # fmt: skip

    async with transaction(pool) as tx:
        before = await _fetch_user(tx, "lock_user", user_id)
        values = await _new_values(tx, before, changes, full_name)
        changed = sorted(name for name, value in values.items() if value != getattr(before, name))
        after: User | None = before
        if changed:
            after = await _user_row(tx, "update_user", {"id": user_id, **values})
        if password is not None:
            after = await _user_row(tx, "change_password", password)
            if after is None:
                raise Conflict("The password was changed meanwhile; try again.")
        assert after is not None
        if password is not None or (before.is_active and not after.is_active):
            await revoke_user_sessions(tx, user_id, "password_change" if password else "deactivated")
        if password is not None or (before.is_active and not after.is_active) or after.role is not before.role:
            await revoke_password_resets(tx, user_id)
        await _audit_update(tx, actor, before, after, changed, password_changed=password is not None)
    return after


async def delete_user(pool: DbPool, actor: Actor, principal: Principal, user_id: UUID) -> None:
    """Soft-delete a user: deactivated, personal data anonymised, password unusable, every session ended."""
    _not_oneself(principal, user_id, "delete")
    async with transaction(pool) as tx:
        before = await _fetch_user(tx, "lock_user", user_id)
        await _keep_an_admin(tx, before)
        await tx.execute(QUERIES["soft_delete_user"], {"id": user_id})
        await revoke_user_sessions(tx, user_id, "deleted")
        await revoke_password_resets(tx, user_id)
        # The audit trail outlives the account, so it keeps no personal data of it: what its rows kept apart goes
        # (their chained part holds references only), and the deletion's own row records none.
        erased = await erase_personal_data(tx, user_id)
        await erase_user_notifications(tx, user_id)
        kept = {"id": before.id, "role": before.role, "is_active": before.is_active, "created_at": before.created_at,
                "audit_personal_rows_erased": erased}  # fmt: skip
        await record(tx, EventType.USER_DELETED, actor, ("user", user_id), before=kept, metadata={"anonymised": True})
