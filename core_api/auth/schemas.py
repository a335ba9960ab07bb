"""Wire types of authentication."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from core_api.users.schemas import Role, User

__all__ = [
    "LoginRequest",
    "PasswordResetConfirm",
    "PasswordResetRequest",
    "Principal",
    "RefreshRequest",
    "RegisterRequest",
    "TokenPair",
]

# Bounds checked while decoding, so a 10 kB field is refused before anything else looks at it.
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
FullName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
OpaqueToken = Annotated[str, msgspec.Meta(min_length=10, max_length=200)]


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RegisterRequest(_Request):
    email: Email
    password: Password
    full_name: FullName


class LoginRequest(_Request):
    email: Email
    password: Password


class RefreshRequest(_Request):
    refresh_token: OpaqueToken


class PasswordResetRequest(_Request):
    email: Email


class PasswordResetConfirm(_Request):
    token: OpaqueToken
    new_password: Password


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    user: User
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller of a request (``request.user``)."""

    id: uuid.UUID
    role: Role
    airline_code: str | None
    session_id: uuid.UUID
    token_id: uuid.UUID
    token_expires_at: int
