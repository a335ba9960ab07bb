"""The Litestar application: wiring of settings, the database pool, Redis, routes, docs, metrics and errors.

``create_app(settings)`` builds an app for given settings (tests use it directly); ``build_app`` is the factory
granian calls in each worker, built from the process settings.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_404_NOT_FOUND

from core_api.analytics.routes import route_handlers as analytics_routes
from core_api.analytics.search_log import SearchLog
from core_api.audit.rate_limits import RateLimitAudit
from core_api.audit.routes import route_handlers as audit_routes
from core_api.audit.sealer import refresh_backlog_gauges
from core_api.auth.guards import OPS, AuthenticationMiddleware, authorize
from core_api.auth.lockout import LoginThrottle
from core_api.auth.routes import route_handlers as auth_routes
from core_api.auth.service import AuthContext
from core_api.auth.tokens import load_keyring
from core_api.bookings.routes import route_handlers as booking_routes
from core_api.bookings.service import BookingService
from core_api.flights.routes import route_handlers as flight_routes
from core_api.flights.search_routes import route_handlers as search_routes
from core_api.health.routes import route_handlers as health_routes
from core_api.log import configure_logging
from core_api.notifications.routes import route_handlers as notification_routes
from core_api.payments.routes import route_handlers as payment_routes
from core_api.payments.service import PaymentService
from core_api.realtime import Hub, HubOptions
from core_api.realtime import route_handlers as realtime_routes
from core_api.security.crypto import load_cipher
from core_api.settings import Settings, get_settings
from core_api.storage.db import create_pool
from core_api.storage.redis_client import create_redis
from core_api.users.routes import route_handlers as user_routes
from core_api.web.bodies import StrictJSON, require_json_body
from core_api.web.deps import provide_pool, provide_redis
from core_api.web.errors import exception_handlers, problem_response
from core_api.web.middleware import RequestContextMiddleware
from core_api.web.openapi import OperationDocs, StructSchemas
from core_api.web.options import OptionsAnswers
from core_api.web.parameters import check_parameters
from core_api.web.ratelimit import RateLimitMiddleware, parse_rate_limits

__all__ = ["build_app", "create_app"]

API_PREFIX = "/api/v1"
SWAGGER_ASSETS = "/api/docs-assets"


class MetricsController(PrometheusController):
    """Prometheus text, for loopback scrapers and ones sending the ops token (it tells about the infrastructure)."""

    path = "/metrics"
    include_in_schema = False
    guards = (authorize,)
    opt = OPS

    @get()
    async def get(self, request: Request[Any, Any, Any]) -> Response:
        # Gauges read from the database are brought up to date by the scrape itself (none is polled in between).
        await refresh_backlog_gauges(request.app.state.pool)
        return await PrometheusController.get.fn(self)


async def _docs_not_found_as_problem(response: Response) -> Response:
    # Litestar's docs router answers unknown paths under /api with an HTML page; every 404 of ours is a problem.
    if response.status_code == HTTP_404_NOT_FOUND and response.media_type == MediaType.HTML:
        return problem_response(HTTP_404_NOT_FOUND, "NOT_FOUND", "Not found", "Not Found")
    return response


def _swagger() -> SwaggerRenderPlugin:
    # Served from the swagger-ui-bundle package so the docs work with no internet.
    return SwaggerRenderPlugin(
        path="/docs",
        js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f'<link rel="icon" type="image/png" href="{SWAGGER_ASSETS}/favicon-32x32.png" sizes="32x32" />',
    )


async def _check_request(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The API routes' guard: who may call first; then parameters and body, the only input a handler sees (every
    refusal is 4xx). One guard calling three, as Litestar copies the route handler for each guard it runs.
    """
    await authorize(connection, handler)
    await check_parameters(connection, handler)
    await require_json_body(connection, handler)


