"""Search throughput (SPEC §11): cached search vs the bare ``/health`` of the same server, and uncached search p95.

Run against a PostgreSQL and Redis of your own; a scratch database is created, seeded (``--scale small``, the
default: 60 days of flights; ``--scale large``: a year) and dropped, and the search's keys
(``flightdesk:search:*``) are removed from the Redis database given:

    uv run python loadtests/bench_search.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/8

It starts the API with granian in a subprocess (``flightdesk api``), then drives it from this process with a
closed loop of concurrent connections, all on 127.0.0.1, for a bounded time per run:

1. ``GET /api/v1/health`` — the bare endpoint: routing, middleware (no rate limiting, it is exempt), JSON;
2. one search over and over — every request a cache hit (one Redis MGET of the entry and its route and day's
   generation, plus the seats re-check in PostgreSQL);
3. searches that all differ (route, date, passengers, sort) — every request a miss: the local provider's query,
   the Redis lock and the conditional cache write.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.seed.schedule import ROUTES
from loadtests.loadgen import (
    LoadResult,
    api_environment,
    create_scratch_database,
    drop_database,
    free_port,
    run_closed_loop,
    wait_until_up,
)

SEARCH = "/api/v1/flights/search"
SEED_DAYS = 60


def uncached_paths(first_day: int, seed: int = 7) -> Iterator[str]:
    """Search paths that never repeat: every route both ways, each seeded day, 1-9 adults, three sorts."""
    legs = [(origin, destination) for origin, destination, _ in ROUTES]
    legs += [(destination, origin) for origin, destination in legs]
    today = datetime.now(UTC).date()
    days = [today + timedelta(days=offset) for offset in range(first_day, SEED_DAYS)]
    combos = list(itertools.product(legs, days, range(1, 10), ("price", "duration", "departure")))
    random.Random(seed).shuffle(combos)
    for (origin, destination), day, adults, sort in combos:
        params = {"origin": origin, "destination": destination, "date": day.isoformat(), "adults": adults, "sort": sort}
        yield f"{SEARCH}?{urlencode(params)}"


def clear_search_keys(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter("flightdesk:search:*", count=1000):
            client.delete(key)
    finally:
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scale", choices=["small", "large"], default="small", help="demo seed size")
    args = parser.parse_args()

    name, database_url = create_scratch_database(args.database_url, "fd_bench_search")
    port = free_port()
    env = api_environment(database_url, args.redis_url)
    api: subprocess.Popen[bytes] | None = None
    try:
        print(f"seeding the {args.scale} demo seed into {name} ...", flush=True)
        seed = [sys.executable, "-m", "core_api.cli", "seed", "--scale", args.scale]
        subprocess.run(seed, env=env, check=True, capture_output=True)
        clear_search_keys(args.redis_url)
        api = subprocess.Popen(
            [sys.executable, "-m", "core_api.cli", "api", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        await wait_until_up(f"{base}/api/v1/health")

        day = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
        hot = f"{SEARCH}?{urlencode({'origin': 'JFK', 'destination': 'LHR', 'date': day, 'adults': 2})}"
        async with httpx.AsyncClient(base_url=base) as client:
            # Fill the cache, and warm each worker (airport codes, pool connections).
            for _ in range(4 * args.workers):
                response = await client.get(hot)
                response.raise_for_status()
            body = response.json()
            assert body["meta"]["cached"] is True, body["meta"]
            offers = len(body["offers"])

        misses = uncached_paths(first_day=2)
        runs: dict[str, tuple[str, object]] = {
            "GET /health (bare)": ("GET", "/api/v1/health"),
            f"search, cached ({offers} offers)": ("GET", hot),
            "search, uncached (every one new)": ("GET", lambda: next(misses)),
        }
        results: dict[str, LoadResult] = {}
        for label, (method, path) in runs.items():
            results[label] = await run_closed_loop(
                base, method, path, concurrency=args.concurrency, seconds=args.seconds
            )
        print(
            f"\nAPI with --workers {args.workers} on {os.cpu_count()} CPUs (load generator on the same machine), "
            f"{args.concurrency} concurrent connections, {args.seconds:g} s each, {args.scale} seed"
        )
        for label, result in results.items():
            print(f"  {label:36} {result}")
        bare, cached, uncached = results.values()
        print(
            f"\ncached search vs bare endpoint: {cached.rps / bare.rps:.2f}x throughput, "
            f"p95 {cached.percentile(95):.1f} ms vs {bare.percentile(95):.1f} ms"
        )
        print(f"uncached search p95: {uncached.percentile(95):.1f} ms ({uncached.requests} distinct searches)")
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        clear_search_keys(args.redis_url)
        drop_database(args.database_url, name)


if __name__ == "__main__":
    asyncio.run(main())
