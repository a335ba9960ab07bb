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
from typing import TYPE_CHECKING, Any

from litestar.enums import ParamType
from litestar.params import ParameterKwarg

from core_api.web.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

__all__ = ["check_parameters", "declared_headers"]

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
