"""``/health`` (liveness, public) and ``/health/services`` (each dependency with its latency, ops only)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from litestar import Request, Response, get
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
async def services_health(request: Request[Any, Any, Any], pool: Pool, redis: Redis) -> Response[ServicesHealth]:
    """Round-trip each dependency and report it up, down or disabled with its latency: PostgreSQL, Redis, the
    worker's heartbeat, the audit sealer's backlog, the SMTP server, the payment provider, the Amadeus search
    provider and the warehouse's freshness.

    Answers 503 when PostgreSQL, Redis, the worker or the sealer is down, else 200, so load balancers can use it;
    SMTP, providers and warehouse are reported but never make it 503 (the API serves without them). Only for
    loopback clients and callers sending `Authorization: Bearer <FLIGHTDESK_OPS_TOKEN>` (401 otherwise), since it
    describes the infrastructure; `/health` is the public liveness check.
    """
    report = await check_services(pool, redis, request.app.state.auth.settings)
    return Response(report, status_code=200 if report.status == "ok" else 503)


route_handlers = [health, services_health]
