"""Query, path and header parameters: refused as a whole before any handler sees them when they carry control
characters, and named by their wire names when Litestar refuses them.

:func:`check_parameters` is a guard on the API router. A NUL or any other control character (Unicode category
``Cc``: U+0000-U+001F, U+007F-U+009F) in any query parameter (name or value), any path parameter or any header a
route declares is a 422 naming the parameter — PostgreSQL refuses NUL in text, and no id, code, name or search term
of this API has a use for the others. (A server in front may refuse some of these first: granian answers a header
value with a control character with a bare 400 before the app runs.)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from litestar.enums import ParamType
from litestar.params import ParameterKwarg, PathParameter

from core_api.web.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

__all__ = ["PositiveIdPath", "UuidPath", "check_parameters", "declared_headers"]

# Path ids stay text in the signature (so a malformed one is a 422 naming it, not the router's bare 404) and say in
# the schema what they must look like; routes turn them into their type.
UuidPath = Annotated[
    str,
    PathParameter(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="a UUID, e.g. 3f2c8e1a-6b4d-4c2e-9f1a-0b5d7c9e2a41",
        schema_extra={"format": "uuid"},
    ),
]
PositiveIdPath = Annotated[
    str, PathParameter(pattern=r"^[1-9][0-9]{0,18}$", description="a positive whole number, e.g. 42")
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MESSAGE = "must not contain control characters (such as NUL, tab or newline)"


def declared_headers(handler: BaseRouteHandler) -> list[str]:
    """The headers ``handler`` takes as parameters, by wire name."""
    return [
        field.kwarg_definition.name
        for field in handler.parsed_fn_signature.parameters.values()
        if isinstance(field.kwarg_definition, ParameterKwarg)
        and field.kwarg_definition.param_type is ParamType.HEADER
        and field.kwarg_definition.name
    ]


async def check_parameters(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: 422 naming every query, path or declared header parameter that holds a control character."""
    errors: list[FieldError] = []
    for name, value in connection.path_params.items():
        if isinstance(value, str) and _CONTROL.search(value):
            errors.append(FieldError(name, _MESSAGE))
    for name, value in connection.query_params.multi_items():
        if _CONTROL.search(name) or _CONTROL.search(value):
            errors.append(FieldError(name if not _CONTROL.search(name) else repr(name), _MESSAGE))
    for header in declared_headers(handler):
        value = connection.headers.get(header)
        if value is not None and _CONTROL.search(value):
            errors.append(FieldError(header, _MESSAGE))
    if errors:
        raise ValidationFailed.of(errors)
