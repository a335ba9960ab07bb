"""Flight tests run on seeded inventory: the session's seeded template (tests/conftest.py), cloned per test."""

from collections.abc import AsyncIterator

import pytest

from tests.conftest import cloned_database


@pytest.fixture
async def database_url(postgres_url: str, seeded_template: str) -> AsyncIterator[str]:
    """Overrides the empty database: this package's tests run on seeded flights."""
    async with cloned_database(postgres_url, seeded_template, strategy="FILE_COPY") as url:
        yield url
