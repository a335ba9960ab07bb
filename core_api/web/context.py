"""Per-request context carried in contextvars: the request id that every log line and audit row repeats."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("flightdesk_request_id", default=None)
