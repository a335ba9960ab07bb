"""The API keeps the contract its own OpenAPI document states, for every operation the app registers, as every role.

Schemathesis generates requests from ``/api/openapi.json`` — valid ones and, in negative mode, ones that break the
schema — and sends them to the real app (in-process, with its lifespan, over the seeded test database and Redis) as
anonymous, CUSTOMER, TRAVEL_AGENT, AIRLINE_AGENT, BUSINESS_OWNER and ADMIN callers. Every answer must be no 5xx,
a status the operation documents, the content type it documents and a body matching the documented schema. Then a
stateful run follows the links schemathesis infers from ``Location`` headers and ids in responses.

Generic by design: operations come from the document, so a route added later is fuzzed too. The only knowledge of
the API here is which real ids a path or body may point at (so that requests reach past "not found"): path
parameters called ``id`` take, half of the time, an id of the resource their path names, and ``flight_id`` /
``customer_id`` fields real flights and customers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import Counter
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from litestar.routes import HTTPRoute
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core_api.app import create_app
from core_api.audit.service import SYSTEM
from core_api.settings import Settings
from core_api.storage.db import create_pool, transaction
from core_api.users.schemas import Role, User
from core_api.users.service import create_user
from core_api.worker import heartbeat as worker_heartbeat
from tests.conftest import cloned_database
from tests.support.accounts import PASSWORD
from tests.support.asgi import serve_in_loop

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES: list[Role | None] = [None, *Role]
BASE_URL = "http://testserver"
# Examples per operation, role and mode (positive, negative): the suite's budget, not the limit of what finds bugs.
EXAMPLES = int(os.environ.get("FLIGHTDESK_CONTRACT_EXAMPLES", "5"))
STATEFUL_SCENARIOS = int(os.environ.get("FLIGHTDESK_CONTRACT_SCENARIOS", "8"))


def _settings(examples: int) -> hypothesis_settings:
    return hypothesis_settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture
async def database_url(postgres_url: str, seeded_template: str) -> Any:
    """Seeded inventory, so that bookings and seat maps have something to point at."""
    async with cloned_database(postgres_url, seeded_template, strategy="FILE_COPY") as url:
        yield url


class _World:
    """The app served in a loop of the test's own (the test is synchronous, as Hypothesis is), with an account per
    role and a few bookings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.headers: dict[Role | None, dict[str, str]] = {None: {}}
        self.ids: dict[str, list[str]] = {}
        self.numbers = itertools.count(1)
        self.statuses: Counter[int] = Counter()
        try:
            self.run(self._open())
        except BaseException:
            self.close()
            raise

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    async def _open(self) -> None:
        assert self.settings.database.url
        assert self.settings.redis.url
        self.pool = create_pool(self.settings, self.settings.database.url, name="contract")
        await self.pool.open(wait=True)
        self.stack.push_async_callback(self.pool.close)
        app = create_app(self.settings)
        self.client: httpx.AsyncClient = await self.stack.enter_async_context(serve_in_loop(app))
        self.access = {
            (method, route.path_format): handler.opt
            for route in app.routes
            if isinstance(route, HTTPRoute)
            for method, (handler, _) in route.route_handler_map.items()
        }
        self.redis = aioredis.Redis.from_url(self.settings.redis.url)
        self.stack.push_async_callback(self.redis.aclose)
        await worker_heartbeat({"redis": self.redis})
        for role in Role:
            await self.new_account(role)
        # Accounts that requests may change or delete (the role accounts above keep making requests).
        others = [await self.create(Role.CUSTOMER) for _ in range(3)]
        async with self.pool.connection() as conn:
            query = "SELECT id FROM flights WHERE airline_code = 'BA' ORDER BY id LIMIT 6"
            flights = [str(row["id"]) for row in await (await conn.execute(query)).fetchall()]
        bookings, pnrs = [], []
        for flight in flights[:3]:
            traveller = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10", "type": "ADULT"}
            response = await self.client.post(
                "/api/v1/bookings",
                json={"flight_id": int(flight), "cabin": "ECONOMY", "passengers": [traveller]},
                headers=self.headers[Role.CUSTOMER],
            )
            assert response.status_code == 201, response.text
            bookings.append(response.json()["id"])
            pnrs.append(response.json()["pnr"])
        self.ids = {"flights": flights, "users": [str(user.id) for user in others], "bookings": bookings, "pnr": pnrs}

    async def create(self, role: Role) -> User:
        number = next(self.numbers)
        async with transaction(self.pool) as tx:
            return await create_user(
                tx,
                SYSTEM,
                email=f"{role.lower()}{number}@example.com",
                password=PASSWORD,
                full_name=f"Contract {role.title().replace('_', ' ')} {number}",
                role=role,
                airline_code="BA" if role is Role.AIRLINE_AGENT else None,
            )

    async def new_account(self, role: Role) -> None:
        """A fresh account of ``role``, logged in, as the one requests of that role use."""
        user = await self.create(role)
        response = await self.client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.headers[role] = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def ensure_logged_in(self, role: Role | None) -> None:
        """A new account when a request ended the role's session or account (logout, deactivation, deletion).

        Also beats the worker's heartbeat, as a running worker would (``/health/services`` reports it).
        """
        self.run(worker_heartbeat({"redis": self.redis}))
        if role is None:
            return
        response = self.run(self.client.get("/api/v1/auth/me", headers=self.headers[role]))
        if response.status_code == 401:
            self.run(self.new_account(role))

    def lets_in(self, operation: schemathesis.APIOperation, role: Role | None) -> bool:
        """Whether the route's guard lets ``role`` through (by its ``opt``, as the guard reads it)."""
        opt = self.access[(operation.method.upper(), operation.path)]
        if opt.get("public"):
            return True
        return role is not None and (not opt.get("roles") or role in opt["roles"])

    def send(self, case: schemathesis.Case, role: Role | None) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=self.headers[role])
        content = kwargs.get("data")
        if "json" in kwargs:
            content = msgspec.json.encode(kwargs["json"])
        request = self.client.build_request(
            kwargs["method"],
            kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            cookies=kwargs.get("cookies"),
            content=content,
        )

        async def send() -> httpx.Response:
            response = await self.client.send(request)
            await response.aread()
            return response

        response: httpx.Response = self.run(send())
        self.statuses[response.status_code] += 1
        return response

    def close(self) -> None:
        self.run(self.stack.aclose())
        self.loop.close()


