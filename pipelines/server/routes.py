"""The server's HTTP and WebSocket routes: the REST API, pipecat's runner routes, the pages.

The routes parse, authorize and hand over to the ``SessionManager``; they
never name a transport type: an agent's ``TypeInfo.servable.signalling``
says whether it takes SDP offers or WebSockets.

Access: with an API key, every REST route (and ``/docs``, ``/openapi.json``,
``/metrics``, ``/health``) needs ``Authorization: Bearer KEY``; a session's
media routes (offer, ICE, WebSocket) take the session's own resume token
(``Authorization: Bearer TOKEN`` or ``?token=``). docs/security.md has the
whole model.
"""

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, WebSocket
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pydantic import BaseModel, Field, field_validator

from pipelines.agent_info import agent_info
from pipelines.pipecat_compat import prompt_audio_receivers
from pipelines.server.history_routes import history_router
from pipelines.server.limits import ClientLimits, GuardedSocket, TooManySessions, client_address
from pipelines.server.manager import Full, LiveSession, Refused, SessionManager
from pipelines.server.signalling import Answer, BadOffer, CandidatePatch, Offer, check_offer_sdp
from pipelines.server.user_routes import api_access, refuse_over_budget, session_user, user_router
from pipelines.sessions.dashboard import DASHBOARD_DIR
from pipelines.sessions.model import Health, Page, Session, SessionState, sendable, text_problem
from pipelines.sessions.settings_gate import SettingsChange, SettingsNotApplied
from pipelines.sessions.settings_model import BadSettings
from pipelines.sessions.store import BadCursor, SessionNotFound, StoreUnavailable
from pipelines.sessions.users import USER_ID_RULE
from pipelines.transport_contract import SDP_OFFER, SOCKET

WEB_DIR = DASHBOARD_DIR.parent.parent.parent / "transports" / "web"
#: What a wrong token, an unknown session and an expired one all get: nothing to tell them apart.
NOT_FOUND = "no such session, or the token does not match"
#: What a request gets while the session store cannot be used (with ``Retry-After``).
STORE_AWAY = "the session store is unavailable right now; nothing was changed; try again shortly"
#: Seconds a client is told to wait while the store is away.
STORE_RETRY_S = 5
#: A WebRTC peer's microphone reaches the agent one Opus packet (20 ms) after it arrives, not aiortc's four:
#: 60 ms sooner for every turn's end and every barge-in (bench/browser.py; docs/listening.md).
AUDIO_RECEIVE_PREFETCH = 1


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


class StartResult(BaseModel):
    """pipecat's runner answer to ``POST /start``."""

    sessionId: str


