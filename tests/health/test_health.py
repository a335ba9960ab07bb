"""Health endpoints report the API and each dependency truthfully, including a Redis that has gone away."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from core_api.app import create_app
from core_api.settings import Settings
from core_api.worker import HEARTBEAT_KEY
from tests.pipelines.conftest import publish_without_dagster
from tests.support.asgi import serve_in_loop
from tests.support.fault_proxy import FaultProxy
from tests.support.ports import free_port


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


# SMTP, providers and the warehouse: reported, never a 503 (the API serves without them). ---------------------------


async def beating(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.set(HEARTBEAT_KEY, datetime.now(UTC).isoformat())
    await redis.aclose()


async def test_smtp_down_and_no_warehouse_are_reported_without_failing_the_check(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    await beating(redis_url)
    settings = msgspec.structs.replace(
        settings,
        smtp=msgspec.structs.replace(settings.smtp, host="127.0.0.1", port=free_port()),
        warehouse=msgspec.structs.replace(settings.warehouse, path=tmp_path / "warehouse.duckdb"),
    )
    async with serve_in_loop(create_app(settings)) as client:
        response = await client.get("/api/v1/health/services")
    services = {service["name"]: service for service in response.json()["services"]}
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert services["smtp"]["status"] == "down"
    assert services["warehouse"] == {
        "name": "warehouse",
        "status": "down",
        "detail": "no warehouse snapshot published yet (flightdesk pipelines, or Dagster's schedule)",
    }
    assert services["payments"] == {
        "name": "payments",
        "status": "up",
        "latency_ms": services["payments"]["latency_ms"],
        "detail": "sandbox (in our database)",
    }
    assert services["amadeus"]["status"] == "disabled"


async def test_a_greeting_smtp_server_and_a_fresh_snapshot_read_up(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    await beating(redis_url)

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.test ESMTP\r\n")
        await writer.drain()
        quit_line.append(await reader.readline())
        writer.close()

    quit_line: list[bytes] = []
    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = msgspec.structs.replace(
        settings,
        smtp=msgspec.structs.replace(settings.smtp, host="127.0.0.1", port=port),
        warehouse=msgspec.structs.replace(settings.warehouse, path=tmp_path / "warehouse.duckdb"),
    )
    await asyncio.to_thread(publish_without_dagster, settings)
    async with server, serve_in_loop(create_app(settings)) as client:
        response = await client.get("/api/v1/health/services")
        services = {service["name"]: service for service in response.json()["services"]}
        assert services["smtp"]["status"] == "up"
        assert services["smtp"]["detail"] == f"127.0.0.1:{port}"
        assert services["warehouse"]["status"] == "up"
        assert services["warehouse"]["detail"].startswith("warehouse-")
        assert services["warehouse"]["detail"].endswith("s old")
        for _ in range(50):
            if quit_line:
                break
            await asyncio.sleep(0.02)
        assert quit_line == [b"QUIT\r\n"]


# Who may read the infrastructure: loopback clients and holders of the ops token; liveness is everyone's. ----------

OPS_TOKEN = "ops-token-for-the-tests-0123456789"
OPS_PATHS = ("/api/v1/health/services", "/metrics")


def with_ops_token(settings: Settings, token: str | None = OPS_TOKEN) -> Settings:
    return msgspec.structs.replace(settings, ops_token=token)


@pytest.mark.parametrize("client_ip", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_loopback_clients_read_the_ops_endpoints_without_a_token(settings: Settings, client_ip: str) -> None:
    async with serve_in_loop(create_app(settings), client_ip=client_ip) as client:
        services = await client.get("/api/v1/health/services")
        assert services.status_code in (200, 503)  # 503: no worker heartbeat here; the report is what matters
        assert {service["name"] for service in services.json()["services"]} == {
            "postgres",
            "redis",
            "worker",
            "audit_sealer",
            "smtp",
            "payments",
            "amadeus",
            "warehouse",
        }
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "flightdesk_request_duration_seconds" in metrics.text


@pytest.mark.parametrize("token", [None, OPS_TOKEN])
@pytest.mark.parametrize("client_ip", ["203.0.113.9", "10.0.0.7", "::ffff:203.0.113.9"])
async def test_other_clients_without_the_token_learn_nothing_about_the_infrastructure(
    settings: Settings, client_ip: str, token: str | None
) -> None:
    # Configured or not, a caller that does not present the token is refused; liveness stays public.
    async with serve_in_loop(create_app(with_ops_token(settings, token)), client_ip=client_ip) as client:
        for path in OPS_PATHS:
            for headers in ({}, {"Authorization": "Bearer not-the-ops-token-at-all"}):
                response = await client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["content-type"].startswith("application/problem+json")
                problem = response.json()
                assert problem["code"] == "UNAUTHORIZED"
                assert "postgres" not in response.text
                assert "flightdesk_" not in response.text
        assert (await client.get("/api/v1/health")).status_code == 200


async def test_the_ops_token_opens_the_ops_endpoints_from_anywhere_and_nothing_else(settings: Settings) -> None:
    async with serve_in_loop(create_app(with_ops_token(settings)), client_ip="203.0.113.9") as client:
        ops = {"Authorization": f"Bearer {OPS_TOKEN}"}
        services = await client.get("/api/v1/health/services", headers=ops)
        assert services.status_code in (200, 503)
        assert services.json()["services"][0]["name"] == "postgres"
        metrics = await client.get("/metrics", headers=ops)
        assert metrics.status_code == 200
        assert "flightdesk_request_duration_seconds" in metrics.text
        # It is not a user's token: the rest of the API refuses it.
        assert (await client.get("/api/v1/auth/me", headers=ops)).status_code == 401
        assert (await client.get("/api/v1/users", headers=ops)).status_code == 401
