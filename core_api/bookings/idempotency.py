"""``Idempotency-Key`` for POSTs that create (SPEC §4): the same key and body answer the stored response again.

The key is claimed by the first statement of the request's own transaction and its response stored by the last,
so the key, the change and the stored answer commit or roll back together: a request that failed (sold out, a
dropped connection) leaves no key behind and may be retried with it. A concurrent duplicate waits on the key's row
until the first transaction ends, then replays its answer, so concurrent duplicates create one booking. Keys are
per caller, kept 24 hours, and bound to the request: another body, method or path under a live key is 422
``IDEMPOTENCY_KEY_REUSED``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from core_api.bookings._common import QUERIES
from core_api.web.errors import Conflict, IdempotencyKeyReused, ValidationFailed

if TYPE_CHECKING:
    from uuid import UUID

    from psycopg import AsyncConnection

    from core_api.storage.db import DbPool

__all__ = ["KEY_TTL_HOURS", "IdempotencyKey", "StoredResponse", "claim", "delete_expired_keys", "store"]

KEY_TTL_HOURS = 24
_MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotencyKey:
    """A request's key and what binds the key to the request."""

    owner_id: UUID
    key: str
    method: str
    path: str
    request_hash: bytes

    @classmethod
    def of(cls, owner_id: UUID, key: str, method: str, path: str, body: bytes) -> IdempotencyKey:
        """The key of a request; the body is hashed in canonical form (key order and spacing do not matter)."""
        key = key.strip()
        if not key or len(key) > _MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise ValidationFailed.for_field("Idempotency-Key", f"must be 1-{_MAX_KEY_LENGTH} printable ASCII")
        try:
            canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
        except msgspec.DecodeError:
            canonical = body  # the body's own validation reports it
        return cls(owner_id, key, method, path, hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes


async def claim(tx: AsyncConnection[Any], key: IdempotencyKey) -> StoredResponse | None:
    """Take the key for this request (``None``: go on) or return the response stored under it."""
    params = {
        "owner_id": key.owner_id,
        "key": key.key,
        "method": key.method,
        "path": key.path,
        "request_hash": key.request_hash,
        "ttl_hours": KEY_TTL_HOURS,
    }
    if await (await tx.execute(QUERIES["claim_idempotency_key"], params)).fetchone() is not None:
        return None
    row = await (await tx.execute(QUERIES["idempotency_key"], params)).fetchone()
    if row is None:  # expired between the two statements: rare enough to ask for a retry
        raise Conflict("The Idempotency-Key expired just now; retry the request.")
    if (row["method"], row["path"], bytes(row["request_hash"])) != (key.method, key.path, key.request_hash):
        raise IdempotencyKeyReused("This Idempotency-Key was used with another request; use a new key.")
    if row["status_code"] is None:
        raise Conflict("A request with this Idempotency-Key is still in progress.")
    return StoredResponse(int(row["status_code"]), bytes(row["response_body"]))


async def store(tx: AsyncConnection[Any], key: IdempotencyKey, status_code: int, body: bytes) -> None:
    """Keep the response under the key, in the transaction that made the change."""
    await tx.execute(
        QUERIES["store_idempotent_response"],
        {"owner_id": key.owner_id, "key": key.key, "status_code": status_code, "response_body": body},
    )


async def delete_expired_keys(pool: DbPool, *, batch: int = 5000) -> int:
    """Forget keys past their lifetime, a batch per statement; returns how many went."""
    deleted = 0
    while True:
        async with pool.connection() as conn:
            cursor = await conn.execute(QUERIES["delete_expired_idempotency_keys"], {"limit": batch})
        deleted += max(cursor.rowcount, 0)
        if cursor.rowcount < batch:
            return deleted