def create_app(manager: SessionManager, *, api_key: str | None, title: str) -> FastAPI:
    """The FastAPI app of ``manager``'s server (``app.state.manager``)."""
    user_keys = manager.options.user_keys
    key_required = [Depends(api_access(api_key, user_keys))] if api_key or user_keys else []
    # With a key, the schema and its page are behind it too (routes of our own below).
    public_docs = not key_required
    # Operation ids are the handlers' names (create_session, list_sessions...), what client generators name methods after.
    app = FastAPI(title=title, docs_url="/docs" if public_docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if public_docs else None,
                  generate_unique_id_function=lambda route: route.name)
    if not public_docs:
        _protected_docs(app, key_required)
    app.state.manager = manager
    options = manager.options
    app.state.client_limits = ClientLimits(options.client_sessions_per_minute, options.client_unconnected_sessions,
                                           limit_loopback=options.limit_loopback_clients)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        """400 with what was wrong (never the body itself) for a request that does not fit its model."""
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        logger.info(f"refused a malformed request to {request.url.path}: {problems[:300]}")
        return JSONResponse({"detail": sendable(f"malformed request: {problems}"[:2000])}, status_code=400)

    @app.exception_handler(TooManySessions)
    async def too_many(request: Request, exc: TooManySessions) -> JSONResponse:
        """429 with ``Retry-After``: this client's own limit, which leaves room for the others."""
        logger.info(f"{request.method} {request.url.path} from {client_address(request.scope)}: {exc}")
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(StoreUnavailable)
    async def store_away(request: Request, exc: StoreUnavailable) -> JSONResponse:
        """503 with ``Retry-After`` and a sentence while the store is away, never a bare 500."""
        logger.warning(f"{request.method} {request.url.path}: {exc}")
        return JSONResponse({"detail": STORE_AWAY}, status_code=503, headers={"Retry-After": str(STORE_RETRY_S)})

    webrtc = SmallWebRTCRequestHandler(ice_servers=_ice_servers(manager))
    app.state.webrtc = webrtc
    api = APIRouter(dependencies=key_required)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/api/agent", include_in_schema=False)  # what the page tells a new user (pipelines.agent_info)
    async def info(name: str | None = None):
        agent = manager.agents.get(name) if name else next(iter(manager.agents.values()))
        if agent is None:
            raise HTTPException(404, "no such agent")
        return agent_info(agent)
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")

    @api.post("/sessions", status_code=201, response_model=Created,
              responses={429: {"description": "This client's limit"}, 503: {"description": "Full"}})
    async def create_session(request: Request, body: NewSession | None = None, placed: Annotated[bool, Query(
            description="sent here by a full server: answer 503 rather than send it on again")] = False) -> Created:
        """Creates a session (STARTING); connect to it within the connect timeout."""
        body = body or NewSession()
        user = session_user(request, body.user)
        await refuse_over_budget(manager, body.agent, user)
        try:
            elsewhere = None if placed else await manager.place_elsewhere(body.agent)
        except Refused as e:
            raise HTTPException(422, str(e)) from None
        if elsewhere:  # once only: servers' room is known from heartbeats, which lag; two full ones must not ping-pong
            raise HTTPException(307, "this server is full; another has room",
                                headers={"Location": elsewhere.rstrip("/") + "/sessions?placed=true"})
        session, token = await _create(manager, body.agent, body.variables, client=request.scope, user=user)
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
    async def get_session(session_id: Annotated[str, _ID]) -> Session:
        """One session with its conversation (the last 100 messages)."""
        try:
            return await manager.store.get(session_id)
        except SessionNotFound:
            raise HTTPException(404, "no such session") from None

    @api.delete("/sessions/{session_id}", status_code=204, responses={404: {"description": "Not found"}})
    async def delete_session(session_id: Annotated[str, _ID], request: Request) -> Response:
        """Ends a session for good: its connection closes, it can no longer be resumed."""
        await _to_owner(manager, request, session_id)
        if not await manager.end(session_id):
            raise HTTPException(404, "no such session")
        return Response(status_code=204)

    @api.patch("/sessions/{session_id}", response_model=SettingsResult, responses={
        404: {"description": "Not found"}, 409: {"description": "Not applied; the old settings stay"},
        422: {"description": "A field the agent's services do not take (named, with the allowed ones)"}})
    async def change_settings(session_id: Annotated[str, _ID], change: SettingsChange, request: Request) -> SettingsResult:
        """Changes LLM/TTS settings or the system prompt; held while a response is generated or spoken."""
        problem = text_problem(change.model_dump(exclude_none=True))
        if problem:
            raise HTTPException(400, f"malformed request: {problem}")
        await _to_owner(manager, request, session_id)
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

    @app.post("/sessions/{session_id}/offer", response_model=Answer,
              responses={400: {"description": "Bad offer"}, 404: {"description": NOT_FOUND}})
    async def session_offer(session_id: Annotated[str, _ID], offer: Offer, request: Request) -> Any:
        """Answers the session's SDP offer (new connection, resume, or renegotiation with ``pc_id``)."""
        await _to_owner(manager, request, session_id)
        live = await _media_session(manager, session_id, _token(request), SDP_OFFER.signalling,
                                    renegotiating=offer.pc_id)
        return await _answer(manager, webrtc, live, offer)

    @app.patch("/sessions/{session_id}/ice", responses={404: {"description": NOT_FOUND}})
    async def session_ice(session_id: Annotated[str, _ID], patch: CandidatePatch, request: Request) -> dict:
        """Trickled ICE candidates for the session's peer connection."""
        await _to_owner(manager, request, session_id)
        if not await manager.authorize(session_id, _token(request)):
            raise HTTPException(404, NOT_FOUND)
        live = manager.live.get(session_id)
        if live is None or live.peer_id != patch.pc_id:
            raise HTTPException(404, "no such peer connection")
        return await _candidates(webrtc, patch)

    @app.websocket("/sessions/{session_id}/ws")
    async def session_ws(ws: WebSocket, session_id: str, token: str | None = None):
        """The session's WebSocket (``?token=``), handed as it is to the agent's transport."""
        try:
            await _session_ws(ws, session_id, token)
        except StoreUnavailable as e:
            logger.warning(f"WebSocket {ws.url.path}: {e}")
            await ws.send_denial_response(JSONResponse({"detail": STORE_AWAY}, status_code=503,
                                                       headers={"Retry-After": str(STORE_RETRY_S)}))

    async def _session_ws(ws: WebSocket, session_id: str, token: str | None) -> None:
        if len(session_id) > 64 or not await manager.authorize(session_id, token or _bearer(ws.headers)):
            await ws.close(code=1008, reason="no such session, or the token does not match")
            return
        elsewhere = await manager.owner_elsewhere(session_id)
        if elsewhere:  # a 307 to the owner's WebSocket (clients such as ``websockets`` follow it)
            location = elsewhere.rstrip("/").replace("http", "ws", 1) + ws.url.path + f"?{ws.url.query}" * bool(ws.url.query)
            await ws.send_denial_response(Response(status_code=307, headers={"Location": location}))
            return
        await _hand_over(manager, ws, lambda: manager.resume(session_id))

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

    # pipecat's runner protocol: POST /start, then the offer at /sessions/{id}/api/offer.
    @api.post("/start", response_model=StartResult, responses={503: {"description": "Full"}})
    async def start(request: Request) -> StartResult:
        """pipecat's runner ``/start``: a session that the next offer to ``/sessions/{id}/api/offer`` connects."""
        body = await _json_or_empty(request)
        inner = body.get("body") if isinstance(body.get("body"), dict) else {}
        asked = inner.get("user")
        user = session_user(request, asked if asked is None else str(asked))
        agent_name = inner.get("agent") if isinstance(inner.get("agent"), str) else None
        await refuse_over_budget(manager, agent_name, user)
        session, _ = await _create(manager, inner.get("agent") if isinstance(inner.get("agent"), str) else None,
                                   {}, client=request.scope, open_once=True, user=user)
        return StartResult(sessionId=session.id)

    @app.post("/sessions/{session_id}/api/offer", response_model=Answer,
              responses={400: {"description": "Bad offer"}, 404: {"description": NOT_FOUND}})
    async def runner_offer(session_id: Annotated[str, _ID], offer: Offer, request: Request) -> Any:
        """pipecat's runner offer route: the session ``/start`` made (once), or any with its token."""
        await _to_owner(manager, request, session_id)
        live = manager.live.get(session_id)
        if live is not None and (live.open_once or (offer.pc_id and offer.pc_id == live.peer_id)):
            return await _answer(manager, webrtc, live, offer)
        live = await _media_session(manager, session_id, _token(request), SDP_OFFER.signalling,
                                    renegotiating=offer.pc_id)
        return await _answer(manager, webrtc, live, offer)

    @app.patch("/sessions/{session_id}/api/offer", responses={404: {"description": NOT_FOUND}})
    async def runner_ice(session_id: Annotated[str, _ID], patch: CandidatePatch, request: Request) -> dict:
        """pipecat's runner ICE route (the peer connection id is the credential here, as in pipecat)."""
        await _to_owner(manager, request, session_id)
        live = manager.live.get(session_id)
        if live is None or live.peer_id != patch.pc_id:
            raise HTTPException(404, "no such peer connection")
        return await _candidates(webrtc, patch)

    # pipecat's single-agent routes (and framegraph's first page): one session per offer or socket.
    @api.post("/api/offer", response_model=Answer, responses={400: {"description": "Bad offer"}})
    async def plain_offer(offer: Offer, request: Request) -> Any:
        """An offer that starts a new session (or renegotiates the peer connection ``pc_id``)."""
        live = next((s for s in manager.live.values() if offer.pc_id and s.peer_id == offer.pc_id), None)
        if live is None:
            _refuse_bad_offer(offer, "a new session")  # before the session exists: junk leaves no row behind
            session, _ = await _create(manager, None, {}, client=request.scope)
            live = manager.live[session.id]
        return await _answer(manager, webrtc, live, offer)

    @api.patch("/api/offer")
    async def plain_ice(patch: CandidatePatch) -> dict:
        if not any(s.peer_id == patch.pc_id for s in manager.live.values()):
            raise HTTPException(404, "no such peer connection")
        return await _candidates(webrtc, patch)

    @app.websocket("/ws")
    async def plain_ws(ws: WebSocket):
        """A WebSocket that starts a new session of the (only) agent."""
        if api_key and not _key_matches(api_key, ws.query_params.get("key") or _bearer(ws.headers)):
            await ws.close(code=1008, reason="an API key is required")
            return

        async def new() -> LiveSession:
            session, _ = await _new_session(manager, None, {}, client=ws.scope)
            return manager.live[session.id]

        await _hand_over(manager, ws, new)

    app.include_router(api)
    app.include_router(user_router(manager, key_required))
    app.include_router(history_router(manager, key_required))
    return app


