"""``/notifications``: mail history (own; admin all), queue stats, and the admin's send, clear and retry."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from core_api.auth.guards import actor_of, principal_of, roles
from core_api.auth.schemas import Principal
from core_api.notifications import service
from core_api.notifications.schemas import (
    Notification,
    NotificationPage,
    NotificationSend,
    NotificationStats,
    NotificationStatus,
    TemplateName,
    WriteResult,
)
from core_api.users.schemas import Role
from core_api.web.deps import Pool

__all__ = ["route_handlers"]

_ADMIN = roles(Role.ADMIN)


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    assert principal is not None  # the guard lets no anonymous caller through
    return principal


def _public_url(request: Request[Any, Any, Any]) -> str:
    settings = request.app.state.auth.settings
    return str(settings.notifications.public_url or settings.api_url)


@get("/notifications", operation_id="listNotifications", tags=["notifications"])
async def list_notifications(
    request: Request[Any, Any, Any],
    pool: Pool,
    status: Annotated[NotificationStatus | None, QueryParameter(description="Only mails in this state.")] = None,
    template: Annotated[TemplateName | None, QueryParameter(description="Only mails of this template.")] = None,
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> NotificationPage:
    """Mails, newest first: the caller's own (sent to their account), or every mail for an admin. Cleared mails
    are not listed.
    """
    return await service.list_notifications(
        pool, _caller(request), status=status, template=template, page=page, page_size=page_size
    )


@get("/notifications/stats", operation_id="getNotificationStats", tags=["notifications"], opt=_ADMIN)
async def notification_stats(pool: Pool) -> NotificationStats:
    """Mails queued, in progress, completed and failed, in total and per template (ADMIN; cleared mails left out)."""
    return await service.notification_stats(pool)


@post(
    "/notifications/send",
    operation_id="sendNotification",
    tags=["notifications"],
    opt=_ADMIN,
    status_code=HTTP_202_ACCEPTED,
)
async def send_notification(
    request: Request[Any, Any, Any], pool: Pool, data: JSONBody[NotificationSend]
) -> Notification:
    """Queue one mail by hand (ADMIN): a `template`, the `recipient` and the template's fields in `context` (e.g.
    `welcome` takes `full_name`; booking mails take `customer_name`, `pnr` and `flight`). A missing, unknown or
    mistyped field is 422 naming it (`context.flight.departure_at`). Answers the queued mail (`PENDING`).
    """
    return await service.send_by_admin(pool, actor_of(request), _caller(request), data, _public_url(request))


@post(
    "/notifications/clear-completed",
    operation_id="clearCompletedNotifications",
    tags=["notifications"],
    opt=_ADMIN,
    status_code=HTTP_200_OK,
)
async def clear_completed(request: Request[Any, Any, Any], pool: Pool) -> WriteResult:
    """Hide every sent mail from the history and stats (ADMIN); answers how many. The rows are kept (without their
    content) as the record that their events were mailed, so a replayed event still sends nothing.
    """
    return WriteResult(count=await service.clear_completed(pool, actor_of(request)))


@post(
    "/notifications/retry-failed",
    operation_id="retryFailedNotifications",
    tags=["notifications"],
    opt=_ADMIN,
    status_code=HTTP_200_OK,
)
async def retry_failed(request: Request[Any, Any, Any], pool: Pool) -> WriteResult:
    """Queue every failed mail again with three fresh attempts (ADMIN); answers how many."""
    return WriteResult(count=await service.retry_failed(pool, actor_of(request)))


route_handlers = [list_notifications, notification_stats, send_notification, clear_completed, retry_failed]
