"""Application errors and their problem+json rendering (RFC 9457).

Every error path of the API ends here: domain errors raised by services, Litestar's own HTTP errors (404 for
unknown routes, 405, 413, validation), database errors mapped by :func:`map_database_error`, and anything
unexpected, which becomes a 500 without internals.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import psycopg
from litestar import Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from core_api.web.messages import explain_parameter

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ExceptionHandlersMap

__all__ = [
    "AppError",
    "Conflict",
    "FieldError",
    "Forbidden",
    "HoldExpired",
    "IdempotencyKeyReused",
    "InvalidState",
    "NotFound",
    "PaymentFailed",
    "Problem",
    "RateLimited",
    "SeatTaken",
    "ServiceUnavailable",
    "SoldOut",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "exception_handlers",
    "http_code",
    "map_database_error",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """The problem+json body every error response carries."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


class AppError(HTTPException):
    """Base of the errors the API reports on purpose. Subclasses set ``status``, ``code`` and ``title``.

    A Litestar ``HTTPException`` (``status_code`` follows ``status``), so that routes declare the errors they answer
    with Litestar's own ``raises=[NotFound, Conflict]``; :mod:`core_api.web.openapi` documents them from there.
    """

    status: ClassVar[int] = 400
    status_code: int = 400
    code: ClassVar[str] = "BAD_REQUEST"
    title: ClassVar[str] = "Bad request"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status_code = cls.status

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=detail or self.title, status_code=self.status)
        self.detail = detail or self.title
        self.errors = errors
        self.headers: dict[str, str] = headers or {}
        # str(error) is the detail alone (HTTPException would prefix the status).
        self.args = (self.detail,)


class ValidationFailed(AppError):
    status, code, title = 422, "VALIDATION_ERROR", "Validation failed"

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])

    @classmethod
    def of(cls, errors: list[FieldError]) -> ValidationFailed:
        """One 422 naming every field in ``errors``."""
        return cls("; ".join(f"{error.field}: {error.message}" for error in errors), errors=errors)


class Unauthorized(AppError):
    status, code, title = 401, "UNAUTHORIZED", "Authentication required"


class Forbidden(AppError):
    status, code, title = 403, "FORBIDDEN", "Not allowed"


class NotFound(AppError):
    status, code, title = 404, "NOT_FOUND", "Not found"


class Conflict(AppError):
    status, code, title = 409, "CONFLICT", "Conflict"


class SoldOut(Conflict):
    code, title = "SOLD_OUT", "Not enough seats left"


class SeatTaken(Conflict):
    code, title = "SEAT_TAKEN", "Seat already taken"


class InvalidState(Conflict):
    code, title = "INVALID_STATE", "Not allowed in the current state"


class HoldExpired(Conflict):
    code, title = "HOLD_EXPIRED", "The booking hold has expired"


class IdempotencyKeyReused(AppError):
    status, code, title = 422, "IDEMPOTENCY_KEY_REUSED", "Idempotency key reused with another request"


class PaymentFailed(AppError):
    status, code, title = 402, "PAYMENT_FAILED", "Payment failed"


class RateLimited(AppError):
    status, code, title = 429, "RATE_LIMITED", "Too many requests"


class ServiceUnavailable(AppError):
    status, code, title = 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"


# Litestar's own HTTP errors, by status: the stable code and title we answer with.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad request"),
    401: ("UNAUTHORIZED", "Authentication required"),
    403: ("FORBIDDEN", "Not allowed"),
    404: ("NOT_FOUND", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    406: ("NOT_ACCEPTABLE", "Not acceptable"),
    413: ("PAYLOAD_TOO_LARGE", "Request body too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
    429: ("RATE_LIMITED", "Too many requests"),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
}


def http_code(status: int) -> tuple[str, str]:
    """The code and title a Litestar HTTP error of ``status`` is answered with."""
    return _HTTP_CODES.get(status, ("BAD_REQUEST" if status < 500 else "INTERNAL_ERROR", "Request failed"))


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    problem = Problem(
        type=f"https://flightdesk.dev/problems/{code.lower().replace('_', '-')}",
        title=title,
        status=status,
        detail=detail,
        code=code,
        errors=errors,
    )
    return Response(problem, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _app_error_handler(_: Request[Any, Any, Any], exc: AppError) -> Response[Problem]:
    return problem_response(exc.status, exc.code, exc.title, exc.detail, exc.errors, exc.headers)


# Litestar's words for a missing query, header or cookie parameter.
_MISSING_PARAMETER = re.compile(r"^Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'")


def _validation_errors(request: Request[Any, Any, Any], exc: ValidationException) -> list[FieldError]:
    """The fields of a parameter that Litestar refused, by wire name and in words from their declarations.

    Bodies never get here (:mod:`core_api.web.bodies` decodes them and raises :class:`ValidationFailed` itself).
    """
    handler = request.scope.get("route_handler")
    errors: list[FieldError] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key") or ""), str(item.get("message") or "invalid value")
        if handler is not None and key:
            key, message = explain_parameter(handler, key, message)
        errors.append(FieldError(key or "request", message))
    if not errors:
        missing = _MISSING_PARAMETER.match(exc.detail or "")
        errors.append(FieldError(missing["name"], "required") if missing else FieldError("request", exc.detail))
    return errors


def _validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    errors = _validation_errors(request, exc)
    detail = "; ".join(f"{error.field}: {error.message}" for error in errors)
    return problem_response(422, "VALIDATION_ERROR", "Validation failed", detail, errors)


def _http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status >= 500:
        return _internal_error_handler(_, exc)
    code, title = http_code(status)
    headers = {str(k): str(v) for k, v in (exc.headers or {}).items()}
    # Litestar's 405 already lists the allowed methods in its Allow header.
    return problem_response(status, code, title, exc.detail or title, headers=headers)


def _internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    logger.error(
        "unhandled error on %s %s", request.method, request.url.path, exc_info=(type(exc), exc, exc.__traceback__)
    )
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal server error", "An unexpected error occurred."
    )


def _database_error_handler(request: Request[Any, Any, Any], exc: psycopg.Error) -> Response[Problem]:
    mapped = map_database_error(exc)
    if mapped is not None:
        return _app_error_handler(request, mapped)
    if isinstance(exc, psycopg.OperationalError):
        logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(
            503,
            "SERVICE_UNAVAILABLE",
            "Service temporarily unavailable",
            "The database could not complete the request.",
        )
    return _internal_error_handler(request, exc)


# Constraint names (see sql/migrations) whose violation is the caller's fault, and what to answer.
_CONSTRAINT_ERRORS: dict[str, AppError] = {}


def register_constraint(name: str, error: AppError) -> None:
    """Declare the error a violated constraint stands for; domains call this for their own constraints."""
    _CONSTRAINT_ERRORS[name] = error


def map_database_error(exc: BaseException) -> AppError | None:
    """Map a database error to the API error it means, or ``None`` when it is a fault of ours."""
    if not isinstance(exc, psycopg.Error) or exc.diag is None:
        return None
    constraint = exc.diag.constraint_name
    if constraint and constraint in _CONSTRAINT_ERRORS:
        return _CONSTRAINT_ERRORS[constraint]
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return Conflict("The resource already exists.")
    if isinstance(
        exc, psycopg.errors.LockNotAvailable | psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected
    ):
        return Conflict("A concurrent change got there first; retry the request.")
    return None


def exception_handlers() -> ExceptionHandlersMap:
    return {
        AppError: _app_error_handler,
        ValidationException: _validation_handler,
        HTTPException: _http_error_handler,
        psycopg.Error: _database_error_handler,
        Exception: _internal_error_handler,
    }
