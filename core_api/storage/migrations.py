"""Schema migrations: ``sql/migrations/NNNN_name.sql`` applied in order, each in its own transaction.

Applied versions are recorded in ``schema_migrations`` with the file's checksum. A session-level advisory lock
makes concurrent runs (two processes starting at once) wait for each other, so running twice is a no-op. A file
that changed after it was applied is refused rather than silently skipped.

A run that applied anything ends with ``ANALYZE`` of every table holding rows (:func:`analyze_loaded`): a migration
may rewrite or move data, and autovacuum may be off or late, so nothing should plan on statistics from before it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core_api.storage.db import SQL_DIR

__all__ = ["Migration", "MigrationError", "analyze_loaded", "discover", "migrate"]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = SQL_DIR / "migrations"
# Arbitrary constant shared by every Flightdesk process: "fd-migr" as an integer.
_ADVISORY_LOCK_KEY = 0x66642D6D696772
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migrations on disk and in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match["version"]), match["name"], path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations; returns the ones applied by this call."""
    migrations = discover(directory)
    applied_now: list[Migration] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        try:
            await conn.execute(_CREATE_TABLE)
            cursor = await conn.execute("SELECT version, checksum FROM schema_migrations")
            applied: dict[int, str] = dict(await cursor.fetchall())
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.path.name} changed after it was applied; add a new migration instead"
                        )
                    continue
                logger.info("applying migration %s", migration.path.name)
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)
            if applied_now:
                await analyze_loaded(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
    return applied_now


# Tables of the current schema with at least one page: an empty one is left alone, so that the planner keeps its
# "never analysed" guess for it rather than learning that it is empty just before it is loaded.
_LOADED_TABLES = """
SELECT c.relname
FROM pg_class AS c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'm') AND pg_relation_size(c.oid) > 0
ORDER BY c.relname
"""


async def analyze_loaded(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """``ANALYZE`` every table of the schema that holds rows, on an autocommit connection; returns their names.

    ``migrate`` and ``seed`` run it after they write: plans must not depend on autovacuum having caught up.
    """
    cursor = await conn.execute(_LOADED_TABLES)
    tables = [str(row[0]) for row in await cursor.fetchall()]
    if tables:
        await conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
    return tables
