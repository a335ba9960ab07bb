"""Key rotation of the fields encrypted at rest (``flightdesk rotate-keys``): every value sealed with an older key
is opened and sealed again with the current one (the first of ``FLIGHTDESK_CRYPTO_KEYS``), in batches.

No downtime: each batch is its own short transaction over rows locked ``FOR UPDATE SKIP LOCKED`` (a row being
changed right now is left for the next pass), and while it runs every listed key still opens what it sealed. So a
rotation is: put the new key first (keep the old one listed), restart, run ``rotate-keys``, then drop the old key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.security.crypto import Cipher

__all__ = ["SEALED_COLUMNS", "SealedColumn", "rotate_keys"]


@dataclass(frozen=True)
class SealedColumn:
    """A column of ciphertexts, and how its associated data is made: ``context`` + the row's ``context_column``."""

    table: str
    column: str
    context: str
    context_column: str
    version_column: str | None = None
    """A column repeating the key version of the row's ciphertexts, kept up to date (for finding old rows)."""


SEALED_COLUMNS = (
    SealedColumn("passengers", "document_enc", "passengers.document:", "booking_id"),
    SealedColumn("payments", "client_secret_enc", "payments.client_secret:", "id", "crypto_key_version"),
    SealedColumn("payments", "provider_customer_enc", "payments.customer:", "id", "crypto_key_version"),
    SealedColumn("payments", "payment_method_enc", "payments.payment_method:", "id", "crypto_key_version"),
)


def _batch_query(target: SealedColumn) -> sql.Composed:
    # The key version is the ciphertext's first byte (core_api.security.crypto).
    return sql.SQL(
        "SELECT ctid::text AS row_ref, {context}::text AS context, {column} AS sealed FROM {table}"
        " WHERE {column} IS NOT NULL AND get_byte({column}, 0) <> %(current)s::int"
        " LIMIT %(limit)s::int FOR UPDATE SKIP LOCKED"
    ).format(
        context=sql.Identifier(target.context_column),
        column=sql.Identifier(target.column),
        table=sql.Identifier(target.table),
    )


def _update_query(target: SealedColumn) -> sql.Composed:
    version: sql.Composable = sql.SQL("")
    if target.version_column:
        version = sql.SQL(", {} = %(current)s::smallint").format(sql.Identifier(target.version_column))
    return sql.SQL("UPDATE {table} SET {column} = %(sealed)s::bytea{version} WHERE ctid = %(row_ref)s::tid").format(
        table=sql.Identifier(target.table), column=sql.Identifier(target.column), version=version
    )


async def rotate_keys(conn: AsyncConnection[Any], cipher: Cipher, *, batch: int = 500) -> dict[str, int]:
    """Re-seal every value of :data:`SEALED_COLUMNS` not sealed with the current key; returns how many per column.

    ``conn`` is in autocommit mode: each batch commits on its own.
    """
    done: dict[str, int] = {}
    for target in SEALED_COLUMNS:
        count = 0
        while True:
            async with conn.transaction():
                cursor = await conn.execute(_batch_query(target), {"current": cipher.current, "limit": batch})
                rows = await cursor.fetchall()
                for row in rows:
                    row_ref, context_value, sealed = tuple(row.values()) if isinstance(row, dict) else row
                    context = f"{target.context}{context_value}"
                    resealed = cipher.seal(cipher.open(bytes(sealed), context=context), context=context)
                    params = {"sealed": resealed, "row_ref": row_ref, "current": cipher.current}
                    await conn.execute(_update_query(target), params)
            count += len(rows)
            if len(rows) < batch:
                break
        done[f"{target.table}.{target.column}"] = count
    return done
