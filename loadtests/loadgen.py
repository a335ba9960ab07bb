"""A small closed-loop HTTP load generator for the benchmarks: N connections, each sending back to back; and the
set-up every benchmark shares (a scratch database, the API's environment).

Kept dependency-free beyond httpx so benchmarks run without locust (which patches the process with gevent).
:func:`run_wrk` drives the same closed loop with ``wrk`` (Debian package ``wrk``) where it is installed: a load
generator in C costs a tenth of this one's CPU per request, which on a small machine is CPU the server under test
gets back. Traffic goes to 127.0.0.1 only, for a bounded time.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
import re
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = [
    "LoadResult",
    "api_environment",
    "create_scratch_database",
    "drop_database",
    "free_port",
    "run_closed_loop",
    "run_wrk",
    "wait_until_up",
    "wrk_available",
]


def create_scratch_database(server_url: str, prefix: str, *, template: str | None = None) -> tuple[str, str]:
    """A new database on the server of ``server_url``, empty or a copy of ``template``: its name and conninfo."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(create)
    return name, make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def api_environment(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of an API started by a benchmark: this process's, without its ``FLIGHTDESK_*`` settings,
    pointed at the benchmark's servers, with rate limits out of the way and quiet logs; ``settings`` add more
    (``booking_max_unpaid_seats="10000"`` sets ``FLIGHTDESK_BOOKING_MAX_UNPAID_SEATS``).
    """
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("FLIGHTDESK_")},
        "FLIGHTDESK_DATABASE_URL": database_url,
        "FLIGHTDESK_REDIS_URL": redis_url,
        "FLIGHTDESK_RATE_LIMITS": "1000000/second",
        "FLIGHTDESK_LOG_LEVEL": "WARNING",
        "FLIGHTDESK_AUTH_JWT_KEYS": "bench:" + "k" * 48,
        **{f"FLIGHTDESK_{key.upper()}": value for key, value in settings.items()},
    }


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    failures: dict[str, int] = field(default_factory=dict)
    """What the errors were: ``"HTTP 409"``, or the transport exception's name, with their counts."""
    percentiles_ms: dict[int, float] | None = None
    """Latency percentiles as the load generator reported them (wrk), when ``latencies`` is not kept."""
    driver: str = "httpx"

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: int) -> float:
        if self.percentiles_ms is not None:
            return self.percentiles_ms.get(p, 0.0)
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000 if len(self.latencies) > 1 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.rps:8.1f} req/s  p50 {self.percentile(50):6.1f} ms  p95 {self.percentile(95):6.1f} ms  "
            f"p99 {self.percentile(99):6.1f} ms  errors {self.errors}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not come up")


async def run_closed_loop(
    base: str,
    method: str,
    path: str | Any,
    *,
    json: Any = None,
    headers: dict[str, str] | Sequence[dict[str, str]] | None = None,
    concurrency: int = 16,
    seconds: float = 10.0,
    expect: int | None = None,
    bodies: Sequence[Any] | None = None,
) -> LoadResult:
    """``path`` may be a callable returning a fresh path per request (to defeat caches), and ``json`` one returning a
    fresh body per request (a booking on a flight drawn at random). ``headers`` may be a list, one entry per connection
    (connection ``i`` sends ``headers[i % len(headers)]``: one account each, say), and so may ``bodies`` (sent instead
    of ``json``). A response is an error when its status is 400 or above, or, with ``expect``, anything but
    ``expect``.
    """
    latencies: list[float] = []
    errors = 0
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker(index: int) -> None:
            nonlocal errors
            sent = headers[index % len(headers)] if isinstance(headers, Sequence) else headers
            fixed = bodies[index % len(bodies)] if bodies else None
            while time.perf_counter() < deadline:
                target = path() if callable(path) else path
                started = time.perf_counter()
                try:
                    body = fixed if bodies else (json() if callable(json) else json)
                    response = await client.request(method, target, json=body, headers=sent)
                    ok = response.status_code == expect if expect is not None else response.status_code < 400
                    failure = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok, failure = False, type(exc).__name__
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors += 1
                    failures[failure] = failures.get(failure, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(index) for index in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(requests=len(latencies), errors=errors, seconds=elapsed, latencies=latencies, failures=failures)


_WRK_SCRIPT = Path(__file__).with_name("wrk_driver.lua")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


async def run_wrk(
    base: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: Sequence[dict[str, str]] = (),
    concurrency: int = 16,
    seconds: float = 10.0,
    expect: int = 200,
    threads: int = 2,
) -> LoadResult:
    """The closed loop of :func:`run_closed_loop` driven by ``wrk``: ``concurrency`` connections over ``threads``
    threads, each sending the same ``json`` body with ``headers[i]`` (spread round robin, so each connection keeps to
    about one account). A response is an error unless its status is ``expect``.
    """
    body = jsonlib.dumps(json) if json is not None else ""
    blocks = []
    for sent in headers or [{}]:
        lines = [method, path, body]
        if json is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{name}: {value}" for name, value in sent.items()]
        blocks.append("\n".join(lines) + "\n%%\n")
    threads = max(1, min(threads, concurrency))
    with tempfile.NamedTemporaryFile("w", suffix=".requests", delete=False) as requests_file:
        requests_file.write("".join(blocks))
    try:
        command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s"]
        command += ["--timeout", "30s", "-s", str(_WRK_SCRIPT), base, "--"]
        command += [requests_file.name, str(expect), str(threads)]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
    finally:
        os.unlink(requests_file.name)
    text = out.decode()
    summary = re.search(
        r"RESULT requests=(\d+) duration_us=(\d+) bad=(\d+) connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)",
        text,
    )
    if process.returncode != 0 or summary is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err.decode()[-2000:]} {text[-2000:]}")
    requests, duration_us, bad, *transport = (int(value) for value in summary.groups())
    failures = {f"HTTP {status}": int(count) for status, count in re.findall(r"STATUS (\d+) (\d+)", text)}
    for name, count in zip(("connect", "read", "write", "timeout"), transport, strict=True):
        if count:
            failures[f"socket {name} error"] = count
    percentiles = {int(p): int(us) / 1000 for p, us in re.findall(r"PCT (\d+) (\d+)", text)}
    return LoadResult(
        requests=requests,
        errors=bad + sum(transport),
        seconds=duration_us / 1e6,
        latencies=[],
        failures=failures,
        percentiles_ms=percentiles,
        driver="wrk",
    )
