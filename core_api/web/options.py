"""``OPTIONS`` on any API path: 204 with the ``Allow`` header listing every method of that path, for anyone.

Litestar gives each path an OPTIONS handler, but builds it for the first handler registered on the path: when a
second handler joins (``GET /users/{id}``, then ``PUT`` and ``DELETE``) the path's route is rebuilt and keeps that
first OPTIONS handler, which still answers ``Allow: GET, OPTIONS``. :class:`OptionsAnswers` sees each final route
as the app registers it and points its OPTIONS handler at the route's real methods. The handler is marked public:
it runs nothing and tells nothing a 405 would not, so it needs no token (CORS preflights never reach it; the CORS
middleware answers them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from litestar import Response
from litestar.enums import MediaType
from litestar.plugins.base import ReceiveRoutePlugin
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT

if TYPE_CHECKING:
    from litestar.routes import BaseRoute
    from litestar.types import Scope

__all__ = ["OptionsAnswers"]


class OptionsAnswers(ReceiveRoutePlugin):
    __slots__ = ()

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            return
        handler, _ = route.route_handler_map["OPTIONS"]
        if handler.resolve_include_in_schema() or handler.handler_name != "options_handler":
            return  # a route's own OPTIONS handler answers for itself
        allow = ", ".join(sorted(route.methods))

        def options_handler(scope: Scope) -> Response[None]:
            return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": allow}, media_type=MediaType.TEXT)

        # Same signature as Litestar's own (its parameter model stays valid); only the answer changes.
        handler._fn = cast("Any", options_handler)
        handler.opt["public"] = True
