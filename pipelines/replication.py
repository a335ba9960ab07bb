"""Incremental replication of PostgreSQL tables into the warehouse's staging DuckDB file.

One run reads every table it replicates inside one ``REPEATABLE READ`` transaction, so all tables — and the
reconciliation figures the asset checks compare with (:data:`RECONCILE_SQL`) — come from the same snapshot.

Each table moves in bulk: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` streamed by psycopg to a temporary file that
DuckDB loads with explicit column types (no extension: DuckDB's CSV reader is built in). Incremental by a
high-water mark: a column every insert and update moves (``updated_at``; ``created_at`` / ``occurred_at`` for
append-only tables). The next run reads the rows after ``mark``: the newest value read, but never later than the
start of the oldest transaction still open before the snapshot (its rows carry that transaction's ``now()`` or
later and become visible only after it commits) minus a small look-back. Read rows replace
their key in the warehouse (merge), so a re-run is idempotent. After the merge the row count is compared with
PostgreSQL's at the same snapshot; a difference (rows deleted by retention, rows written with old timestamps by a
bulk load) reloads that table in full.

Personal data is not copied: no password hashes, contact details, passenger names, birth dates, documents, IP
addresses or audit before/after values; names and emails of users only while the user is not deleted.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from psycopg import sql

__all__ = [
    "LOOK_BACK",
    "RECONCILE_SQL",
    "TABLES",
    "Column",
    "ReplicationResult",
    "TableResult",
    "TableSpec",
    "replicate",
]

logger = logging.getLogger(__name__)

# Margin below the high-water mark read again on the next run (clock_timestamp() vs now() within a server).
LOOK_BACK = timedelta(seconds=30)


@dataclass(frozen=True)
class Column:
    name: str
    duck_type: str
    # PostgreSQL expression (default: the column itself).
    expression: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """How one table is replicated."""

    name: str
    columns: tuple[Column, ...]
    key: str
    # Column of the high-water mark; None: small reference table, reloaded in full every run.
    cursor: str | None = None
    # FROM clause and alias when the rows are selected through a join (passengers follow their booking).
    source: str | None = None
    # Column replaced as a set: every row of a changed parent is read again (deleted children disappear).
    replace_by: str | None = None
    # Expression of the high-water column in the SELECT (when it is not the table's own column).
    cursor_expression: str | None = None

    def select(self, since: datetime | None) -> sql.Composed:
        alias = "t"
        columns = sql.SQL(", ").join(
            sql.SQL(f"{column.expression} AS {{}}" if column.expression else f"{alias}.{{}}").format(
                sql.Identifier(column.name)
            )
            for column in self.columns
        )
        cursor_column = self.cursor_expression or (f"{alias}.{self.cursor}" if self.cursor else None)
        cursor_select = sql.SQL(f", {cursor_column} AS _cursor") if cursor_column else sql.SQL("")
        source = sql.SQL(self.source or f"{self.name} AS {alias}")
        query = sql.SQL("SELECT {columns}{cursor} FROM {source}").format(
            columns=columns, cursor=cursor_select, source=source
        )
        if since is not None and cursor_column:
            query = sql.SQL("{query} WHERE {cursor} > {since}").format(
                query=query, cursor=sql.SQL(cursor_column), since=sql.Literal(since)
            )
        return query


def _c(name: str, duck_type: str = "VARCHAR", expression: str | None = None) -> Column:
    return Column(name, duck_type, expression)


_TS = "TIMESTAMPTZ"
# fare_seats_available() spelt out (a SQL function with a subquery is a call per row; this, an expression).
_FARE_SEATS = (
    "t.seats_available + CASE WHEN t.stripes = 1 THEN 0 ELSE "
    "(SELECT coalesce(sum(s.seats_available), 0)::integer FROM fare_stripes AS s WHERE s.fare_id = t.id) END"
)
# When a fare bucket last changed: its row, or for a striped one the latest of its stripes too.
_FARE_CHANGED = (
    "CASE WHEN t.stripes = 1 THEN t.updated_at ELSE greatest(t.updated_at, "
    "(SELECT max(s.updated_at) FROM fare_stripes AS s WHERE s.fare_id = t.id)) END"
)

TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "airlines",
        (_c("code"), _c("name"), _c("country")),
        key="code",
    ),
    TableSpec(
        "airports",
        (_c("code"), _c("name"), _c("city"), _c("country"), _c("tz")),
        key="code",
    ),
    TableSpec(
        "users",
        (
            _c("id", "UUID"),
            # Personal data of deleted users stays behind (they were anonymised, but not copying is simpler).
            _c("email", "VARCHAR", "CASE WHEN t.deleted_at IS NULL THEN t.email END"),
            _c("full_name", "VARCHAR", "CASE WHEN t.deleted_at IS NULL THEN t.full_name END"),
            _c("role"),
            _c("airline_code"),
            _c("is_active", "BOOLEAN"),
            _c("created_at", _TS),
            _c("updated_at", _TS),
            _c("last_login_at", _TS),
            _c("deleted_at", _TS),
        ),
        key="id",
        cursor="updated_at",
    ),
    TableSpec(
        "flights",
        (
            _c("id", "BIGINT"),
            _c("airline_code"),
            _c("flight_number"),
            _c("origin"),
            _c("destination"),
            _c("departure_at", _TS),
            _c("arrival_at", _TS),
            _c("aircraft"),
            _c("status"),
            _c("created_at", _TS),
            _c("updated_at", _TS),
        ),
        key="id",
        cursor="updated_at",
    ),
    TableSpec(
        "flight_prices",
        (
            _c("id", "BIGINT"),
            _c("flight_id", "BIGINT"),
            _c("cabin"),
            _c("fare_class"),
            _c("price_amount", "BIGINT"),
            _c("currency"),
            _c("seats_total", "INTEGER"),
            # A striped bucket's count is its rows' sum, and its stripes move without the bucket's row (0015).
            _c("seats_available", "INTEGER", _FARE_SEATS),
            _c("refundable", "BOOLEAN"),
            _c("updated_at", _TS, _FARE_CHANGED),
        ),
        key="id",
        cursor="updated_at",
        cursor_expression=_FARE_CHANGED,
    ),
    TableSpec(
        "bookings",
        (
            _c("id", "UUID"),
            _c("pnr"),
            _c("flight_id", "BIGINT"),
            _c("fare_id", "BIGINT"),
            _c("cabin"),
            _c("fare_class"),
            _c("customer_id", "UUID"),
            _c("agent_id", "UUID"),
            _c("created_by", "UUID"),
            _c("status"),
            _c("seat_count", "INTEGER"),
            _c("total_amount", "BIGINT"),
            _c("currency"),
            _c("hold_expires_at", _TS),
            _c("confirmed_at", _TS),
            _c("cancelled_at", _TS),
            _c("expired_at", _TS),
            _c("created_at", _TS),
            _c("updated_at", _TS),
        ),
        key="id",
        cursor="updated_at",
    ),
    TableSpec(
        "passengers",
        (
            _c("id", "UUID"),
            _c("booking_id", "UUID"),
            _c("flight_id", "BIGINT"),
            _c("type"),
            _c("seat_no"),
            _c("created_at", _TS),
        ),
        key="id",
        cursor="updated_at",
        # A booking's updated_at moves whenever its passengers change; its passengers are replaced as a set.
        source="passengers AS t JOIN bookings AS b ON b.id = t.booking_id",
        cursor_expression="b.updated_at",
        replace_by="booking_id",
    ),
    TableSpec(
        "payments",
        (
            _c("id", "UUID"),
            _c("booking_id", "UUID"),
            _c("provider"),
            _c("status"),
            _c("amount", "BIGINT"),
            _c("currency"),
            _c("amount_refunded", "BIGINT"),
            _c("failure_code"),
            _c("created_by", "UUID"),
            _c("created_at", _TS),
            _c("updated_at", _TS),
            _c("succeeded_at", _TS),
        ),
        key="id",
        cursor="updated_at",
    ),
    TableSpec(
        "refunds",
        (
            _c("id", "UUID"),
            _c("payment_id", "UUID"),
            _c("booking_id", "UUID"),
            _c("amount", "BIGINT"),
            _c("currency"),
            _c("status"),
            _c("created_by", "UUID"),
            _c("created_at", _TS),
            _c("updated_at", _TS),
        ),
        key="id",
        cursor="updated_at",
    ),
    TableSpec(
        "audit_logs",
        (
            _c("id", "BIGINT"),
            _c("occurred_at", _TS),
            _c("event_type"),
            _c("actor_id", "UUID"),
            _c("actor_role"),
            _c("entity_type"),
            _c("entity_id"),
        ),
        key="id",
        cursor="occurred_at",
    ),
    TableSpec(
        "notifications",
        (
            _c("id", "UUID"),
            _c("user_id", "UUID"),
            _c("booking_id", "UUID"),
            _c("template"),
            _c("channel"),
            _c("status"),
            _c("priority", "SMALLINT"),
            _c("attempts", "SMALLINT"),
            _c("created_at", _TS),
            _c("updated_at", _TS),
            _c("sent_at", _TS),
        ),
        key="id",
        cursor="updated_at",
    ),
    TableSpec(
        "search_events",
        (
            _c("id", "BIGINT"),
            _c("searched_at", _TS),
            _c("origin"),
            _c("destination"),
            _c("departure_date", "DATE"),
            _c("adults", "SMALLINT"),
            _c("children", "SMALLINT"),
            _c("infants", "SMALLINT"),
            _c("cabin"),
            _c("result_count", "INTEGER"),
            _c("cached", "BOOLEAN"),
            _c("user_id", "UUID"),
            _c("created_at", _TS),
        ),
        key="id",
        cursor="created_at",
    ),
)

TABLES_BY_NAME = {table.name: table for table in TABLES}

# Figures of the source at the replication snapshot, kept beside the data for the asset checks.
RECONCILE_SQL: dict[str, str] = {
    **{f"rows.{table.name}": f"SELECT count(*) FROM {table.name}" for table in TABLES},  # noqa: S608 - constants
    "revenue.gross": (
        "SELECT coalesce(sum(amount), 0) FROM payments "
        "WHERE status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED') AND succeeded_at IS NOT NULL"
    ),
    "revenue.refunded": "SELECT coalesce(sum(amount), 0) FROM refunds WHERE status = 'SUCCEEDED'",
    "bookings.amount": "SELECT coalesce(sum(total_amount), 0) FROM bookings",
    "bookings.seats": "SELECT coalesce(sum(seat_count), 0) FROM bookings",
}

_STATE_DDL = """
CREATE TABLE IF NOT EXISTS _replication (
    table_name  VARCHAR PRIMARY KEY,
    high_water  TIMESTAMPTZ,
    rows_total  BIGINT NOT NULL,
    rows_read   BIGINT NOT NULL,
    full_load   BOOLEAN NOT NULL,
    loaded_at   TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS _reconcile (name VARCHAR PRIMARY KEY, value HUGEINT NOT NULL);
CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""


@dataclass
class TableResult:
    name: str
    rows_read: int
    rows_total: int
    full_load: bool
    seconds: float
    high_water: datetime | None


@dataclass
class ReplicationResult:
    snapshot_at: datetime
    tables: list[TableResult] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(table.rows_read for table in self.tables)


def _safe_mark(conn: psycopg.Connection[Any]) -> datetime:
    """Start of the oldest transaction open now in this database (or now): rows invisible to the snapshot taken
    after this call carry a ``now()`` at or after it.
    """
    row = conn.execute(
        "SELECT least(now(), min(xact_start)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
    ).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _copy_to_file(conn: psycopg.Connection[Any], query: sql.Composable, path: Path) -> None:
    copy_sql = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
    with conn.cursor() as cursor, cursor.copy(copy_sql) as copy, open(path, "wb") as out:
        for chunk in copy:
            out.write(chunk)


def _read_csv(spec: TableSpec, path: Path, *, with_cursor: bool) -> str:
    types = {column.name: column.duck_type for column in spec.columns}
    if with_cursor:
        types["_cursor"] = _TS
    columns = ", ".join(f"'{name}': '{duck_type}'" for name, duck_type in types.items())
    escaped = str(path).replace("'", "''")
    # Empty unquoted fields are NULL; PostgreSQL quotes empty strings, which stay empty strings.
    return (
        f"read_csv('{escaped}', columns = {{{columns}}}, header = false, auto_detect = false, "
        "allow_quoted_nulls = false, quote = '\"', escape = '\"')"
    )


def _load_table(
    pg: psycopg.Connection[Any],
    duck: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    since: datetime | None,
    workdir: Path,
) -> tuple[int, datetime | None]:
    """Read the rows changed since ``since`` (all when None) and merge them; return (rows read, newest mark)."""
    path = workdir / f"{spec.name}.full.csv"
    _copy_to_file(pg, spec.select(since), path)
    return _merge(duck, spec, since, path)


def _merge(
    duck: duckdb.DuckDBPyConnection, spec: TableSpec, since: datetime | None, path: Path
) -> tuple[int, datetime | None]:
    """Load one extracted file (and delete it); return (rows read, newest mark)."""
    has_cursor = spec.cursor is not None
    names = ", ".join(f'"{column.name}"' for column in spec.columns)
    try:
        duck.execute(
            f"CREATE OR REPLACE TEMP TABLE _batch AS SELECT * FROM {_read_csv(spec, path, with_cursor=has_cursor)}"  # noqa: S608 - names from TABLES
        )
    finally:
        path.unlink(missing_ok=True)
    count_row = duck.execute("SELECT count(*) FROM _batch").fetchone()
    assert count_row is not None
    rows = int(count_row[0])
    newest: datetime | None = None
    if has_cursor:
        mark = duck.execute("SELECT max(_cursor) FROM _batch").fetchone()
        newest = mark[0] if mark else None
    if since is None:
        duck.execute(f'CREATE OR REPLACE TABLE "{spec.name}" AS SELECT {names} FROM _batch')  # noqa: S608 - names from TABLES
    else:
        key = spec.replace_by or spec.key
        duck.execute(f'DELETE FROM "{spec.name}" WHERE "{key}" IN (SELECT "{key}" FROM _batch)')  # noqa: S608 - names from TABLES
        duck.execute(f'INSERT INTO "{spec.name}" SELECT {names} FROM _batch')  # noqa: S608 - names from TABLES
    duck.execute("DROP TABLE _batch")
    return rows, newest


def _since(
    duck: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    state: dict[str, tuple[datetime | None, int]],
    full: bool,
) -> datetime | None:
    """Where this table's incremental read starts; None for a full load."""
    previous = state.get(spec.name)
    if full or previous is None or not spec.cursor or not _table_exists(duck, spec.name):
        return None
    return previous[0]


class _Extractor:
    """Runs the COPYs of a plan, one after the other on the snapshot's connection, in a thread of its own: while
    DuckDB loads one table, PostgreSQL already streams the next (at most two files wait on disk).
    """

    def __init__(self, pg: psycopg.Connection[Any], plan: list[tuple[TableSpec, datetime | None]], workdir: Path):
        self._files: queue.Queue[Path | BaseException] = queue.Queue(maxsize=2)
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pg, plan, workdir), name="replication-copy")
        self._thread.start()

    def _run(self, pg: psycopg.Connection[Any], plan: list[tuple[TableSpec, datetime | None]], workdir: Path) -> None:
        try:
            for spec, since in plan:
                if self._cancelled.is_set():
                    return
                path = workdir / f"{spec.name}.csv"
                _copy_to_file(pg, spec.select(since), path)
                self._put(path)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: Path | BaseException) -> None:
        while not self._cancelled.is_set():
            try:
                self._files.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_file(self) -> Path:
        item = self._files.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        self._cancelled.set()

    def join(self) -> None:
        self._thread.join()