def create_app(
    settings: Settings,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    realtime: HubOptions | None = None,
) -> Litestar:
    """Build the app. URLs default to the settings' (the CLI fills them in for embedded servers)."""
    database_url = database_url or settings.database.url
    redis_url = redis_url or settings.redis.url
    if not database_url or not redis_url:
        raise RuntimeError("create_app needs database and Redis URLs; `flightdesk api` starts embedded servers")

    keyring = load_keyring(settings)
    cipher = load_cipher(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = create_pool(settings, database_url)
        # Waiting makes a wrong DSN or a missing server fail the start, not the first request.
        await pool.open(wait=True)
        redis = create_redis(settings, redis_url)
        throttle = LoginThrottle.from_settings(redis, pool, settings.auth)
        app.state.pool, app.state.redis = pool, redis
        app.state.auth = AuthContext(settings, keyring, pool, throttle, cipher)
        app.state.bookings = BookingService(pool, redis, settings, cipher)
        app.state.payments = PaymentService(pool, settings, cipher)
        app.state.bookings.settle_refund = app.state.payments.settle_refund
        app.state.audit_retention_days = settings.audit.retention_days
        # Refusals of the rate limiter are audited in aggregate (see core_api.audit.rate_limits).
        app.state.rate_limit_audit = refusals = RateLimitAudit(pool, settings.audit.rate_limit_flush_seconds)
        await refusals.start()
        app.state.search_log = search_log = SearchLog(pool)
        await search_log.start()
        # One Redis subscription per process feeds its WebSockets; it never fails the start when Redis is down.
        app.state.hub = hub = Hub(redis, realtime)
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await search_log.stop()
            await refusals.stop()
            await redis.aclose()
            await pool.close()

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            *health_routes,
            *auth_routes,
            *user_routes,
            *flight_routes,
            *search_routes,
            *booking_routes,
            *payment_routes,
            *audit_routes,
            *notification_routes,
            *analytics_routes,
            *realtime_routes,
        ],
        guards=[_check_request],
        # Authentication first, so that rate limits count per user rather than per IP where they can.
        middleware=[AuthenticationMiddleware(), RateLimitMiddleware(parse_rate_limits(settings.rate_limits))],
    )
    swagger_assets = create_static_files_router(
        path=SWAGGER_ASSETS, directories=[Path(swagger_ui_bundle.swagger_ui_path)], include_in_schema=False
    )
    prometheus = PrometheusConfig(app_name="flightdesk", prefix="flightdesk", group_path=True, exclude=["/metrics"])
    app = Litestar(
        route_handlers=[api, swagger_assets, MetricsController],
        lifespan=[lifespan],
        dependencies={
            "pool": Provide(provide_pool, sync_to_thread=False),
            "redis": Provide(provide_redis, sync_to_thread=False),
        },
        exception_handlers=exception_handlers(),
        # Every body is decoded once, strictly, by StrictJSON; responses are encoded as Litestar does.
        dto=StrictJSON,
        return_dto=None,
        plugins=[StructSchemas(), OperationDocs(), OptionsAnswers()],
        after_request=_docs_not_found_as_problem,
        middleware=[prometheus.middleware],
        cors_config=CORSConfig(
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"],
            max_age=600,
        ),
        compression_config=CompressionConfig(backend="brotli", brotli_gzip_fallback=True, minimum_size=512),
        openapi_config=OpenAPIConfig(
            title="Flightdesk API",
            version="1.0.0",
            description="Search, book and pay for flights. Errors are application/problem+json with a stable `code`.",
            path="/api",
            render_plugins=[_swagger()],
        ),
        request_max_body_size=settings.api.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    # Outermost layer, around Litestar's own exception handling, so every response gets request id and headers.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    return app


def build_app() -> Litestar:
    """Factory granian calls in each worker (``granian --factory core_api.app:build_app``)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    # What the imports and the app built (137 k objects) lives as long as the process: out of the collector's sight,
    # a full collection takes microseconds instead of the ~90 ms it stalled the event loop for under load.
    gc.collect()
    gc.freeze()
    return app
