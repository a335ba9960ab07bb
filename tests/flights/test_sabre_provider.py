"""The ``sabre`` placeholder reports itself unavailable."""

from __future__ import annotations

from datetime import date

import pytest

from core_api.flights.providers import ProviderUnavailable
from core_api.flights.providers.sabre import SabreProvider
from core_api.flights.schemas import SearchQuery


async def test_sabre_is_unavailable() -> None:
    provider = SabreProvider()

    with pytest.raises(ProviderUnavailable, match="not integrated"):
        await provider.search(SearchQuery(origin="JFK", destination="LHR", date=date(2026, 1, 15)))

    assert provider.name == "sabre"
