"""The ``sabre`` search provider: a placeholder that reports itself unavailable until Sabre is integrated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core_api.flights.providers import ProviderUnavailable

if TYPE_CHECKING:
    from core_api.flights.schemas import Offer, SearchQuery

__all__ = ["SabreProvider"]


class SabreProvider:
    """Answers every search with :class:`ProviderUnavailable`, at once, so the search shows it as ``unavailable``."""

    name = "sabre"

    def __init__(self, timeout_seconds: float = 3.0) -> None:
        self.timeout_seconds = timeout_seconds

    async def search(self, query: SearchQuery) -> list[Offer]:
        raise ProviderUnavailable("Sabre is not integrated yet")
