"""``/health`` (liveness, public) and ``/health/services`` (each dependency with its latency, ops only)."""

from __future__ import annotations

from importlib.metadata import version

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from core_api.auth.guards import OPS, PUBLIC
from core_api.health.schemas import Health, ServicesHealth
from core_api.health.service import check_services
from core_api.web.deps import Pool, Redis

__all__ = ["route_handlers"]

_VERSION = version("flightdesk")


@get("/health", operation_id="getHealth", tags=["ops"], opt=PUBLIC)
async def health() -> Health:
    """Liveness: the API process is up and serving."""
    return Health(status="ok", version=_VERSION)


@get(
    "/health/services",
    operation_id="getServicesHealth",
    tags=["ops"],
    opt=OPS,
    responses={503: ResponseSpec(ServicesHealth, description="A service is down; the report says which.")},
)
async def services_health(pool: Pool, redis: Redis) -> Response[ServicesHealth]:
    """Round-trip each dependency (PostgreSQL, Redis, worker heartbeat) and report it up or down with its latency.

    Answers 200 when everything is up and 503 when something is down, so load balancers can use it. Only for
    loopback clients and callers sending `Authorization: Bearer <FLIGHTDESK_OPS_TOKEN>` (401 otherwise), since it
    describes the infrastructure; `/health` is the public liveness check.
    """
    report = await check_services(pool, redis)
    return Response(report, status_code=200 if report.status == "ok" else 503)


route_handlers = [health, services_health]
