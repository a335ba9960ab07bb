"""Realtime events over WebSocket (SPEC §4 "realtime"): the per-process hub and the ``/api/v1/ws`` route.

Events reach every API process through Redis pub/sub (published by the outbox relay) and go from each process's
:class:`~core_api.realtime.hub.Hub` to the sockets connected to it and entitled to them. Server → client frames are
``{"event", "data", "at"}``: ``booking:*`` and ``flight:availability`` (SPEC), plus ``connected`` (once, after
authentication), ``subscribed`` / ``unsubscribed`` (answers to ``{"subscribe": "flight:<id>"}`` and
``{"unsubscribe": ...}``), ``error`` (a bad client frame, answered, never fatal) and ``heartbeat``.
"""

from core_api.realtime.hub import Hub, HubOptions
from core_api.realtime.routes import route_handlers

__all__ = ["Hub", "HubOptions", "route_handlers"]
