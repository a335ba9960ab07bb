"""Request bodies: ``application/json`` only, decoded once, strictly, by msgspec — the single place where a body's bad
bytes become a 4xx.

A handler declares its body as ``data: BookingCreate`` and receives it decoded. Two pieces, wired by
``create_app``, make that so for every route:

- :func:`require_json_body`, a guard on the API router (after authorisation), refuses a body that is not
  ``application/json`` with 415 before anything reads it — so a ``text/plain`` form posted cross-origin, which
  skips the CORS preflight, is never parsed — and a missing required body with 422.
- :class:`StrictJSON`, the app's DTO, decodes the bytes with msgspec in strict mode straight into the declared type.
  Litestar's own decoding is lax (``"amount": "450.00"`` would become 450 minor units, ``"seats": "12"`` pass), and
  ran before a second, strict decode; with the DTO the body is decoded once and the handler's signature model
  takes it as it is. The declared type still gives the OpenAPI request schema.

Every refusal is a 422 naming the field, in words from the field's type (see :mod:`core_api.web.messages`):
malformed JSON, invalid UTF-8, nesting deeper than the decoder allows, a NUL character in any string (PostgreSQL
cannot store it), a time that cannot be moved to UTC (``0001-01-01T00:00:00+01:00``), a value of the wrong type, an
unknown field (request Structs set ``forbid_unknown_fields``).
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.connection import Request
from litestar.dto import AbstractDTO

from core_api.web.errors import FieldError, UnsupportedMediaType, ValidationFailed
from core_api.web.messages import FieldPath, explain_at, msgspec_failure, render_path

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.connection import ASGIConnection
    from litestar.dto.data_structures import DTOFieldDefinition
    from litestar.handlers.base import BaseRouteHandler
    from litestar.openapi.spec import Reference, Schema
    from litestar.typing import FieldDefinition

__all__ = ["JSON_MEDIA_TYPE", "StrictJSON", "decode_body", "require_json_body", "takes_body"]

JSON_MEDIA_TYPE = "application/json"


@functools.cache
def _decoder(body_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(body_type, strict=True)


def _unstorable(value: Any) -> str | None:
    """Why a decoded value cannot go on, if it cannot."""
    if isinstance(value, str):
        return "must not contain NUL characters" if "\x00" in value else None
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            return "must be an instant between years 1 and 9999 in UTC"
    return None


def _refused_value(value: Any, path: FieldPath) -> tuple[FieldPath, str] | None:
    """The path of the first value in a decoded body that cannot go on (see :func:`_unstorable`), and why."""
    if (reason := _unstorable(value)) is not None:
        return path, reason
    if isinstance(value, msgspec.Struct):
        for field in msgspec.structs.fields(value):
            if (found := _refused_value(getattr(value, field.name), [*path, field.encode_name])) is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            if (found := _refused_value(item, [*path, index])) is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if (found := _refused_value(key, [*path, str(key)]) or _refused_value(item, [*path, str(key)])) is not None:
                return found
    return None


# What the walk looks for can only be in a body holding these bytes: a NUL arrives escaped (a raw one is malformed
# JSON), and only a time in year 1 or 9999 can fall outside the range of datetime once moved to UTC.
_SUSPECT_BYTES = (b"\\u0000", b'"0001-', b'"9999-')


def _refusal(exc: msgspec.ValidationError, body_type: Any) -> ValidationFailed:
    path, message = msgspec_failure(exc)
    return ValidationFailed.for_field(render_path(path), explain_at(body_type, path, message))


def decode_body(body: bytes, body_type: Any) -> Any:
    """``body`` (JSON bytes) as ``body_type``, decoded strictly, or :class:`ValidationFailed` naming the field."""
    try:
        value = _decoder(body_type).decode(body)
    except msgspec.ValidationError as exc:
        raise _refusal(exc, body_type) from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed.for_field("body", f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ValidationFailed.for_field("body", "malformed JSON: not valid UTF-8") from None
    except RecursionError:
        raise ValidationFailed.for_field("body", "malformed JSON: nested too deeply") from None
    if any(suspect in body for suspect in _SUSPECT_BYTES) and (refused := _refused_value(value, [])) is not None:
        path, reason = refused
        raise ValidationFailed.for_field(render_path(path), reason)
    return value


class StrictJSON(AbstractDTO[Any]):
    """The app's DTO: the body decoded once, strictly, into the handler's declared ``data`` type.

    Not a transfer-model DTO: it keeps no field definitions and builds no model; it only takes over decoding (and
    hands the declared type to the OpenAPI generator as it is).
    """

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        # Nothing to prepare per handler: the decoder is built once per body type, on first use.
        return None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        return schema_creator.for_field_definition(field_definition)

    def decode_bytes(self, value: bytes) -> Any:
        data_field = self.asgi_connection.route_handler.parsed_data_field
        assert data_field is not None  # Litestar decodes a body only for a handler that takes one
        return decode_body(value, data_field.annotation)

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        # Form bodies never get this far (require_json_body answers 415), but stay strict if a route allows one.
        data_field = self.asgi_connection.route_handler.parsed_data_field
        assert data_field is not None
        try:
            return msgspec.convert(value, data_field.annotation, strict=True)
        except msgspec.ValidationError as exc:
            raise _refusal(exc, data_field.annotation) from None

    def data_to_encodable_type(self, data: Any) -> Any:
        return data

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        raise NotImplementedError("StrictJSON builds no transfer model")

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False


def takes_body(handler: BaseRouteHandler) -> bool:
    """Whether ``handler`` declares a request body (a ``data`` parameter)."""
    return handler.parsed_data_field is not None


def _is_json(content_type: str, options: dict[str, str]) -> bool:
    return content_type.lower() == JSON_MEDIA_TYPE and options.get("charset", "utf-8").lower() in ("utf-8", "utf8")


async def require_json_body(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: a route that takes a body accepts ``application/json`` (UTF-8) only, and a required body must be
    there. Runs before the body is decoded; reads it only to see whether there is one.
    """
    data_field = handler.parsed_data_field
    if data_field is None or not isinstance(connection, Request):
        return  # no body to check (or a WebSocket, whose frames the handler reads itself)
    content_type, options = connection.content_type
    headers = connection.headers
    sent_something = bool(content_type) or headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if sent_something and not _is_json(content_type, options):
        raise UnsupportedMediaType(
            f"Request bodies must be {JSON_MEDIA_TYPE} (UTF-8); got {content_type or 'no Content-Type'}.",
            errors=[FieldError("Content-Type", f"must be {JSON_MEDIA_TYPE}")],
        )
    if not data_field.is_optional and not data_field.has_default and not await connection.body():
        raise ValidationFailed.for_field("body", f"required: a JSON body ({JSON_MEDIA_TYPE})")
