"""Wire types of users."""

from __future__ import annotations

import enum
from datetime import datetime
from uuid import UUID

import msgspec

__all__ = ["Role", "User"]


class Role(enum.StrEnum):
    CUSTOMER = "CUSTOMER"
    TRAVEL_AGENT = "TRAVEL_AGENT"
    AIRLINE_AGENT = "AIRLINE_AGENT"
    BUSINESS_OWNER = "BUSINESS_OWNER"
    ADMIN = "ADMIN"


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