#: Session ids are 32 hex digits; longer path values are refused before any lookup.
_ID = PathParam(max_length=64)


async def _new_session(manager: SessionManager, agent: str | None, variables: dict, *, client: dict, **kw) -> Any:
    """A new session for the client of ASGI scope ``client``, within its limits and the server's.

    Raises:
        TooManySessions: The client is over its own limit. Full: The server is (or its load level refuses).
        Refused: An unknown agent or bad persona variables.
    """
    limits: ClientLimits = client["app"].state.client_limits
    address = client_address(client)

    def waiting(session_id: str) -> bool:
        live = manager.live.get(session_id)
        return live is not None and not live.connected_once

    reservation = limits.admit(address, waiting)
    session = None
    try:
        session, token = await manager.create(agent, variables, **kw)
    except Full as e:
        logger.warning(f"refused a new session: {e}")
        raise
    finally:
        limits.settle(address, reservation, session.id if session is not None else None)
    return session, token


def _retry_after(manager: SessionManager, full: Full) -> float:
    """The wait a full server asks for: a load level's own (``Busy``), else the server's."""
    return getattr(full, "retry_after_s", manager.options.retry_after_s)


async def _create(manager: SessionManager, agent: str | None, variables: dict, *, client: dict, **kw) -> Any:
    """``_new_session`` for the HTTP routes.

    Raises:
        TooManySessions: The client is over its own limit (429). HTTPException: 503 full, 422 refused.
    """
    try:
        return await _new_session(manager, agent, variables, client=client, **kw)
    except Full as e:
        raise HTTPException(503, str(e), headers={"Retry-After": str(_retry_after(manager, e))}) from None
    except Refused as e:
        raise HTTPException(422, str(e)) from None