def _table_exists(duck: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = duck.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def _count(duck: duckdb.DuckDBPyConnection, name: str) -> int:
    row = duck.execute(f'SELECT count(*) FROM "{name}"').fetchone()  # noqa: S608 - a table of TABLES
    return int(row[0]) if row else 0


def replicate(
    conninfo: str,
    duck: duckdb.DuckDBPyConnection,
    tables: Sequence[str] | None = None,
    *,
    full: bool = False,
    on_table: Callable[[TableResult], None] | None = None,
) -> ReplicationResult:
    """Bring the named tables (default: all) of the staging warehouse up to date with one PostgreSQL snapshot."""
    specs = [TABLES_BY_NAME[name] for name in tables] if tables is not None else list(TABLES)
    duck.execute(_STATE_DDL)
    state = {
        name: (high_water, rows_total)
        for name, high_water, rows_total in duck.execute(
            "SELECT table_name, high_water, rows_total FROM _replication"
        ).fetchall()
    }
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute("SET TimeZone = 'UTC'")
        pg.execute("SET statement_timeout = 0")
        safe_mark = _safe_mark(pg)
        with pg.transaction():
            pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot_row = pg.execute("SELECT now()").fetchone()
            assert snapshot_row is not None
            result = ReplicationResult(snapshot_at=snapshot_row[0])
            figures = {name: int(pg.execute(query).fetchone()[0]) for name, query in RECONCILE_SQL.items()}  # type: ignore[index]
            with tempfile.TemporaryDirectory(prefix="replication-", dir=os.environ.get("TMPDIR")) as workdir:
                plan = [(spec, _since(duck, spec, state, full)) for spec in specs]
                duck.execute("BEGIN TRANSACTION")
                extractor = _Extractor(pg, plan, Path(workdir))
                try:
                    reload: list[TableSpec] = []

                    def record(
                        spec: TableSpec, rows: int, newest: datetime | None, since: datetime | None, started: float
                    ) -> None:
                        full_load = since is None
                        high_water = _next_mark(since, newest, safe_mark, full_load)
                        total = _count(duck, spec.name)
                        duck.execute(
                            "INSERT OR REPLACE INTO _replication VALUES (?, ?, ?, ?, ?, ?)",
                            [spec.name, high_water, total, rows, full_load, result.snapshot_at],
                        )
                        table_result = TableResult(
                            spec.name, rows, total, full_load, time.perf_counter() - started, high_water
                        )
                        result.tables.append(table_result)
                        if on_table is not None:
                            on_table(table_result)

                    for spec, since in plan:
                        started = time.perf_counter()
                        rows, newest = _merge(duck, spec, since, extractor.next_file())
                        if since is not None and _count(duck, spec.name) != figures[f"rows.{spec.name}"]:
                            reload.append(spec)
                            continue
                        record(spec, rows, newest, since, started)
                    # The connection is the extractor's until it is done.
                    extractor.join()
                    for spec in reload:
                        logger.info("replication: %s differs from the source after merge; full reload", spec.name)
                        started = time.perf_counter()
                        rows, newest = _load_table(pg, duck, spec, None, Path(workdir))
                        record(spec, rows, newest, None, started)
                    for name, value in figures.items():
                        duck.execute("INSERT OR REPLACE INTO _reconcile VALUES (?, ?)", [name, value])
                    duck.execute(
                        "INSERT OR REPLACE INTO _meta VALUES ('snapshot_at', ?)", [result.snapshot_at.isoformat()]
                    )
                    duck.execute("COMMIT")
                except BaseException:
                    extractor.cancel()
                    duck.execute("ROLLBACK")
                    raise
                finally:
                    extractor.join()
    return result


def _next_mark(
    since: datetime | None, newest: datetime | None, safe_mark: datetime, full_load: bool
) -> datetime | None:
    """Where the next run starts reading (rows strictly after it): the newest row read, but no later than the
    look-back before the oldest transaction open at the snapshot; never before where this run started.

    Every row this snapshot could not see yet carries a mark at or after ``safe_mark``; rows at ``newest`` or
    before that were visible have all been read.
    """
    ceiling = safe_mark - LOOK_BACK
    if newest is None:
        return ceiling if full_load else since
    mark = min(newest, ceiling)
    if since is not None and mark < since:
        return since
    return mark
