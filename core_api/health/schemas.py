"""Wire types of the health endpoints."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Health", "ServiceHealth", "ServicesHealth"]


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok"]
    version: str


class ServiceHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    status: Literal["up", "down", "disabled"]
    latency_ms: float | None = None
    detail: str | None = None


class ServicesHealth(msgspec.Struct, frozen=True):
    status: Literal["ok", "degraded"]
    services: list[ServiceHealth]
