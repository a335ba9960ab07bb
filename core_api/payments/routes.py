"""``/payments`` and ``/webhooks/stripe``: pay for a booking, read payments (scoped like bookings), refund, the
sandbox's confirmation, and the provider's signed webhooks.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from core_api.auth.guards import PUBLIC, actor_of, principal_of, roles
from core_api.auth.schemas import Principal
from core_api.bookings.idempotency import IdempotencyKey
from core_api.payments import service
from core_api.payments.schemas import (
    Payment,
    PaymentCreate,
    PaymentPage,
    PaymentStatus,
    Refund,
    RefundCreate,
    SandboxConfirm,
    WebhookAck,
)
from core_api.payments.webhooks import SignatureInvalid, receive
from core_api.users.schemas import Role
from core_api.web.errors import (
    Conflict,
    Forbidden,
    HoldExpired,
    IdempotencyKeyReused,
    InvalidState,
    NotFound,
    PaymentFailed,
    ServiceUnavailable,
    ValidationFailed,
)
from core_api.web.parameters import UuidPath

__all__ = ["provide_payment_service", "route_handlers"]

_PAYERS = roles(Role.CUSTOMER, Role.TRAVEL_AGENT, Role.ADMIN)
_REFUNDERS = roles(Role.CUSTOMER, Role.TRAVEL_AGENT, Role.AIRLINE_AGENT, Role.ADMIN, Role.BUSINESS_OWNER)


def provide_payment_service(state: State) -> service.PaymentService:
    return state.payments


Payments = NamedDependency[service.PaymentService]
_DEPENDENCIES = {"payments": Provide(provide_payment_service, sync_to_thread=False)}

IdempotencyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Any unique string of printable ASCII (at most 255 characters) per intended operation.",
    ),
]


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    assert principal is not None  # the guard lets no anonymous caller through
    return principal


def _uuid(value: str, field: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed.for_field(field, "must be a UUID") from None


async def _key(request: Request[Any, Any, Any], value: str | None) -> IdempotencyKey | None:
    if value is None:
        return None
    return IdempotencyKey.of(_caller(request).id, value, "POST", request.url.path, await request.body())


@post(
    "/payments",
    operation_id="createPayment",
    tags=["payments"],
    opt=_PAYERS,
    dependencies=_DEPENDENCIES,
    status_code=HTTP_201_CREATED,
    raises=[NotFound, Forbidden, InvalidState, HoldExpired, Conflict, IdempotencyKeyReused, PaymentFailed,
            ServiceUnavailable],
)  # fmt: skip
async def create_payment(
    request: Request[Any, Any, Any],
    payments: Payments,
    data: JSONBody[PaymentCreate],
    idempotency_key: IdempotencyHeader = None,
) -> Response[Payment]:
    """Start paying for a booking awaiting payment: the provider's intent for the amount the booking owes (the
    client never sets it), with the `client_secret` that completes it. One open intent per booking: asking again
    answers the open one. The booking's customer, the agent who made it, or an admin.

    `Idempotency-Key` as for bookings. A provider that does not answer is 503 and nothing is written.
    """
    key = await _key(request, idempotency_key)
    result = await service.create_payment(payments, actor_of(request), _caller(request), data, key)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.payment_id is not None:
        headers["Location"] = f"{request.url.path}/{result.payment_id}"
    content: Any = result.body
    return Response(content, status_code=result.status_code, media_type="application/json", headers=headers)


@get("/payments", operation_id="listPayments", tags=["payments"], dependencies=_DEPENDENCIES)
async def list_payments(
    request: Request[Any, Any, Any],
    payments: Payments,
    booking_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this booking's payments.")] = None,
    status: Annotated[PaymentStatus | None, QueryParameter(description="Only payments in this status.")] = None,
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> PaymentPage:
    """The payments of the bookings the caller may see, newest first: customers their own, travel agents those of
    the bookings they made, airline agents their airline's, business owners and admins all.
    """
    return await service.list_payments(
        payments, _caller(request), booking_id=booking_id, status=status, page=page, page_size=page_size
    )


@get("/payments/{id:str}", operation_id="getPayment", tags=["payments"], dependencies=_DEPENDENCIES, raises=[NotFound])
async def get_payment(request: Request[Any, Any, Any], payments: Payments, id: UuidPath) -> Payment:
    """One payment the caller may see, with its refunds (404 otherwise, whether or not it exists)."""
    return await service.get_payment(payments, _caller(request), _uuid(id))


@post(
    "/payments/{id:str}/refund",
    operation_id="refundPayment",
    tags=["payments"],
    opt=_REFUNDERS,
    dependencies=_DEPENDENCIES,
    status_code=HTTP_201_CREATED,
    raises=[NotFound, Forbidden, InvalidState, Conflict, IdempotencyKeyReused],
)
async def refund_payment(
    request: Request[Any, Any, Any],
    payments: Payments,
    id: UuidPath,
    data: JSONBody[RefundCreate],
    idempotency_key: IdempotencyHeader = None,
) -> Response[Refund]:
    """Refund a payment in full (no `amount`) or in part. Admins and the airline agent of the flight may refund any
    fare; the booking's customer or agent only a refundable one. Never more than was captured: concurrent refunds
    queue on the payment, and one that would exceed it is 409 `CONFLICT`.

    The refund is `SUCCEEDED` when the provider confirmed it, `PENDING` when it did not answer (the worker asks
    again under the same idempotency key). The booking itself is unchanged; `DELETE /bookings/{id}` cancels it.
    """
    key = await _key(request, idempotency_key)
    status_code, body, replayed = await service.refund_payment(
        payments, actor_of(request), _caller(request), _uuid(id), data, key
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    content: Any = body
    return Response(content, status_code=status_code, media_type="application/json", headers=headers)


@post(
    "/payments/{id:str}/sandbox/confirm",
    operation_id="confirmSandboxPayment",
    tags=["payments"],
    opt=_PAYERS,
    dependencies=_DEPENDENCIES,
    status_code=HTTP_200_OK,
    raises=[NotFound, Forbidden, InvalidState],
)
async def confirm_sandbox_payment(
    request: Request[Any, Any, Any], payments: Payments, id: UuidPath, data: JSONBody[SandboxConfirm]
) -> Payment:
    """Sandbox provider only: settle the intent as the customer's bank would. The sandbox then sends the webhook
    Stripe would (`payment_intent.succeeded` or `payment_intent.payment_failed`, signed with `Stripe-Signature`) to
    our own webhook path, which verifies and applies it. Answers the payment afterwards.
    """
    return await service.sandbox_confirm(payments, actor_of(request), _caller(request), _uuid(id), data.outcome)


@post(
    "/webhooks/stripe",
    operation_id="receiveStripeWebhook",
    tags=["payments"],
    opt=PUBLIC,
    dependencies=_DEPENDENCIES,
    status_code=HTTP_200_OK,
    raises=[SignatureInvalid],
)
async def receive_stripe_webhook(
    request: Request[Any, Any, Any],
    payments: Payments,
    stripe_signature: Annotated[
        str | None,
        HeaderParameter(name="Stripe-Signature", max_length=2048, description="t=<unix time>,v1=<HMAC-SHA256>"),
    ] = None,
) -> WebhookAck:
    """Stripe's (and the sandbox's) events. The signature is checked with a 300 s tolerance (401
    `INVALID_SIGNATURE` otherwise); each event is stored by id and applied once, whatever the replays or their
    order. Events of types we do not act on are stored and acknowledged.
    """
    return await receive(payments, actor_of(request), await request.body(), stripe_signature)


route_handlers = [create_payment, list_payments, get_payment, refund_payment, confirm_sandbox_payment,
                  receive_stripe_webhook]  # fmt: skip
