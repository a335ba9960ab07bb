"""Where the warehouse lives on disk, and how a refresh becomes visible to readers atomically.

DuckDB lets one process open a file read-write or many open it read-only, never both at once. The pipelines
therefore never write a file a reader may have open:

- ``<dir>/staging.duckdb`` is the pipelines' working copy (replicated tables, marts, bookkeeping). Only the
  pipeline run opens it, and it keeps the replication state from run to run.
- Publishing checkpoints the staging file and copies it to ``<dir>/warehouse-<n>.duckdb`` (written under a
  temporary name and renamed when complete), then points the configured path (``FLIGHTDESK_WAREHOUSE_PATH``, a
  symbolic link) at it with an atomic ``rename``.
- Readers resolve the link once and open that complete snapshot read-only. A reader that opened snapshot ``n``
  keeps reading it while ``n + 1`` is published; the few newest snapshots are kept so that it never disappears
  under a reader that just resolved the link.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import duckdb

__all__ = ["KEEP_SNAPSHOTS", "WarehouseFiles"]

# Snapshots kept besides the newest: a reader that resolved the link just before a publish still finds its file.
KEEP_SNAPSHOTS = 3
_SNAPSHOT = re.compile(r"^warehouse-(\d+)\.duckdb$")


class WarehouseFiles:
    """The files of one warehouse, named after the configured path (``…/warehouse.duckdb``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.directory = self.path.parent / f"{self.path.name}.d"

    @property
    def staging(self) -> Path:
        return self.directory / "staging.duckdb"

    def snapshots(self) -> list[tuple[int, Path]]:
        """Published snapshot files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _SNAPSHOT.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
        return sorted(found)

    def current(self) -> Path | None:
        """The snapshot readers should open now, or None before the first publish."""
        try:
            target = self.path.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            return None
        return target

    def open_staging(self) -> duckdb.DuckDBPyConnection:
        """The pipelines' read-write connection to the working copy."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(str(self.staging))
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def open_current(self) -> duckdb.DuckDBPyConnection | None:
        """A read-only connection to the newest complete snapshot, or None when nothing was published yet."""
        target = self.current()
        if target is None:
            return None
        conn = duckdb.connect(str(target), read_only=True)
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def publish(self) -> Path:
        """Copy the (closed, checkpointed) staging file into the next snapshot and switch readers to it."""
        existing = self.snapshots()
        number = existing[-1][0] + 1 if existing else 1
        target = self.directory / f"warehouse-{number}.duckdb"
        partial = target.with_name(f"{target.name}.partial")
        shutil.copyfile(self.staging, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        partial.rename(target)
        link = self.path.with_name(f".{self.path.name}.{os.getpid()}.link")
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        # Relative, so the state directory can move as a whole.
        link.symlink_to(os.path.relpath(target, self.path.parent))
        os.replace(link, self.path)
        for _, old in existing[: max(0, len(existing) + 1 - KEEP_SNAPSHOTS)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return target
