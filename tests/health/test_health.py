"""Health endpoints report the API and each dependency truthfully, including a Redis that has gone away."""

import time
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis

from core_api.app import create_app
from core_api.settings import Settings
from core_api.worker import HEARTBEAT_KEY
from tests.support.asgi import serve_in_loop
from tests.support.fault_proxy import FaultProxy


async def test_liveness(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_services_up_with_latency_and_worker_heartbeat(client: httpx.AsyncClient, redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.set(HEARTBEAT_KEY, datetime.now(UTC).isoformat())
    await redis.aclose()
    response = await client.get("/api/v1/health/services")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    services = {service["name"]: service for service in body["services"]}
    assert services["postgres"]["status"] == "up"
    assert services["redis"]["status"] == "up"
    assert services["worker"]["status"] == "up"
    assert services["postgres"]["latency_ms"] >= 0


async def test_missing_worker_heartbeat_is_reported(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health/services")
    assert response.status_code == 503
    worker = next(s for s in response.json()["services"] if s["name"] == "worker")
    assert worker["status"] == "down"


async def test_stopped_redis_reads_down_quickly_while_postgres_stays_up(settings: Settings, redis_url: str) -> None:
    host_port, _, db = redis_url.removeprefix("redis://").partition("/")
    host, _, port = host_port.partition(":")
    async with FaultProxy((host, int(port))) as proxy:
        app = create_app(settings, redis_url=f"redis://{proxy.host}:{proxy.port}/{db}")
        async with serve_in_loop(app) as client:
            assert (await client.get("/api/v1/health/services")).json()["services"][1]["status"] == "up"
            proxy.refuse()
            started = time.perf_counter()
            response = await client.get("/api/v1/health/services")
            elapsed = time.perf_counter() - started
            services = {service["name"]: service for service in response.json()["services"]}
            assert response.status_code == 503
            assert services["redis"]["status"] == "down"
            assert services["postgres"]["status"] == "up"
            assert elapsed < 3

            proxy.blackhole()
            started = time.perf_counter()
            response = await client.get("/api/v1/health/services")
            assert {s["name"]: s["status"] for s in response.json()["services"]}["redis"] == "down"
            assert time.perf_counter() - started < 3

            proxy.heal()
            response = await client.get("/api/v1/health/services")
            assert {s["name"]: s["status"] for s in response.json()["services"]}["redis"] == "up"
