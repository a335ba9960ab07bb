"""Login and token-verification cost (issue 3): argon2id hashes/s, login p95, authenticated no-op p95.

Run against a PostgreSQL and Redis of your own (a scratch database is created and dropped):

    uv run python loadtests/bench_auth.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/7

It starts the API with granian in a subprocess (as `flightdesk api` does), then drives it from this process with a
closed loop of concurrent connections, all on 127.0.0.1, for a bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.auth.passwords import _hasher
from loadtests.loadgen import (
    api_environment,
    create_scratch_database,
    drop_database,
    free_port,
    run_closed_loop,
    wait_until_up,
)


def hashes_per_second(threads: int, seconds: float = 3.0) -> float:
    deadline = time.perf_counter() + seconds

    def work() -> int:
        count = 0
        while time.perf_counter() < deadline:
            _hasher.hash("benchmark password")
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: work(), range(threads)))
    return total / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    print(f"argon2id (m=19 MiB, t=2, p=1): {hashes_per_second(1):.1f} hashes/s on 1 thread, "
          f"{hashes_per_second(os.cpu_count() or 1):.1f} on {os.cpu_count()} threads")  # fmt: skip

    name, database_url = create_scratch_database(args.database_url, "fd_bench_auth")
    port = free_port()
    env = api_environment(database_url, args.redis_url)
    subprocess.run([sys.executable, "-m", "core_api.cli", "migrate"], env=env, check=True, capture_output=True)
    api = subprocess.Popen(
        [sys.executable, "-m", "core_api.cli", "api", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(f"{base}/api/v1/health")
        # One account per connection: the login lockout admits at most 5 attempts at one email from one address at
        # a time (SPEC §10), so 16 connections logging in as one user would mostly measure 429s.
        credentials = [
            {"email": f"bench{index}@example.com", "password": "benchmark password"}
            for index in range(args.concurrency)
        ]
        async with httpx.AsyncClient(base_url=base) as client:
            for account in credentials:
                registered = await client.post("/api/v1/auth/register", json={**account, "full_name": "Bench"})
                registered.raise_for_status()
            token = registered.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        runs = {
            "GET /health (bare)": ("GET", "/api/v1/health", None, {}),
            "GET /auth/me (token checked)": ("GET", "/api/v1/auth/me", None, auth),
            "POST /auth/login (argon2id)": ("POST", "/api/v1/auth/login", credentials, {}),
        }
        results = {}
        for label, (method, path, bodies, headers) in runs.items():
            results[label] = await run_closed_loop(
                base, method, path, bodies=bodies, headers=headers, concurrency=args.concurrency, seconds=args.seconds
            )
        print(f"\nAPI with --workers {args.workers}, {args.concurrency} concurrent connections, {args.seconds:g}s each")
        for label, result in results.items():
            print(f"  {label:32} {result}")
        bare = results["GET /health (bare)"]
        me = results["GET /auth/me (token checked)"]
        print(f"\nauthenticated no-op vs bare endpoint: {me.rps / bare.rps:.2f}x throughput, "
              f"p95 {statistics.quantiles(me.latencies, n=100)[94] * 1000:.1f} ms")  # fmt: skip
    finally:
        api.terminate()
        api.wait(timeout=30)
        drop_database(args.database_url, name)


if __name__ == "__main__":
    asyncio.run(main())
