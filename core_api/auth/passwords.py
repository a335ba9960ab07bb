"""Password hashing with argon2id.

Parameters follow the OWASP Password Storage Cheat Sheet's first argon2id option (19 MiB memory, 2 iterations,
1 lane). Hashing is CPU-bound for tens of milliseconds, so the async helpers run it in a worker thread to keep
the event loop serving other requests. A stored hash made with older parameters is reported for rehashing.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "hash_password", "verify_password"]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, hash_len=32, salt_len=16)
# Verified against when the email is unknown, so both answers cost the same time.
_DUMMY_HASH = _hasher.hash("flightdesk-timing-equaliser")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    try:
        _hasher.verify(stored_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False, False
    if stored_hash is None:
        return False, False
    return True, _hasher.check_needs_rehash(stored_hash)


async def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """``(matches, needs_rehash)``; pass ``None`` for an unknown user to spend the same time and fail."""
    return await asyncio.to_thread(_verify, stored_hash, password)