def _known_ids(world: _World, operation: schemathesis.APIOperation) -> dict[str, list[str]]:
    """Path parameters of ``operation`` that name a resource we have, and real ids for them."""
    segments = operation.path.strip("/").split("/")
    known: dict[str, list[str]] = {}
    for index, segment in enumerate(segments):
        if segment.startswith("{") and index > 0:
            name = segment.strip("{}")
            resource = name if name in world.ids else segments[index - 1]
            if resource in world.ids:
                known[name] = world.ids[resource]
    return known


def _cases(world: _World, operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode) -> st.SearchStrategy:
    """Cases of ``operation``; positive ones point, half of the time, at real ids (see the module docstring)."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode is schemathesis.GenerationMode.NEGATIVE:
        return generated
    real = st.fixed_dictionaries(
        {
            **{name: st.sampled_from(values) for name, values in _known_ids(world, operation).items()},
            "flight_id": st.sampled_from([int(flight) for flight in world.ids["flights"]]),
            "customer_id": st.just(world.ids["users"][0]),
        }
    )

    def with_real_ids(case: schemathesis.Case, choices: dict[str, Any]) -> schemathesis.Case:
        for name, value in choices.items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = value
            elif isinstance(case.body, dict) and name in case.body:
                case.body[name] = value
        return case

    return st.tuples(generated, st.one_of(st.just({}), real)).map(lambda pair: with_real_ids(*pair))


def _keeps_contract(
    world: _World, operation: schemathesis.APIOperation, role: Role | None, mode: schemathesis.GenerationMode
) -> None:
    # A caller the guard turns away gets one try (its 401 or 403 must be as documented); the budget goes to the rest.
    @_settings(EXAMPLES if world.lets_in(operation, role) else 1)
    @given(case=_cases(world, operation, mode))
    def keeps_contract(case: schemathesis.Case) -> None:
        response = world.send(case, role)
        case.validate_response(response, checks=CHECKS)

    try:
        keeps_contract()
    except Unsatisfiable:
        # Nothing of the operation can be made invalid (no parameters, no body): there is no negative case.
        assert mode is schemathesis.GenerationMode.NEGATIVE


def _stateful_run(world: _World, schema: Any, role: Role) -> None:
    """Chains of calls along the links schemathesis infers (a created booking read, changed and cancelled)."""

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: schemathesis.Case, **kwargs: Any) -> schemathesis.Response:
            return schemathesis.Response.from_any(world.send(case, role))

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

        def teardown(self) -> None:
            world.ensure_logged_in(role)

    Machine.run(
        settings=hypothesis_settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )


def test_every_operation_keeps_its_documented_contract_as_every_role(settings: Settings) -> None:
    world = _World(settings)
    failures: list[str] = []
    started = time.monotonic()
    try:
        spec = world.run(world.client.get("/api/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 25
        for operation, role, mode in itertools.product(operations, ROLES, schemathesis.GenerationMode):
            try:
                _keeps_contract(world, operation, role, mode)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - all failures are reported at the end
                failures.append(f"{operation.label} as {role or 'anonymous'} ({mode.value}): {exc}")
            world.ensure_logged_in(role)
        for role in (Role.CUSTOMER, Role.ADMIN):
            try:
                _stateful_run(world, schema, role)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001
                failures.append(f"stateful run as {role}: {exc}")
    finally:
        world.close()
    print(f"contract run: {time.monotonic() - started:.1f} s, answers by status: {sorted(world.statuses.items())}")
    assert not failures, "\n\n".join(failures)
