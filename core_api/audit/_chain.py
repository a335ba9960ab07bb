"""Checking the sealed chain, and retention that keeps it checkable.

Verification recomputes, for every sealed row after the latest checkpoint, its chain hash from the stored hash
before it (``audit_row_hash``), so each link is checked on its own and the first broken one is named: a changed row
hashes differently, a deleted row is missing from where its seal puts it, reordered rows hash differently at the
first moved position, a removed or forged seal breaks the numbering, the positions or the link between seals. The
work is done by the server in chunks of positions, each a statement well within the statement timeout.

Retention deletes a prefix of the chain: the rows from the last checkpoint up to the first row not older than the
cutoff (chain order is nearly time order; an old row behind a younger one waits for a later cleanup), with their
personal data and the seals wholly inside, and records a checkpoint holding the chain hash at the cut. The
verification starts from it; the cleanup's own audit row, sealed like any other, carries the same position and
hash, so a checkpoint cannot be moved without the chain showing it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core_api.audit.schemas import ChainStatus, CleanupResult, EventType
from core_api.audit.sealer import read_backlog
from core_api.audit.service import Actor, record
from core_api.storage.db import load_queries, transaction

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from core_api.storage.db import DbPool

__all__ = ["cleanup", "verify_chain"]

QUERIES = load_queries("audit")
CHUNK_POSITIONS = 50_000


async def _one(conn: AsyncConnection[Any], name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    cursor = await conn.execute(QUERIES[name], params)
    return await cursor.fetchone()


async def _checkpoint(conn: AsyncConnection[Any]) -> tuple[int, bytes | None]:
    row = await _one(conn, "latest_checkpoint")
    return (int(row["position"]), row["hash"]) if row else (0, None)


class _Break:
    def __init__(self) -> None:
        self.position: int | None = None
        self.audit_id: int | None = None
        self.reason: str | None = None

    def offer(self, position: int, audit_id: int | None, reason: str) -> None:
        if self.position is None or position < self.position:
            self.position, self.audit_id, self.reason = position, audit_id, reason


async def verify_chain(conn: AsyncConnection[Any]) -> ChainStatus:
    """Walk the sealed chain from the latest checkpoint; report the first break and the unsealed backlog."""
    checkpoint, checkpoint_hash = await _checkpoint(conn)
    end_row = await _one(conn, "chain_end")
    backlog = await read_backlog(conn)
    end = int(end_row["position"]) if end_row else checkpoint
    broken = _Break()
    link = await _one(conn, "verify_links")
    if link is not None:
        position = int(link["previous_end"]) if link["reason"] != "link to the previous seal broken" else None
        broken.offer(position or int(link["first_position"]), link["first_id"], str(link["reason"]))
    first = await _one(conn, "first_seal")
    if first is not None:
        if int(first["first_position"]) > checkpoint + 1:
            broken.offer(checkpoint + 1, None, "rows missing before the first seal")
        else:
            if checkpoint >= int(first["first_position"]):
                stored = await _one(conn, "hash_at", {"position": checkpoint})
                start_hash = stored["hash"] if stored else None
            else:
                start_hash = first["prev_hash"]
            if start_hash != checkpoint_hash:
                broken.offer(checkpoint + 1, None, "chain does not start from the checkpoint")
    checked = 0
    for start in range(checkpoint + 1, end + 1, CHUNK_POSITIONS):
        if broken.position is not None and start > broken.position:
            break
        stop = min(start + CHUNK_POSITIONS, end + 1)
        result = await _one(conn, "verify_rows", {"from": start, "to": stop})
        assert result is not None
        checked += int(result["checked"])
        if result["broken_position"] is not None:
            reason = "row missing" if result["broken_missing"] else "hash mismatch"
            broken.offer(int(result["broken_position"]), result["broken_id"], reason)
    return ChainStatus(
        valid=broken.position is None,
        checked=checked,
        first_broken_position=broken.position,
        first_broken_id=broken.audit_id,
        reason=broken.reason,
        sealed_through=end,
        checkpoint_position=checkpoint,
        unsealed=backlog.unsealed,
        oldest_unsealed_at=backlog.oldest_at,
    )


async def cleanup(pool: DbPool, actor: Actor, older_than_days: int, *, now: datetime | None = None) -> CleanupResult:
    """Delete the sealed rows older than ``older_than_days`` that start the chain, keeping it verifiable."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    async with transaction(pool) as tx:
        # No seal is appended meanwhile, so the positions below hold still.
        await tx.execute(QUERIES["seal_lock_wait"])
        checkpoint, _ = await _checkpoint(tx)
        end_row = await _one(tx, "chain_end")
        end = int(end_row["position"]) if end_row else checkpoint
        through = end
        for start in range(checkpoint + 1, end + 1, CHUNK_POSITIONS):
            young = await _one(tx, "first_young", {"from": start, "to": start + CHUNK_POSITIONS, "cutoff": cutoff})
            if young and young["position"] is not None:
                through = int(young["position"]) - 1
                break
        deleted = 0
        if through > checkpoint:
            stored = await _one(tx, "hash_at", {"position": through})
            assert stored is not None
            for start in range(checkpoint, through, CHUNK_POSITIONS):
                chunk_end = min(start + CHUNK_POSITIONS, through)
                row = await _one(tx, "delete_chain_prefix", {"after": start, "through": chunk_end})
                deleted += int(row["deleted"]) if row else 0
            await tx.execute(
                QUERIES["insert_checkpoint"],
                {"position": through, "hash": stored["hash"], "removed": deleted, "cutoff": cutoff},
            )
            checkpoint_hash = bytes(stored["hash"]).hex()
        else:
            through, checkpoint_hash = checkpoint, None
        kept = await _one(tx, "older_kept", {"cutoff": cutoff})
        kept_older = int(kept["kept"]) if kept else 0
        await record(
            tx,
            EventType.SYSTEM_AUDIT_CLEANUP,
            actor,
            metadata={
                "older_than_days": older_than_days,
                "cutoff": cutoff.isoformat(),
                "deleted": deleted,
                "checkpoint_position": through,
                "checkpoint_hash": checkpoint_hash,
                "kept_older": kept_older,
            },
        )
    return CleanupResult(deleted=deleted, cutoff=cutoff, checkpoint_position=through, kept_older=kept_older)
