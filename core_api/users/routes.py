"""``/users``: the admin's user directory (list, create, stats, update, delete) and everyone's own profile."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, delete, get, post, put
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from core_api.auth.guards import actor_of, principal_of, roles
from core_api.auth.schemas import Principal
from core_api.storage.db import transaction
from core_api.users import service
from core_api.users.schemas import Role, User, UserCreate, UserPage, UserStats, UserUpdate
from core_api.web.deps import Pool
from core_api.web.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core_api.web.parameters import UuidPath

__all__ = ["route_handlers"]

_ADMIN = roles(Role.ADMIN)
_READERS = roles(Role.ADMIN, Role.BUSINESS_OWNER)


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    assert principal is not None  # the guard lets no anonymous caller through
    return principal


def _user_id(value: str) -> UUID:
    # Parsed here rather than by a ``:uuid`` path type, which answers a malformed id with a bare 404.
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed.for_field("id", "not a valid UUID") from None


@get("/users", operation_id="listUsers", tags=["users"], opt=_READERS)
async def list_users(
    pool: Pool,
    q: Annotated[
        str | None, QueryParameter(max_length=100, description="Word prefixes of the name or email, all required.")
    ] = None,
    role: FromQuery[Role | None] = None,
    is_active: FromQuery[bool | None] = None,
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> UserPage:
    """List users (ADMIN, BUSINESS_OWNER), newest first; deleted users are not listed.

    `q` matches the start of any word of the full name or email ("smi" finds "John Smith"), case-insensitively.
    """
    return await service.list_users(pool, q=q, role=role, is_active=is_active, page=page, page_size=page_size)


@post("/users", operation_id="createUser", tags=["users"], opt=_ADMIN, raises=[Conflict])
async def create_user(request: Request[Any, Any, Any], pool: Pool, data: JSONBody[UserCreate]) -> User:
    """Create a user of any role (ADMIN). An AIRLINE_AGENT needs the `airline_code` of a known airline."""
    async with transaction(pool) as tx:
        return await service.create_user(
            tx,
            actor_of(request),
            email=data.email,
            password=data.password,
            full_name=data.full_name,
            role=data.role,
            airline_code=data.airline_code,
            phone=data.phone,
        )


@get("/users/stats", operation_id="getUserStats", tags=["users"], opt=_READERS)
async def user_stats(pool: Pool) -> UserStats:
    """User counts by role and state, and sign-ups per UTC day over the last 30 days (ADMIN, BUSINESS_OWNER)."""
    return await service.user_stats(pool)


@get("/users/{id:str}", operation_id="getUser", tags=["users"], raises=[NotFound])
async def get_user(request: Request[Any, Any, Any], pool: Pool, id: UuidPath) -> User:
    """A user: your own profile, or anyone's for ADMIN and BUSINESS_OWNER. Users you may not see are 404."""
    return await service.get_user(pool, _caller(request), _user_id(id))


@put("/users/{id:str}", operation_id="updateUser", tags=["users"], raises=[NotFound, Forbidden, Conflict])
async def update_user(request: Request[Any, Any, Any], pool: Pool, id: UuidPath, data: JSONBody[UserUpdate]) -> User:
    """Update a user. Yourself: `full_name`, `phone`, and your password (`current_password` + `new_password`,
    which ends every session). ADMIN, for anyone: also `role`, `is_active` (false ends every session) and
    `airline_code`. Anyone else sending those is refused with 403 and nothing changes. An admin cannot deactivate
    their own account, nor remove the last active admin (409).
    """
    throttle = request.app.state.auth.throttle
    return await service.update_user(pool, throttle, actor_of(request), _caller(request), _user_id(id), data)


@delete(
    "/users/{id:str}",
    operation_id="deleteUser",
    tags=["users"],
    opt=_ADMIN,
    status_code=HTTP_204_NO_CONTENT,
    raises=[NotFound, Conflict],
)
async def delete_user(request: Request[Any, Any, Any], pool: Pool, id: UuidPath) -> None:
    """Delete a user (ADMIN): deactivated, personal data anonymised, every session ended. The last active admin
    cannot be deleted, and no admin can delete their own account (409).
    """
    await service.delete_user(pool, actor_of(request), _caller(request), _user_id(id))


route_handlers = [list_users, create_user, user_stats, get_user, update_user, delete_user]
