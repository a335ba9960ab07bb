"""Ending what a user holds: their sessions (refresh-token families and, through them, their access tokens).

Both the auth flows (password reset) and user administration (password change, deactivation, deletion) revoke;
this module sits below both, so neither service imports the other for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core_api.storage.db import load_queries

if TYPE_CHECKING:
    import uuid

    from psycopg import AsyncConnection

__all__ = ["revoke_user_sessions"]

QUERIES = load_queries("auth")


async def revoke_user_sessions(tx: AsyncConnection[Any], user_id: uuid.UUID, reason: str) -> None:
    """End every session of a user (their access tokens stop working with them)."""
    await tx.execute(QUERIES["revoke_user_sessions"], {"user_id": user_id, "reason": reason})
