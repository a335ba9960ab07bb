"""An in-process asyncio TCP proxy that injects network faults, for tests.

Put a :class:`FaultProxy` between the code under test and a real server (PostgreSQL, Redis, anything over TCP or
a unix socket) and break the network on demand, while connections are open::

    async with FaultProxy.for_postgres(postgres_url) as proxy:
        conn = await psycopg.AsyncConnection.connect(proxy.rewrite_postgres_url(postgres_url))
        proxy.cut()  # every open connection is reset; new ones are accepted
        proxy.delay(0.2)  # every chunk is held 0.2 s, in both directions
        proxy.blackhole()  # connections stay open, nothing is forwarded (hung server / partition)
        proxy.refuse()  # stop listening (connection refused) and drop open connections
        proxy.heal()  # back to normal forwarding, listening again on the same port

The proxy listens on ``127.0.0.1`` on an ephemeral port. The fault methods are plain (non-async) methods taking
effect immediately; they must be called from the event loop's thread. The accept loop uses ``loop.add_reader``,
so a selector event loop is needed (the default on Linux and macOS).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["FaultProxy", "Mode", "Upstream", "postgres_upstream", "redis_upstream"]

logger = logging.getLogger(__name__)

Upstream = tuple[str, int] | str
"""``(host, port)`` of a TCP server, or the path of a unix socket."""

Mode = Literal["normal", "blackhole", "refused"]

_CHUNK = 64 * 1024
_BACKLOG = 128
_ACCEPT_RETRY_SECONDS = 0.1


class _Link:
    """One proxied connection: the client side, the upstream side, and whether it has been torn down."""

    __slots__ = ("client", "closed", "on_close", "upstream")

    def __init__(self, on_close: Callable[[], None]) -> None:
        self.client: asyncio.StreamWriter | None = None
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = False
        self.on_close = on_close

    def attach(self, writer: asyncio.StreamWriter, *, upstream: bool) -> bool:
        """Record one side; if the link was already torn down, abort that side at once and return False."""
        if self.closed:
            writer.transport.abort()
            return False
        if upstream:
            self.upstream = writer
        else:
            self.client = writer
        return True

    def abort(self) -> None:
        """Tear down both sides abruptly (RST where the OS supports it); idempotent."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        self.on_close()

    def close(self) -> None:
        """Close both sides gracefully (pending data is flushed first); idempotent."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()
        self.on_close()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1:<ephemeral port>`` forwarding to ``upstream``, with switchable faults.

    ``upstream`` is ``(host, port)`` or the path of a unix socket. Use as ``async with FaultProxy(...) as proxy``
    (or ``await start()`` / ``await stop()``). Stopping aborts every connection, hung ones included, and waits for
    all the proxy's tasks to finish.
    """

    def __init__(
        self, upstream: Upstream | os.PathLike[str], *, host: str = "127.0.0.1", connect_timeout: float = 5.0
    ) -> None:
        if isinstance(upstream, tuple):
            upstream = (str(upstream[0]), int(upstream[1]))
        elif isinstance(upstream, os.PathLike):
            upstream = os.fspath(upstream)
        self.upstream: Upstream = upstream
        self._host = host
        self._port: int | None = None
        self._connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listen_sock: socket.socket | None = None
        self._accept_retry: asyncio.TimerHandle | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._state_changed = asyncio.Event()
        self._mode: Mode = "normal"
        self._delay = 0.0
        self._started = False
        self._stopped = False
        self.connections_total = 0
        """Connections accepted since start."""

    # -- construction helpers -------------------------------------------------------------------------------

    @classmethod
    def for_postgres(cls, conninfo: str, *, connect_timeout: float = 5.0) -> Self:
        """A proxy in front of the server a PostgreSQL conninfo/URI points at (TCP or unix socket)."""
        return cls(postgres_upstream(conninfo), connect_timeout=connect_timeout)

    @classmethod
    def for_redis(cls, url: str, *, connect_timeout: float = 5.0) -> Self:
        """A proxy in front of the server a Redis URL (``redis://``, ``rediss://`` or ``unix://``) points at."""
        return cls(redis_upstream(url), connect_timeout=connect_timeout)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening on an ephemeral port of ``host``."""
        if self._started:
            raise RuntimeError("FaultProxy already started")
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._listen(0)

    async def stop(self) -> None:
        """Stop listening, abort every connection and wait for every task of the proxy; idempotent."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop_listening()
        self._abort_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- addresses and counters -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def active_connections(self) -> int:
        """Connections currently open through the proxy (cut/refused ones drop out immediately)."""
        return sum(not link.closed for link in self._links)

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def current_delay(self) -> float:
        return self._delay

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "-"
        return (
            f"<FaultProxy {self._host}:{port} -> {self.upstream!r} mode={self._mode} delay={self._delay}"
            f" active={self.active_connections} total={self.connections_total}>"
        )

    # -- faults -----------------------------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it, in both directions; 0 turns it off.

        The delay applies per chunk, serially, so a round trip costs at least twice ``seconds``.
        """
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = float(seconds)

    def cut(self) -> int:
        """Abort every open connection (RST-like); new connections are still accepted. Returns how many were cut."""
        return self._abort_all()

    def blackhole(self) -> None:
        """Keep connections (open and new) open but forward nothing: data, and EOF, are swallowed.

        An EOF received while blackholed is passed on after :meth:`heal`; data received meanwhile is lost.
        """
        self._ensure_running()
        self._ensure_listening()
        self._mode = "blackhole"
        self._notify()

    def refuse(self) -> None:
        """Stop listening, so new connections are refused, and abort every open connection."""
        self._ensure_running()
        self._mode = "refused"
        self._stop_listening()
        self._abort_all()

    def heal(self) -> None:
        """Back to normal: forward again, no delay, listening again (on the same port) if refused."""
        self._ensure_running()
        self._ensure_listening()
        self._mode = "normal"
        self._delay = 0.0
        self._notify()

    # -- URL helpers ------------------------------------------------------------------------------------------

    def rewrite_postgres_url(self, url: str) -> str:
        """``url`` (conninfo or URI) pointed at the proxy: ``host=127.0.0.1 port=<proxy port>``, other keys kept.

        A unix-socket ``host=/socket/dir`` (and any ``hostaddr``) is replaced. Returns a key=value conninfo.
        """
        params = conninfo_to_dict(url)
        params.pop("hostaddr", None)
        params["host"] = self.host
        params["port"] = str(self.port)
        return make_conninfo(**params)

    def rewrite_redis_url(self, url: str) -> str:
        """``url`` pointed at the proxy: ``redis://[auth@]127.0.0.1:<proxy port>/<db>``.

        ``redis://`` and ``rediss://`` keep their scheme, credentials, path and query; ``unix://`` becomes
        ``redis://`` with its ``db`` query parameter moved to the path.
        """
        parts = urlsplit(url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@{self.host}:{self.port}" if userinfo else f"{self.host}:{self.port}"
        if parts.scheme in ("redis", "rediss"):
            return urlunsplit(parts._replace(netloc=netloc))
        if parts.scheme == "unix":
            query = parse_qsl(parts.query, keep_blank_values=True)
            db = next((value for key, value in query if key == "db"), "")
            rest = [(key, value) for key, value in query if key != "db"]
            return urlunsplit(("redis", netloc, f"/{db}" if db else "", urlencode(rest), ""))
        raise ValueError(f"unsupported Redis URL scheme: {parts.scheme!r}")

    # -- internals: listening ---------------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if not self._started:
            raise RuntimeError("FaultProxy not started")
        if self._stopped:
            raise RuntimeError("FaultProxy stopped")

    def _ensure_listening(self) -> None:
        if self._listen_sock is None:
            self._listen(self.port)

    def _listen(self, port: int) -> None:
        assert self._loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._on_acceptable)
        except BaseException:
            sock.close()
            raise
        self._listen_sock = sock
        self._port = sock.getsockname()[1]

    def _stop_listening(self) -> None:
        if self._accept_retry is not None:
            self._accept_retry.cancel()
            self._accept_retry = None
        sock, self._listen_sock = self._listen_sock, None
        if sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _on_acceptable(self) -> None:
        sock = self._listen_sock
        if sock is None:
            return
        for _ in range(_BACKLOG):
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionError:
                continue  # the client went away before we accepted it
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                logger.warning("FaultProxy accept failed: %s", exc)
                self._pause_accepting(sock)
                return
            client.setblocking(False)
            self.connections_total += 1
            self._spawn(client)

    def _pause_accepting(self, sock: socket.socket) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock.fileno())

        def resume() -> None:
            self._accept_retry = None
            if self._listen_sock is sock and self._loop is not None:
                self._loop.add_reader(sock.fileno(), self._on_acceptable)

        self._accept_retry = self._loop.call_later(_ACCEPT_RETRY_SECONDS, resume)

    # -- internals: connections -------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everything waiting for a change of mode or for a link being torn down."""
        event, self._state_changed = self._state_changed, asyncio.Event()
        event.set()

    def _abort_all(self) -> int:
        links = [link for link in self._links if not link.closed]
        for link in links:
            link.abort()
        self._notify()
        return len(links)

    def _spawn(self, client: socket.socket) -> None:
        assert self._loop is not None
        link = _Link(self._notify)
        self._links.add(link)
        task = self._loop.create_task(self._run_link(link, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.upstream, str):
            return await asyncio.open_unix_connection(self.upstream, limit=_CHUNK)
        host, port = self.upstream
        return await asyncio.open_connection(host, port, limit=_CHUNK)

    async def _run_link(self, link: _Link, client: socket.socket) -> None:
        try:
            try:
                client_reader, client_writer = await asyncio.open_connection(sock=client, limit=_CHUNK)
            except OSError:
                return
            if not link.attach(client_writer, upstream=False):
                return
            try:
                async with asyncio.timeout(self._connect_timeout):
                    upstream_reader, upstream_writer = await self._open_upstream()
            except (OSError, TimeoutError) as exc:
                logger.debug("FaultProxy could not reach upstream %r: %s", self.upstream, exc)
                link.abort()
                return
            if not link.attach(upstream_writer, upstream=True):
                return
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(client_reader, upstream_writer, link))
                group.create_task(self._pump(upstream_reader, client_writer, link))
            link.close()
        except Exception:
            logger.exception("FaultProxy connection failed")
        finally:
            link.abort()
            if link.client is None:
                client.close()
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        """Forward one direction until EOF, applying the current faults chunk by chunk."""
        try:
            while data := await reader.read(_CHUNK):
                if self._mode == "blackhole":
                    continue
                if self._delay > 0:
                    await asyncio.sleep(self._delay)
                    if self._mode == "blackhole":
                        continue
                if link.closed:
                    return
                writer.write(data)
                await writer.drain()
            while self._mode == "blackhole" and not link.closed:
                await self._state_changed.wait()
            if not link.closed and writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            # Reset by a peer, or writing to a side that is being torn down: tear down both sides.
            link.abort()


def postgres_upstream(conninfo: str) -> Upstream:
    """Where a PostgreSQL conninfo/URI connects: ``(host, port)``, or the unix socket path for ``host=/dir``.

    Only the first host of a multi-host conninfo is used; ``PGHOST``/``PGPORT`` fill in missing values.
    """
    params = conninfo_to_dict(conninfo)
    host = str(params.get("hostaddr") or params.get("host") or os.environ.get("PGHOST") or "").split(",")[0]
    port = int(str(params.get("port") or os.environ.get("PGPORT") or "5432").split(",")[0] or 5432)
    if not host:
        raise ValueError("the conninfo names no host")
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return (host, port)


def redis_upstream(url: str) -> Upstream:
    """Where a Redis URL connects: ``(host, port)`` for ``redis://``/``rediss://``, the path for ``unix://``."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        return (parts.hostname or "localhost", parts.port or 6379)
    if parts.scheme == "unix":
        return parts.path
    raise ValueError(f"unsupported Redis URL scheme: {parts.scheme!r}")
