"""Fixtures for authentication tests: registered customers and their tokens."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

Register = Callable[..., Awaitable[dict[str, Any]]]
PASSWORD = "correct horse battery"


@pytest.fixture
def register(client: httpx.AsyncClient) -> Register:
    async def make(email: str = "ann@example.com", password: str = PASSWORD, full_name: str = "Ann Example") -> dict:
        response = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": password, "full_name": full_name}
        )
        assert response.status_code == 201, response.text
        return response.json()

    return make


@pytest.fixture
async def customer(register: Register) -> dict[str, Any]:
    """A registered customer: the register response (user, access_token, refresh_token …)."""
    return await register()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
