"""The users API (``/users/{id}``, its sessions and memory) and who a request speaks for.

Access: the server's API key (``--api-key``) reads and writes everything. A
key bound to a user (``--user-keys``: ``{"USER": "KEY", ...}``) is that user's
own: with it a client may open sessions only as that user (``POST
/sessions``, ``POST /start``) and read only that user's records; any other
route answers 403. docs/users.md has the model.
"""

import hmac
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from pipelines.server.accounting import over_budget
from pipelines.sessions.model import Page
from pipelines.sessions.store import BadCursor, UserNotFound
from pipelines.sessions.users import (
    USER_ID_RULE,
    Memory,
    MemoryContention,
    MemoryOp,
    MemoryVersion,
    User,
    update_memory,
    user_id_problem,
)
from pipelines.usage import totals

#: The routes a key bound to a user may call (by handler name); they check the user themselves.
USER_ROUTES = frozenset({"create_session", "start", "get_user", "user_sessions", "user_memory", "change_memory",
                         "user_usage"})

#: The latest ``since`` taken (year 5138): a date past it cannot be a day of usage (and would overflow).
MAX_SINCE = 1e11

_USER = PathParam(max_length=64, description=f"A user id: {USER_ID_RULE}")


class UserUsage(BaseModel):
    """``GET /users/{id}/usage``: what the user's sessions used since a time (whole UTC days)."""

    since: float = Field(description="Unix time asked for; counts are summed from the start of its UTC day")
    counts: dict[str, float] = Field(description="By kind/provider/model/metric, cost included where priced")
    totals: dict[str, float] = Field(description="By metric over every provider (tokens: prompt + completion)")


class MemoryChange(BaseModel):
    """``PATCH /users/{id}/memory``: field-level operations, applied in order to the latest version."""

    ops: list[MemoryOp] = Field(min_length=1, max_length=100)


def api_access(api_key: str | None, user_keys: dict[str, str]):
    """The dependency that checks a request's bearer key and notes the user it is bound to (if any).

    ``request.state.bound_user`` is None for the server's own key, else the
    user the key belongs to (only on ``USER_ROUTES``).
    """
    keys = [(key.encode(), user) for user, key in user_keys.items()]

    async def check(request: Request) -> None:
        value = request.headers.get("authorization", "")
        given = (value[7:].strip() if value[:7].lower() == "bearer " else "").encode()
        if api_key and hmac.compare_digest(given, api_key.encode()):
            request.state.bound_user = None
            return
        owner = next((user for key, user in keys if hmac.compare_digest(given, key)), None)
        if owner is None:
            raise HTTPException(401, "an API key is required (Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})
        route = request.scope.get("route")
        if getattr(route, "name", None) not in USER_ROUTES:
            raise HTTPException(403, f"this key is bound to user {owner}: it may open sessions as {owner} "
                                     "and read that user's records, nothing else")
        request.state.bound_user = owner

    return check


def session_user(request: Request, asked: str | None) -> str | None:
    """The user a new session is opened as: the one asked for, checked against the key's own user.

    Raises:
        HTTPException: 400 for a malformed id, 403 when a bound key asks for another user.
    """
    bound = getattr(request.state, "bound_user", None)
    if asked is not None and user_id_problem(asked):
        raise HTTPException(400, f"malformed request: {user_id_problem(asked)}")
    if bound is not None and asked not in (None, bound):
        raise HTTPException(403, f"this key is bound to user {bound}: it may only open sessions as {bound}")
    return asked if asked is not None else bound


async def refuse_over_budget(manager, agent_name: str | None, user: str | None) -> None:
    """Raises 429 when ``user`` has used a day's or a month's budget of the agent they ask for."""
    if user is None:
        return
    try:
        agent = manager.agent_named(agent_name)
    except Exception:  # an unknown agent: the creation itself answers it
        return
    why = await over_budget(manager.store, agent.spec.budget, user)
    if why:
        raise HTTPException(429, why)


def _own(request: Request, user: str) -> None:
    """Raises 400 for a malformed id, 403 when a key bound to another user asks about ``user``."""
    problem = user_id_problem(user)
    if problem:
        raise HTTPException(400, f"malformed request: {problem}")
    bound = getattr(request.state, "bound_user", None)
    if bound is not None and bound != user:
        raise HTTPException(403, f"this key is bound to user {bound}: it may only read that user's records")


def user_router(manager, dependencies: list) -> APIRouter:
    """The ``/users`` routes of ``manager``'s server."""
    api = APIRouter(dependencies=dependencies, tags=["users"])

    @api.get("/users/{user_id}", response_model=User, responses={404: {"description": "No such user"}})
    async def get_user(user_id: Annotated[str, _USER], request: Request) -> User:
        """The user's record: first and last seen, sessions opened."""
        _own(request, user_id)
        try:
            return await manager.store.get_user(user_id)
        except UserNotFound:
            raise HTTPException(404, "no such user") from None

    @api.get("/users/{user_id}/sessions", response_model=Page)
    async def user_sessions(
        user_id: Annotated[str, _USER],
        request: Request,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Page:
        """A page of the user's sessions, oldest first; pass ``next_cursor`` back for the next page."""
        _own(request, user_id)
        try:
            return await manager.store.user_sessions(user_id, limit=limit, cursor=cursor)
        except BadCursor as e:
            raise HTTPException(400, str(e)) from None

    @api.get("/users/{user_id}/memory", response_model=Memory)
    async def user_memory(user_id: Annotated[str, _USER], request: Request, history: bool = False) -> Memory:
        """The user's memory now; with ``?history=1`` its last 50 versions too, newest first."""
        _own(request, user_id)
        current = await manager.store.read_memory(user_id)
        versions = await manager.store.memory_history(user_id) if history else None
        return Memory(**current.model_dump(), history=versions)

    @api.get("/users/{user_id}/usage", response_model=UserUsage)
    async def user_usage(user_id: Annotated[str, _USER], request: Request,
                         since: Annotated[float, Query(ge=0, le=MAX_SINCE, description="Unix time")] = 0.0) -> UserUsage:
        """What the user's sessions used from ``since``'s UTC day on, by provider/model and in total."""
        _own(request, user_id)
        counts = await manager.store.user_usage(user_id, since=since)
        return UserUsage(since=since, counts=counts, totals=totals(counts))

    @api.patch("/users/{user_id}/memory", response_model=MemoryVersion,
               responses={409: {"description": "Too many concurrent writers; nothing written"}})
    async def change_memory(user_id: Annotated[str, _USER], change: MemoryChange, request: Request) -> MemoryVersion:
        """Applies field-level operations to the latest version (compare-and-set, retried on a lost race)."""
        _own(request, user_id)
        try:
            return await update_memory(manager.store, user_id, change.ops, by="api")
        except MemoryContention as e:
            raise HTTPException(409, str(e)) from None

    return api
