"""Wire types of users: the user as read, what creating and updating one takes, pages and statistics."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec

__all__ = ["DailyCount", "Role", "User", "UserCreate", "UserPage", "UserStats", "UserUpdate"]


class Role(enum.StrEnum):
    CUSTOMER = "CUSTOMER"
    TRAVEL_AGENT = "TRAVEL_AGENT"
    AIRLINE_AGENT = "AIRLINE_AGENT"
    BUSINESS_OWNER = "BUSINESS_OWNER"
    ADMIN = "ADMIN"


# Bounds checked while decoding, so an oversized or malformed field is refused, naming it, before any rule runs.
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
FullName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Phone = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\+?[0-9(][0-9 ().-]{2,30}$",
        description="a phone number: digits, optionally a leading +, spaces, ( ) . or -",
    ),
]
AirlineCode = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{2}$", description="a 2-character IATA airline code, e.g. BA")
]


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    email: str
    full_name: str
    phone: str | None
    role: Role
    airline_code: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class UserCreate(_Request):
    """An account of any role, made by an admin. AIRLINE_AGENT needs the ``airline_code`` of a known airline."""

    email: Email
    password: Password
    full_name: FullName
    role: Role
    airline_code: AirlineCode | None = None
    phone: Phone | None = None


class UserUpdate(_Request):
    """Fields to change; absent fields stay as they are, ``null`` clears ``phone``.

    Everyone may change their own ``full_name`` and ``phone``, and their password with ``current_password`` plus
    ``new_password``. Only an admin may send ``role``, ``is_active`` or ``airline_code``.
    """

    full_name: FullName | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    current_password: Password | msgspec.UnsetType = msgspec.UNSET
    new_password: Password | msgspec.UnsetType = msgspec.UNSET
    role: Role | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET
    airline_code: AirlineCode | msgspec.UnsetType | None = msgspec.UNSET


class UserPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[User]
    total: int
    page: int
    page_size: int


class DailyCount(msgspec.Struct, frozen=True, kw_only=True):
    date: date
    count: int


class UserStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts over live (not deleted) users, plus deleted ones and sign-ups per UTC day for the last 30 days."""

    total: int
    active: int
    inactive: int
    deleted: int
    by_role: dict[Role, int]
    new_users_per_day: list[DailyCount]
