"""pipecat's runner routes, so pipecat's clients and its prebuilt page work against a framegraph server unchanged.

- ``POST /start``, then the offer at ``/sessions/{id}/api/offer`` (and its
  ICE ``PATCH``): the runner protocol of pipecat's development runner;
- ``POST /api/offer`` (and its ICE ``PATCH``) and ``/ws``: pipecat's
  single-agent routes (and framegraph's own page), one new session per
  offer or socket.

The session that ``/start`` makes may be connected once without its token,
as pipecat's clients do; after that, as every media route, with the token.
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, WebSocket
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequestHandler
from pydantic import BaseModel

from pipelines.server.connecting import (
    NOT_FOUND,
    SESSION_ID,
    answer,
    bearer,
    candidates,
    create_for_http,
    hand_over,
    json_or_empty,
    key_matches,
    new_session,
    refuse_bad_offer,
    session_answer,
    session_candidates,
    to_owner,
)
from pipelines.server.manager import LiveSession, SessionManager
from pipelines.server.signalling import Answer, CandidatePatch, Offer
from pipelines.server.user_routes import refuse_over_budget, session_user


class StartResult(BaseModel):
    """pipecat's runner answer to ``POST /start``."""

    sessionId: str


def runner_router(manager: SessionManager, webrtc: SmallWebRTCRequestHandler, key_required: list,
                  api_key: str | None) -> APIRouter:
    """pipecat's runner routes of ``manager``'s server (``/start`` behind ``key_required``; ``/ws`` behind ``api_key``)."""
    router = APIRouter()
    api = APIRouter(dependencies=key_required)

    # pipecat's runner protocol: POST /start, then the offer at /sessions/{id}/api/offer.
    @api.post("/start", response_model=StartResult, responses={503: {"description": "Full"}})
    async def start(request: Request) -> StartResult:
        """pipecat's runner ``/start``: a session that the next offer to ``/sessions/{id}/api/offer`` connects."""
        body = await json_or_empty(request)
        inner = body.get("body") if isinstance(body.get("body"), dict) else {}
        asked = inner.get("user")
        user = session_user(request, asked if asked is None else str(asked))
        agent_name = inner.get("agent") if isinstance(inner.get("agent"), str) else None
        await refuse_over_budget(manager, agent_name, user)
        session, _ = await create_for_http(manager, agent_name, {}, client=request.scope, open_once=True, user=user)
        return StartResult(sessionId=session.id)

    @router.post("/sessions/{session_id}/api/offer", response_model=Answer,
                 responses={400: {"description": "Bad offer"}, 404: {"description": NOT_FOUND}})
    async def runner_offer(session_id: Annotated[str, SESSION_ID], offer: Offer, request: Request) -> Any:
        """pipecat's runner offer route: the session ``/start`` made (once), or any with its token."""
        await to_owner(manager, request, session_id)
        live = manager.live.get(session_id)
        if live is not None and (live.open_once or (offer.pc_id and offer.pc_id == live.peer_id)):
            return await answer(manager, webrtc, live, offer)
        return await session_answer(manager, webrtc, session_id, offer, request)

    @router.patch("/sessions/{session_id}/api/offer", responses={404: {"description": NOT_FOUND}})
    async def runner_ice(session_id: Annotated[str, SESSION_ID], patch: CandidatePatch, request: Request) -> dict:
        """pipecat's runner ICE route (the peer connection id is the credential here, as in pipecat)."""
        await to_owner(manager, request, session_id)
        return await session_candidates(manager, webrtc, session_id, patch)

    # pipecat's single-agent routes (and framegraph's first page): one session per offer or socket.
    @api.post("/api/offer", response_model=Answer, responses={400: {"description": "Bad offer"}})
    async def plain_offer(offer: Offer, request: Request) -> Any:
        """An offer that starts a new session (or renegotiates the peer connection ``pc_id``)."""
        live = next((s for s in manager.live.values() if offer.pc_id and s.peer_id == offer.pc_id), None)
        if live is None:
            refuse_bad_offer(offer, "a new session")  # before the session exists: junk leaves no row behind
            session, _ = await create_for_http(manager, None, {}, client=request.scope)
            live = manager.live[session.id]
        return await answer(manager, webrtc, live, offer)

    @api.patch("/api/offer")
    async def plain_ice(patch: CandidatePatch) -> dict:
        if not any(s.peer_id == patch.pc_id for s in manager.live.values()):
            raise HTTPException(404, "no such peer connection")
        return await candidates(webrtc, patch)

    @router.websocket("/ws")
    async def plain_ws(ws: WebSocket):
        """A WebSocket that starts a new session of the (only) agent."""
        if api_key and not key_matches(api_key, ws.query_params.get("key") or bearer(ws.headers)):
            await ws.close(code=1008, reason="an API key is required")
            return

        async def new() -> LiveSession:
            session, _ = await new_session(manager, None, {}, client=ws.scope)
            return manager.live[session.id]

        await hand_over(manager, ws, new)

    router.include_router(api)
    return router
