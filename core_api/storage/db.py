"""PostgreSQL access: the connection pool, one-transaction helper, named SQL queries and typed rows.

Queries live in ``sql/queries/<domain>.sql``, each under a ``-- name --`` header followed by a one-line
``-- description`` comment, and are loaded by name. Rows decode straight into msgspec Structs through
:func:`struct_row`. There is no ORM.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import DictRow, RowMaker, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from core_api.settings import Settings

__all__ = [
    "SQL_DIR",
    "DbPool",
    "Queries",
    "create_pool",
    "load_queries",
    "struct_row",
    "transaction",
]

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

T = TypeVar("T", bound=msgspec.Struct)

# Pooled connections return rows as dicts unless a query asks for a Struct.
DbPool = AsyncConnectionPool[AsyncConnection[DictRow]]

_HEADER = re.compile(r"^-- (?P<name>[a-z_][a-z0-9_]*) --\s*$")


class Queries(dict[str, str]):
    """The named queries of one ``sql/queries/<domain>.sql`` file."""

    def __missing__(self, name: str) -> str:
        raise KeyError(f"no query named {name!r}; known: {', '.join(sorted(self))}")


@functools.cache
def load_queries(domain: str) -> Queries:
    """Parse ``sql/queries/<domain>.sql`` into name → SQL text."""
    path = SQL_DIR / "queries" / f"{domain}.sql"
    queries = Queries()
    name: str | None = None
    lines: list[str] = []
    for line in [*path.read_text(encoding="utf-8").splitlines(), "-- __end__ --"]:
        header = _HEADER.match(line)
        if header:
            if name is not None:
                text = "\n".join(lines).strip()
                if not text:
                    raise ValueError(f"{path}: query {name!r} is empty")
                if name in queries:
                    raise ValueError(f"{path}: query {name!r} is defined twice")
                queries[name] = text
            name, lines = header["name"], []
        elif name is not None and not (not lines and line.startswith("--")):
            lines.append(line)
    queries.pop("__end__", None)
    return queries


def struct_row(cls: type[T]) -> Callable[[AsyncCursor[Any]], RowMaker[T]]:
    """A psycopg row factory decoding each row into the msgspec Struct ``cls`` by column name."""

    def factory(cursor: AsyncCursor[Any]) -> RowMaker[T]:
        names = [column.name for column in cursor.description or ()]

        def make(values: Sequence[Any]) -> T:
            return msgspec.convert(dict(zip(names, values, strict=True)), cls, from_attributes=False)

        return make

    return factory


async def _configure(conn: AsyncConnection[Any]) -> None:
    # Every row of ours is read as UTC; clients get aware datetimes and convert to the airport's zone themselves.
    await conn.execute("SET TIME ZONE 'UTC'")
    # json and jsonb columns decode with msgspec (several times faster than the json module psycopg uses).
    set_json_loads(msgspec.json.decode, conn)


def create_pool(settings: Settings, conninfo: str, *, name: str = "flightdesk") -> DbPool:
    """An unopened pool; open it (``await pool.open(wait=True)``) in the lifespan so a bad DSN fails at start."""
    options = (
        f"-c statement_timeout={settings.database.statement_timeout_ms} -c idle_in_transaction_session_timeout=60000"
    )
    return AsyncConnectionPool(
        conninfo,
        connection_class=AsyncConnection[DictRow],
        min_size=settings.database.pool_min,
        max_size=settings.database.pool_max,
        kwargs={"autocommit": True, "row_factory": dict_row, "options": options, "application_name": name},
        configure=_configure,
        open=False,
        name=name,
        timeout=10.0,
    )


@asynccontextmanager
async def transaction(pool: DbPool) -> AsyncIterator[AsyncConnection[DictRow]]:
    """Run the block in one transaction on a pooled connection: commit on success, roll back on any error."""
    async with pool.connection() as conn, conn.transaction():
        yield conn