async def _to_owner(manager: SessionManager, request: Request, session_id: str) -> None:
    """Raises a 307 to the live server that runs ``session_id`` when that is another one (several servers)."""
    elsewhere = await manager.owner_elsewhere(session_id)
    if elsewhere:
        query = f"?{request.url.query}" if request.url.query else ""
        raise HTTPException(307, "this session runs on another server",
                            headers={"Location": elsewhere.rstrip("/") + request.url.path + query})


async def _media_session(manager: SessionManager, session_id: str, token: str | None, signalling: str,
                         *, renegotiating: str | None = None) -> LiveSession:
    """The live session a media route may use, after checking the token; resumes a DISCONNECTED one."""
    if not await manager.authorize(session_id, token):
        raise HTTPException(404, NOT_FOUND)
    live = manager.live.get(session_id)
    if live is not None and renegotiating and live.peer_id == renegotiating:
        return live
    try:
        live = await manager.resume(session_id)
    except SessionNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    except Full as e:
        raise HTTPException(503, str(e), headers={"Retry-After": str(manager.options.retry_after_s)}) from None
    except Refused as e:
        raise HTTPException(409, str(e)) from None
    if live.agent.transport.type.servable.signalling != signalling:
        raise HTTPException(409, f"this session's agent is served over {live.agent.transport.type.servable.signalling}")
    return live


