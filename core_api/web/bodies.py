"""Request bodies decoded strictly.

Litestar converts bodies in lax mode, where ``"amount": "450.00"`` becomes 450 minor units and ``"seats": "12"``
passes; money, inventory and travellers take JSON of the declared types only. Handlers still declare their body
type (for the OpenAPI document and the size limit) and then decode it again with :func:`strict_body`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from core_api.web.errors import ValidationFailed

if TYPE_CHECKING:
    from litestar import Request

__all__ = ["decode_strict", "strict_body"]

T = TypeVar("T", bound=msgspec.Struct)

# msgspec reports where a value failed as "... - at `$.fares[0].price.amount`".
_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
# "Object missing required field `x`" / "Object contains unknown field `x`": the field is in the message.
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `(?P<name>[^`]+)`")


def decode_strict(body: bytes, body_type: type[T]) -> T:
    """``body`` as ``body_type``, or a 422 naming the field that failed."""
    try:
        return msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as exc:
        match = _LOCATION.match(str(exc))
        message, path = (match["message"], match["path"]) if match else (str(exc), None)
        named = _NAMED_FIELD.search(message)
        field = ".".join(part for part in (path, named["name"] if named else None) if part).replace(".[", "[")
        raise ValidationFailed.for_field(field or "body", message) from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed.for_field("body", f"malformed JSON: {exc}") from None


async def strict_body(request: Request[Any, Any, Any], body_type: type[T]) -> T:
    return decode_strict(await request.body(), body_type)
