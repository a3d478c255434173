"""What the routers share: a new session within the limits, a session's media route, an SDP answer, a WebSocket handed over.

The routers (``sessions_routes``, ``runner_routes``, ``pages``) parse and
authorize; these steps turn the session manager's refusals into HTTP
statuses and WebSocket close codes in one place, so the REST API and
pipecat's runner routes answer alike.
"""

import hmac
from typing import Any

from fastapi import HTTPException, Request, WebSocket
from fastapi import Path as PathParam
from loguru import logger
from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)

from pipelines.pipecat_compat import prompt_audio_receivers
from pipelines.server.limits import ClientLimits, GuardedSocket, TooManySessions, client_address
from pipelines.server.manager import Full, LiveSession, Refused, SessionManager
from pipelines.server.placement import owner_elsewhere
from pipelines.server.signalling import BadOffer, CandidatePatch, Offer, check_offer_sdp
from pipelines.sessions.store import SessionNotFound, StoreUnavailable
from pipelines.transport_contract import SDP_OFFER, SOCKET

#: What a wrong token, an unknown session and an expired one all get: nothing to tell them apart.
NOT_FOUND = "no such session, or the token does not match"
#: What a request gets while the session store cannot be used (with ``Retry-After``).
STORE_AWAY = "the session store is unavailable right now; nothing was changed; try again shortly"
#: Seconds a client is told to wait while the store is away.
STORE_RETRY_S = 5
#: A WebRTC peer's microphone reaches the agent one Opus packet (20 ms) after it arrives, not aiortc's four:
#: 60 ms sooner for every turn's end and every barge-in (bench/browser.py; docs/listening.md).
AUDIO_RECEIVE_PREFETCH = 1
#: Session ids are 32 hex digits; longer path values are refused before any lookup.
SESSION_ID = PathParam(max_length=64)


async def new_session(manager: SessionManager, agent: str | None, variables: dict, *, client: dict, **kw) -> Any:
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


def retry_after(manager: SessionManager, full: Full) -> float:
    """The wait a full server asks for: a load level's own (``Busy``), else the server's."""
    return getattr(full, "retry_after_s", manager.options.retry_after_s)


async def create_for_http(manager: SessionManager, agent: str | None, variables: dict, *, client: dict, **kw) -> Any:
    """``new_session`` for the HTTP routes.

    Raises:
        TooManySessions: The client is over its own limit (429). HTTPException: 503 full, 422 refused.
    """
    try:
        return await new_session(manager, agent, variables, client=client, **kw)
    except Full as e:
        raise HTTPException(503, str(e), headers={"Retry-After": str(retry_after(manager, e))}) from None
    except Refused as e:
        raise HTTPException(422, str(e)) from None


async def to_owner(manager: SessionManager, request: Request, session_id: str) -> None:
    """Raises a 307 to the live server that runs ``session_id`` when that is another one (several servers)."""
    elsewhere = await owner_elsewhere(manager, session_id)
    if elsewhere:
        query = f"?{request.url.query}" if request.url.query else ""
        raise HTTPException(307, "this session runs on another server",
                            headers={"Location": elsewhere.rstrip("/") + request.url.path + query})


async def media_session(manager: SessionManager, session_id: str, token: str | None, signalling: str,
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


async def answer(manager: SessionManager, webrtc: SmallWebRTCRequestHandler, live: LiveSession, offer: Offer) -> Any:
    """The SDP answer to ``offer`` for ``live``: a new peer connection that runs the session, or a renegotiation."""
    renegotiation = bool(offer.pc_id) and offer.pc_id == live.peer_id and live.worker is not None
    if not renegotiation:
        try:
            refuse_bad_offer(offer, f"session {live.id}")
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
        sdp_answer = await webrtc.handle_web_request(
            SmallWebRTCRequest(sdp=offer.sdp, type=offer.type, pc_id=offer.pc_id, restart_pc=offer.restart_pc), run
        )
    except Exception as e:
        logger.warning(f"refused an offer for session {live.id}: {e.__class__.__name__}: {e}")
        raise HTTPException(400, f"could not answer the offer: {e.__class__.__name__}") from None
    if started:
        live.peer_id = sdp_answer["pc_id"]
    return sdp_answer


def refuse_bad_offer(offer: Offer, what: str) -> None:
    """Raises a 400 for an offer whose SDP no peer connection could take."""
    try:
        check_offer_sdp(offer.sdp)
    except BadOffer as e:
        logger.info(f"refused an offer for {what}: {e}")
        raise HTTPException(400, str(e)) from None


async def candidates(webrtc: SmallWebRTCRequestHandler, patch: CandidatePatch) -> dict:
    try:
        await webrtc.handle_patch_request(SmallWebRTCPatchRequest(
            pc_id=patch.pc_id, candidates=[IceCandidate(**c.model_dump()) for c in patch.candidates]))
    except HTTPException:
        raise
    except Exception as e:
        raise HTTPException(400, f"bad ICE candidate: {e.__class__.__name__}") from None
    return {"status": "ok"}


async def session_answer(manager: SessionManager, webrtc: SmallWebRTCRequestHandler, session_id: str,
                         offer: Offer, request: Request) -> Any:
    """The answer to an offer for the session, its token checked (new connection, resume, or renegotiation)."""
    live = await media_session(manager, session_id, token_of(request), SDP_OFFER.signalling, renegotiating=offer.pc_id)
    return await answer(manager, webrtc, live, offer)


async def session_candidates(manager: SessionManager, webrtc: SmallWebRTCRequestHandler, session_id: str,
                             patch: CandidatePatch) -> dict:
    """Trickled ICE candidates for the session's live peer connection ``patch.pc_id``; a 404 if it has no such one."""
    live = manager.live.get(session_id)
    if live is None or live.peer_id != patch.pc_id:
        raise HTTPException(404, "no such peer connection")
    return await candidates(webrtc, patch)


async def hand_over(manager: SessionManager, ws: WebSocket, get_live) -> None:
    """Accepts ``ws`` and hands it as it is to a session's transport (which owns its serializer)."""
    try:
        live = await get_live()
    except (Full, StoreUnavailable, TooManySessions) as e:
        logger.warning(f"refused a WebSocket participant: {e}")
        reason = STORE_AWAY if isinstance(e, StoreUnavailable) else str(e)
        wait = f" (retry after {retry_after(manager, e):g} s)" if isinstance(e, Full) else ""
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


def bearer(headers) -> str | None:
    """The ``Authorization: Bearer`` value of ``headers``, if any."""
    value = headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


def token_of(request: Request) -> str | None:
    """A media route's session token: the bearer header, else ``?token=``."""
    return bearer(request.headers) or request.query_params.get("token")


def key_matches(api_key: str, given: str | None) -> bool:
    """Whether ``given`` is ``api_key`` (compared in constant time)."""
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


async def json_or_empty(request: Request) -> dict:
    """The request's JSON object, or {} for no body or one that is not JSON (pipecat's clients may send none)."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    except RecursionError:  # JSON nested deeper than Python parses: the client's fault, not a server error
        raise HTTPException(400, "malformed request: the JSON body is nested too deeply") from None
    return body if isinstance(body, dict) else {}


def ice_servers(manager: SessionManager) -> list[str] | None:
    """The ICE servers the served agents' transports name, for the server's one WebRTC request handler."""
    servers = [url for a in manager.agents.values() for url in getattr(a.transport.params, "ice_servers", [])]
    return servers or None
