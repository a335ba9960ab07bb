"""``localstripe`` (a stateful Stripe fake) on a loopback port, with the little it lacks for our tests added.

Run as ``python -m tests.support.localstripe_server PORT``. Added here, and only here:

- loopback only and no state file (localstripe binds every interface and pickles its store to ``/tmp``);
- ``Idempotency-Key``: a POST repeated under a key answers the first response again, as Stripe does (localstripe
  ignores the header, so a retried refund would refund twice);
- ``charge.refunded``: Stripe sends it for every refund, localstripe sends none; the event carries the charge
  with its ``amount_refunded`` and ``refunds`` list;
- ``POST /_test/fail/{path}``: answer the next request to that path with a 500, for provider-fault tests.
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web
from localstripe import resources, server, webhooks

resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]

_refund_init = resources.Refund.__init__


def _refund_and_announce(self: Any, *args: Any, **kwargs: Any) -> None:
    _refund_init(self, *args, **kwargs)
    charge = resources.Charge._api_retrieve(self.charge)
    refunds = [obj for obj in resources.store.values() if isinstance(obj, resources.Refund)]
    mine = [refund for refund in refunds if refund.charge == charge.id] + [self]
    exported = charge._export()
    exported["amount_refunded"] = sum(refund.amount for refund in mine)
    exported["refunded"] = exported["amount_refunded"] >= charge.amount
    exported["refunds"] = {"object": "list", "data": [refund._export() for refund in mine]}

    class _Snapshot:
        def _export(self, **_: Any) -> dict[str, Any]:
            return exported

    event = resources.Event("charge.refunded", _Snapshot())
    webhooks.schedule_webhook(event)


resources.Refund.__init__ = _refund_and_announce  # type: ignore[method-assign]

_answered: dict[str, tuple[int, bytes]] = {}
_failing: set[str] = set()


@web.middleware
async def idempotency(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path in _failing:
        _failing.discard(request.path)
        return web.json_response({"error": {"type": "api_error", "message": "injected"}}, status=500)
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None:
        return await handler(request)
    cached = _answered.get(f"{request.path}:{key}")
    if cached is not None:
        return web.Response(status=cached[0], body=cached[1], content_type="application/json")
    response = await handler(request)
    if isinstance(response, web.Response) and response.body is not None and response.status < 500:
        _answered[f"{request.path}:{key}"] = (response.status, bytes(response.body))  # type: ignore[arg-type]
    return response


async def fail_next(request: web.Request) -> web.Response:
    _failing.add("/" + request.match_info["path"])
    return web.Response()


def main() -> None:
    port = int(sys.argv[1])
    server.app.middlewares.insert(0, idempotency)
    server.app.router.add_post("/_test/fail/{path:.*}", fail_next)
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
