"""Fixtures over seeded inventory: a template with a few days of demo flights, cloned per test."""

import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from core_api.seed import seed_reference_and_flights
from tests.conftest import cloned_database, with_database

SEED_DAYS = 3


@pytest.fixture(scope="session")
def seed_start() -> date:
    """First seeded day: tomorrow (UTC), so every seeded flight is in the future during the run."""
    return datetime.now(UTC).date() + timedelta(days=1)


@pytest.fixture(scope="session")
async def seeded_template(postgres_url: str, template_database: str, seed_start: date) -> AsyncIterator[str]:
    name = f"fd_seeded_{os.getpid()}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        await conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_database))
        )
    await seed_reference_and_flights(with_database(postgres_url, name), days=SEED_DAYS, start=seed_start)
    yield name
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def database_url(postgres_url: str, seeded_template: str) -> AsyncIterator[str]:
    """Overrides the empty database: this package's tests run on seeded flights."""
    async with cloned_database(postgres_url, seeded_template) as url:
        yield url
