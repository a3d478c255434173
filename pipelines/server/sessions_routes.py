"""The sessions REST API and a session's media routes: ``/sessions``, its offer, ICE and WebSocket, ``/health``, ``/metrics``.

The routes parse, authorize and hand over to the ``SessionManager``; they
never name a transport type: an agent's ``TypeInfo.servable.signalling``
says whether it takes SDP offers or WebSockets.

Access: with an API key, every REST route (and ``/docs``, ``/openapi.json``,
``/metrics``, ``/health``) needs ``Authorization: Bearer KEY``; a session's
media routes (offer, ICE, WebSocket) take the session's own resume token
(``Authorization: Bearer TOKEN`` or ``?token=``). docs/security.md has the
whole model.
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from loguru import logger
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequestHandler
from pydantic import BaseModel, Field, field_validator

from pipelines.server.connecting import (
    NOT_FOUND,
    SESSION_ID,
    STORE_AWAY,
    STORE_RETRY_S,
    bearer,
    create_for_http,
    hand_over,
    session_answer,
    session_candidates,
    to_owner,
    token_of,
)
from pipelines.server.manager import Refused, SessionManager
from pipelines.server.placement import owner_elsewhere, place_elsewhere
from pipelines.server.signalling import Answer, CandidatePatch, Offer
from pipelines.server.user_routes import refuse_over_budget, session_user
from pipelines.sessions.model import Health, Page, Session, SessionState, text_problem
from pipelines.sessions.settings_gate import SettingsChange, SettingsNotApplied
from pipelines.sessions.settings_model import BadSettings
from pipelines.sessions.store import BadCursor, SessionNotFound, StoreUnavailable
from pipelines.sessions.users import USER_ID_RULE


class NewSession(BaseModel):
    """``POST /sessions``: which agent, with which persona variables."""

    agent: str | None = Field(None, max_length=200, description="Agent name (needed when the server runs several)")
    variables: dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=dict, max_length=50, description="Persona variables ({name} values of the system prompt)"
    )
    user: str | None = Field(None, max_length=64, description=f"The user the session is opened as: {USER_ID_RULE}")

    @field_validator("variables")
    @classmethod
    def _clean_text(cls, variables: dict[str, str]) -> dict[str, str]:
        problem = text_problem(variables)
        if problem:
            raise ValueError(problem)
        return variables


class Created(BaseModel):
    """A new session: keep ``token``, it is shown only once (resume and media routes need it)."""

    id: str
    token: str
    created_at: float
    agent: str
    signalling: str = Field(description="'sdp-offer': POST /sessions/{id}/offer; 'socket': WS /sessions/{id}/ws")


class SettingsResult(BaseModel):
    """``PATCH /sessions/{id}``: applied now, or held until the running response ends (``settings-applied`` says when)."""

    applied: bool
    held: bool
    change_id: str = Field(description="this change's id: settings-applied messages and the session's "
                           "settings.applied/failed name it")
    pending: list[str] = Field(description="the ids of the changes waiting for the running response to end")


def sessions_router(manager: SessionManager, webrtc: SmallWebRTCRequestHandler, key_required: list) -> APIRouter:
    """The sessions API (behind ``key_required``) and the session media routes (behind each session's token)."""
    router = APIRouter()
    api = APIRouter(dependencies=key_required)

    @api.post("/sessions", status_code=201, response_model=Created,
              responses={429: {"description": "This client's limit"}, 503: {"description": "Full"}})
    async def create_session(request: Request, body: NewSession | None = None, placed: Annotated[bool, Query(
            description="sent here by a full server: answer 503 rather than send it on again")] = False) -> Created:
        """Creates a session (STARTING); connect to it within the connect timeout."""
        body = body or NewSession()
        user = session_user(request, body.user)
        await refuse_over_budget(manager, body.agent, user)
        try:
            elsewhere = None if placed else await place_elsewhere(manager, body.agent)
        except Refused as e:
            raise HTTPException(422, str(e)) from None
        if elsewhere:  # once only: servers' room is known from heartbeats, which lag; two full ones must not ping-pong
            raise HTTPException(307, "this server is full; another has room",
                                headers={"Location": elsewhere.rstrip("/") + "/sessions?placed=true"})
        session, token = await create_for_http(manager, body.agent, body.variables, client=request.scope, user=user)
        agent = manager.agents[session.agent]
        return Created(id=session.id, token=token, created_at=session.created_at, agent=session.agent,
                       signalling=agent.transport.type.servable.signalling)

    @api.get("/sessions", response_model=Page)
    async def list_sessions(
        state: SessionState | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Page:
        """A page of sessions, oldest first; pass ``next_cursor`` back for the next page."""
        try:
            return await manager.store.list(limit=limit, cursor=cursor, state=state)
        except BadCursor as e:
            raise HTTPException(400, str(e)) from None

    @api.get("/sessions/{session_id}", response_model=Session, responses={404: {"description": "Not found"}})
    async def get_session(session_id: Annotated[str, SESSION_ID]) -> Session:
        """One session with its conversation (the last 100 messages)."""
        try:
            return await manager.store.get(session_id)
        except SessionNotFound:
            raise HTTPException(404, "no such session") from None

    @api.delete("/sessions/{session_id}", status_code=204, responses={404: {"description": "Not found"}})
    async def delete_session(session_id: Annotated[str, SESSION_ID], request: Request) -> Response:
        """Ends a session for good: its connection closes, it can no longer be resumed."""
        await to_owner(manager, request, session_id)
        if not await manager.end(session_id):
            raise HTTPException(404, "no such session")
        return Response(status_code=204)

    @api.patch("/sessions/{session_id}", response_model=SettingsResult, responses={
        404: {"description": "Not found"}, 409: {"description": "Not applied; the old settings stay"},
        422: {"description": "A field the agent's services do not take (named, with the allowed ones)"}})
    async def change_settings(session_id: Annotated[str, SESSION_ID], change: SettingsChange, request: Request) -> SettingsResult:
        """Changes LLM/TTS settings or the system prompt; held while a response is generated or spoken."""
        problem = text_problem(change.model_dump(exclude_none=True))
        if problem:
            raise HTTPException(400, f"malformed request: {problem}")
        await to_owner(manager, request, session_id)
        try:
            outcome = await manager.change_settings(session_id, change)
        except SessionNotFound:
            raise HTTPException(404, "no such session") from None
        except BadSettings as e:
            raise HTTPException(422, str(e)) from None
        except (Refused, SettingsNotApplied) as e:
            raise HTTPException(409, str(e)) from None
        return SettingsResult(applied=outcome.applied, held=not outcome.applied, change_id=outcome.change_id,
                              pending=outcome.pending)

    @router.post("/sessions/{session_id}/offer", response_model=Answer,
                 responses={400: {"description": "Bad offer"}, 404: {"description": NOT_FOUND}})
    async def session_offer(session_id: Annotated[str, SESSION_ID], offer: Offer, request: Request) -> Any:
        """Answers the session's SDP offer (new connection, resume, or renegotiation with ``pc_id``)."""
        await to_owner(manager, request, session_id)
        return await session_answer(manager, webrtc, session_id, offer, request)

    @router.patch("/sessions/{session_id}/ice", responses={404: {"description": NOT_FOUND}})
    async def session_ice(session_id: Annotated[str, SESSION_ID], patch: CandidatePatch, request: Request) -> dict:
        """Trickled ICE candidates for the session's peer connection."""
        await to_owner(manager, request, session_id)
        if not await manager.authorize(session_id, token_of(request)):
            raise HTTPException(404, NOT_FOUND)
        return await session_candidates(manager, webrtc, session_id, patch)

    @router.websocket("/sessions/{session_id}/ws")
    async def session_ws(ws: WebSocket, session_id: str, token: str | None = None):
        """The session's WebSocket (``?token=``), handed as it is to the agent's transport."""
        try:
            await _session_ws(ws, session_id, token)
        except StoreUnavailable as e:
            logger.warning(f"WebSocket {ws.url.path}: {e}")
            await ws.send_denial_response(JSONResponse({"detail": STORE_AWAY}, status_code=503,
                                                       headers={"Retry-After": str(STORE_RETRY_S)}))

    async def _session_ws(ws: WebSocket, session_id: str, token: str | None) -> None:
        if len(session_id) > 64 or not await manager.authorize(session_id, token or bearer(ws.headers)):
            await ws.close(code=1008, reason="no such session, or the token does not match")
            return
        elsewhere = await owner_elsewhere(manager, session_id)
        if elsewhere:  # a 307 to the owner's WebSocket (clients such as ``websockets`` follow it)
            location = elsewhere.rstrip("/").replace("http", "ws", 1) + ws.url.path + f"?{ws.url.query}" * bool(ws.url.query)
            await ws.send_denial_response(Response(status_code=307, headers={"Location": location}))
            return
        await hand_over(manager, ws, lambda: manager.resume(session_id))

    @api.get("/health", response_model=Health)
    async def health() -> Health:
        """The store's status, session counts and this server's load level (a load balancer drains at SESSION_REJECT)."""
        load = manager.load.report() if manager.load is not None else None
        try:
            ok = await manager.store.ping()
            counts = await manager.store.count_by_state()
        except Exception as e:  # the store is down: say so, never 500
            logger.warning(f"health: store: {e.__class__.__name__}: {e}")
            return Health.from_counts({}, store_ok=False, load=load)
        return Health.from_counts(counts, store_ok=ok, load=load)

    @api.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        """Prometheus metrics of this server."""
        return Response(manager.metrics.exposition(), media_type=manager.metrics.CONTENT_TYPE)

    router.include_router(api)
    return router