async def _answer(manager: SessionManager, webrtc: SmallWebRTCRequestHandler, live: LiveSession, offer: Offer) -> Any:
    renegotiation = bool(offer.pc_id) and offer.pc_id == live.peer_id and live.worker is not None
    if not renegotiation:
        try:
            _refuse_bad_offer(offer, f"session {live.id}")
        except HTTPException:
            if live.worker is None and live.fresh and not live.connected_once:
                # Made for this offer (``POST /start``) and never connected: nothing to keep.
                await manager.end(live.id)
                await manager.store.delete(live.id)
            raise
        offer = offer.model_copy(update={"pc_id": None, "restart_pc": None})
    started = []

    async def run(connection) -> None:
        prompt_audio_receivers(connection, AUDIO_RECEIVE_PREFETCH)  # answered, no packet yet: see the function
        started.append(connection)
        manager.connect_soon(live, connection, close_peer=connection.disconnect)

    try:
        answer = await webrtc.handle_web_request(
            SmallWebRTCRequest(sdp=offer.sdp, type=offer.type, pc_id=offer.pc_id, restart_pc=offer.restart_pc), run
        )
    except Exception as e:
        logger.warning(f"refused an offer for session {live.id}: {e.__class__.__name__}: {e}")
        raise HTTPException(400, f"could not answer the offer: {e.__class__.__name__}") from None
    if started:
        live.peer_id = answer["pc_id"]
    return answer


def _refuse_bad_offer(offer: Offer, what: str) -> None:
    """Raises a 400 for an offer whose SDP no peer connection could take."""
    try:
        check_offer_sdp(offer.sdp)
    except BadOffer as e:
        logger.info(f"refused an offer for {what}: {e}")
        raise HTTPException(400, str(e)) from None


async def _candidates(webrtc: SmallWebRTCRequestHandler, patch: CandidatePatch) -> dict:
    try:
        await webrtc.handle_patch_request(SmallWebRTCPatchRequest(
            pc_id=patch.pc_id, candidates=[IceCandidate(**c.model_dump()) for c in patch.candidates]))
    except HTTPException:
        raise
    except Exception as e:
        raise HTTPException(400, f"bad ICE candidate: {e.__class__.__name__}") from None
    return {"status": "ok"}


async def _hand_over(manager: SessionManager, ws: WebSocket, get_live) -> None:
    """Accepts ``ws`` and hands it as it is to a session's transport (which owns its serializer)."""
    try:
        live = await get_live()
    except (Full, StoreUnavailable, TooManySessions) as e:
        logger.warning(f"refused a WebSocket participant: {e}")
        reason = STORE_AWAY if isinstance(e, StoreUnavailable) else str(e)
        wait = f" (retry after {_retry_after(manager, e):g} s)" if isinstance(e, Full) else ""
        await ws.accept()  # then close with 1013 (try again later): a browser's WebSocket reads a close code, not a status
        await ws.close(code=1013, reason=reason[:120 - len(wait)] + wait)
        return
    except (SessionNotFound, Refused) as e:
        await ws.close(code=1008, reason=(NOT_FOUND if isinstance(e, SessionNotFound) else str(e))[:120])
        return
    if live.agent.transport.type.servable.signalling != SOCKET.signalling:
        await ws.close(code=1008, reason="this agent does not take WebSockets")
        return
    await ws.accept()
    guarded = GuardedSocket(ws)
    await manager.connect(live, guarded, close_peer=lambda: guarded.close(1008, "too many refused messages"))


def _bearer(headers) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


def _token(request: Request) -> str | None:
    return _bearer(request.headers) or request.query_params.get("token")


def _key_matches(api_key: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


def _protected_docs(app: FastAPI, key_required: list) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False, dependencies=key_required)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=key_required)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)


async def _json_or_empty(request: Request) -> dict:
    """The request's JSON object, or {} for no body or one that is not JSON (pipecat's clients may send none)."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    except RecursionError:  # JSON nested deeper than Python parses: the client's fault, not a server error
        raise HTTPException(400, "malformed request: the JSON body is nested too deeply") from None
    return body if isinstance(body, dict) else {}


def _ice_servers(manager: SessionManager) -> list[str] | None:
    servers = [url for a in manager.agents.values() for url in getattr(a.transport.params, "ice_servers", [])]
    return servers or None
