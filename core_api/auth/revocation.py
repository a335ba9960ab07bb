"""Ending what a user holds: sessions (refresh-token families and, through them, access tokens) and reset tokens.

What ends what: a password change or a completed reset, deactivation and deletion end both; a role change ends
the outstanding password-reset tokens (a link mailed to the account as it was must not take over the account as
it is now). WebSockets follow their access token, which is re-checked every minute.

Both the auth flows (password reset) and user administration (password change, deactivation, deletion) revoke;
this module sits below both, so neither service imports the other for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core_api.storage.db import load_queries

if TYPE_CHECKING:
    import uuid

    from psycopg import AsyncConnection

__all__ = ["revoke_password_resets", "revoke_user_sessions"]

QUERIES = load_queries("auth")


async def revoke_user_sessions(tx: AsyncConnection[Any], user_id: uuid.UUID, reason: str) -> None:
    """End every session of a user (their access tokens stop working with them)."""
    await tx.execute(QUERIES["revoke_user_sessions"], {"user_id": user_id, "reason": reason})


async def revoke_password_resets(tx: AsyncConnection[Any], user_id: uuid.UUID) -> None:
    """Spend every outstanding password-reset token of a user."""
    await tx.execute(QUERIES["revoke_password_resets"], {"user_id": user_id})
