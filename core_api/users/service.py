"""User rules: creating accounts (API and ``flightdesk create-user`` share this path)."""

from __future__ import annotations

import re
from typing import Any

from psycopg import AsyncConnection

from core_api.audit.service import Actor, record
from core_api.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hash_password
from core_api.db import load_queries, struct_row
from core_api.errors import Conflict, ValidationFailed, register_constraint
from core_api.users.schemas import Role, User

__all__ = ["create_user", "normalise_email", "validate_password"]

QUERIES = load_queries("users")

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")

register_constraint("users_email_key", Conflict("A user with this email already exists."))


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
    if role is Role.AIRLINE_AGENT:
        if not airline_code:
            raise ValidationFailed.for_field("airline_code", "required for AIRLINE_AGENT")
        airline_code = airline_code.upper()
        cursor = await tx.execute(QUERIES["airline_exists"], {"code": airline_code})
        row = await cursor.fetchone()
        if not row or not (row["exists"] if isinstance(row, dict) else row[0]):
            raise ValidationFailed.for_field("airline_code", "unknown airline")
    elif airline_code:
        raise ValidationFailed.for_field("airline_code", "only AIRLINE_AGENT users belong to an airline")
    password_hash = await hash_password(password)
    async with tx.cursor(row_factory=struct_row(User)) as cursor:
        await cursor.execute(
            QUERIES["insert_user"],
            {
                "email": email,
                "password_hash": password_hash,
                "full_name": full_name,
                "phone": phone,
                "role": role.value,
                "airline_code": airline_code,
            },
        )
        user = await cursor.fetchone()
    assert user is not None
    await record(tx, "user.created", actor, ("user", user.id), after=user)
    return user
