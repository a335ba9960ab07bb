"""Search providers: one module per supplier, each turning a :class:`SearchQuery` into our :class:`Offer` shape.

Adding a supplier (Duffel, an NDC aggregator …) is one new module implementing :class:`SearchProvider`.
"""

from __future__ import annotations

from typing import Protocol

from core_api.flights.schemas import Offer, SearchQuery

__all__ = ["ProviderUnavailable", "SearchProvider"]


class ProviderUnavailable(Exception):
    """The provider cannot answer (not configured, retired, or down); reported as ``unavailable``."""


class SearchProvider(Protocol):
    name: str
    timeout_seconds: float

    async def search(self, query: SearchQuery) -> list[Offer]:
        """Offers for the query, prices for the whole party. Raise on failure; the caller reports it."""
        ...
