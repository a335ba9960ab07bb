"""The cross-process hold on an embedded server (lock file, holder list, :func:`_hold`) and its process/file helpers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from core_api.storage.embedded import EmbeddedServiceError

if TYPE_CHECKING:
    from core_api.storage.embedded import ProgressCallback

# The package's logger, not this module's: log lines keep saying "core_api.storage.embedded".
logger = logging.getLogger(__package__)

# How long a process waits for another one holding a server's lock (it may be running initdb).
_LOCK_TIMEOUT_S = 180.0
_LOG_TAIL_LINES = 40


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


# Redis servers this process started. A server can outlive this process's hold on it (another process is the last
# holder and stops it); keeping the Popen referenced lets us reap it instead of leaving a zombie or a warning.
_redis_children: list[subprocess.Popen[bytes]] = []


def _reap_children() -> None:
    _redis_children[:] = [p for p in _redis_children if p.poll() is None]


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        _reap_children()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES, *, offset: int = 0) -> str:
    """The last ``lines`` lines of a log file, from byte ``offset`` on."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


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
