"""PostgreSQL in a state directory's ``pg/``, started or attached through ``pgserver``: :class:`_Postgres`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psutil

from core_api.storage.embedded import EmbeddedServiceError
from core_api.storage.embedded._holders import _log_tail, _process_alive, _wait_dead

if TYPE_CHECKING:
    from core_api.storage.embedded import ProgressCallback

# The package's logger, not this module's: log lines keep saying "core_api.storage.embedded".
logger = logging.getLogger(__package__)

_PG_STOP_TIMEOUT_S = 60


def _import_pgserver() -> Any:
    # pgserver computes its lock/socket fallback directory at import time; without XDG_RUNTIME_DIR platformdirs
    # warns and falls back to /tmp/runtime-<uid>, which is fine for us.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

    return pgserver


def _postgres_url(socket_dir: Path | str, port: int, database: str = "postgres", user: str = "postgres") -> str:
    """A libpq URI for a server listening on a unix socket in ``socket_dir``."""
    return f"postgresql://{quote(user)}@/{quote(database)}?host={quote(str(socket_dir), safe='/')}&port={port}"


class _Postgres:
    """PostgreSQL in ``pgdata``, run through pgserver, whose own process list and atexit hook are neutralised:
    the cross-process count here decides when it stops, and the context manager's exit is the only release."""

    name = "PostgreSQL"

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.log = pgdata / "log"  # where pgserver has pg_ctl write the server log
        # pgserver refuses to run postgres as root: it runs it as the system user "pgserver" (creating it).
        self.system_user = "pgserver" if os.geteuid() == 0 else None

    def ensure_running(self, progress: ProgressCallback) -> tuple[str, int]:
        pgserver = _import_pgserver()
        import psycopg

        self.pgdata.mkdir(exist_ok=True)
        self._discard_stale_pid_file()
        if self._running_pid() is not None:
            progress("attaching to the running PostgreSQL …")
        elif not (self.pgdata / "PG_VERSION").exists():
            progress(f"initialising PostgreSQL in {self.pgdata} …")
        else:
            progress("starting PostgreSQL …")
        try:
            server = pgserver.PostgresServer(self.pgdata, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as exc:
            raise EmbeddedServiceError(
                f"PostgreSQL in {self.pgdata} failed to start: {exc!r}\n"
                f"--- last lines of {self.log} ---\n{_log_tail(self.log)}"
            ) from exc
        self._disown(pgserver, server)
        info = server.get_postmaster_info()
        url = _postgres_url(info.socket_dir, info.port)
        try:
            with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise EmbeddedServiceError(
                f"PostgreSQL (pid {info.pid}) in {self.pgdata} does not accept connections at {url}: {exc}\n"
                f"--- last lines of {self.log} ---\n{_log_tail(self.log)}"
            ) from exc
        progress(f"PostgreSQL ready (pid {info.pid})")
        return url, int(info.pid)

    def stop(self, progress: ProgressCallback) -> None:
        _import_pgserver()
        from pgserver._commands import POSTGRES_BIN_PATH

        pid = self._running_pid()
        if pid is None:
            logger.warning("PostgreSQL in %s was already stopped", self.pgdata)
            return
        progress("stopping PostgreSQL …")
        pg_ctl = Path(POSTGRES_BIN_PATH) / "pg_ctl"
        command = [str(pg_ctl), "-D", str(self.pgdata), "-w", "-t", str(_PG_STOP_TIMEOUT_S), "-m", "fast", "stop"]
        try:
            result = subprocess.run(  # noqa: S603 - fixed binary and arguments
                command,
                cwd=self.pgdata,
                user=self.system_user,
                capture_output=True,
                text=True,
                timeout=_PG_STOP_TIMEOUT_S + 10,
                check=False,
            )
            output = (result.stdout + result.stderr).strip()
            failed = result.returncode != 0
        except subprocess.TimeoutExpired as exc:
            output, failed = repr(exc), True
        if failed and _process_alive(pid):
            logger.error("pg_ctl stop failed (%s); sending the postmaster (pid %d) SIGQUIT", output, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            if not _wait_dead(pid, 10.0):
                raise EmbeddedServiceError(
                    f"could not stop PostgreSQL (pid {pid}) in {self.pgdata}: {output}\n"
                    f"--- last lines of {self.log} ---\n{_log_tail(self.log)}"
                )
        elif failed:
            logger.warning("pg_ctl stop reported %r but the postmaster (pid %d) is gone", output, pid)
        progress("PostgreSQL stopped")

    def _running_pid(self) -> int | None:
        pid = self._pid_file_pid()
        return pid if pid is not None and self._is_postgres(pid) else None

    def _pid_file_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0]
        except FileNotFoundError:
            return None
        try:
            return int(first)
        except ValueError:
            return -1

    def _is_postgres(self, pid: int) -> bool:
        """True if ``pid`` is a live postmaster of this data directory (not an unrelated process reusing the pid)."""
        if pid <= 0 or not _process_alive(pid):
            return False
        try:
            proc = psutil.Process(pid)
            return proc.name() in ("postgres", "postmaster") and str(self.pgdata) in proc.cmdline()
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True

    def _discard_stale_pid_file(self) -> None:
        """Remove a ``postmaster.pid`` left by a postmaster that died (kill -9, reboot): pgserver would trust it."""
        pid = self._pid_file_pid()
        if pid is not None and not self._is_postgres(pid):
            logger.warning("removing stale %s (postmaster pid %s is gone)", self.pgdata / "postmaster.pid", pid)
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    @staticmethod
    def _disown(pgserver: Any, server: Any) -> None:
        """Undo pgserver's own bookkeeping: its per-pid list, its instance cache and its atexit hook."""
        import atexit

        atexit.unregister(server._cleanup)
        pgserver.PostgresServer._instances.pop(server.pgdata, None)
        with pgserver.PostgresServer._lock:
            server.global_process_id_list.get_and_remove(os.getpid())
