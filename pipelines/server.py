"""The agent server: one pipecat worker per connected participant.

``framegraph run FILE`` calls ``serve`` for agents whose transport is ``webrtc``
or ``websocket``. The FastAPI app serves:

- ``GET /``: the web page (``transports/web``), which connects over WebRTC,
- ``POST /api/offer`` (and ``PATCH`` for trickled ICE candidates): pipecat's
  SmallWebRTC signalling; each new peer connection starts a session, and an
  offer with a live session's ``pc_id`` and ``restart_pc`` resumes it (a page
  back from a dropped connection keeps its conversation),
- ``WS /ws``: a WebSocket participant (pipecat protobuf frames),
- ``GET /api/sessions``: every session's state and events, for people and tests.

A session is one participant's worker, built from the agent's YAML with the
accepted connection handed to the transport factory. Its events (connected,
resumed, closed, dropped, refused, ended) are logged and kept on the session.
"""

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pydantic import BaseModel, Field

from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipelines.agent_info import agent_info
from pipelines.builder import build_agent
from pipelines.registry import default_registry
from pipelines.runner import run_worker
from pipelines.validate import Agent, Component

WEB_DIR = Path(__file__).resolve().parent.parent / "transports" / "web"
#: Largest signalling request body accepted (an SDP offer is a few KiB).
MAX_OFFER_BYTES = 256 * 1024
#: Ended sessions kept for ``/api/sessions``; older ones are forgotten.
KEPT_ENDED_SESSIONS = 100


class Offer(BaseModel):
    """A SmallWebRTC offer (or renegotiation) as the page posts it."""

    sdp: str = Field(min_length=1, max_length=MAX_OFFER_BYTES)
    type: Literal["offer"]
    pc_id: str | None = Field(None, max_length=200)
    restart_pc: bool | None = None


class Candidate(BaseModel):
    candidate: str = Field(max_length=2000)
    sdp_mid: str = Field(max_length=200)
    sdp_mline_index: int


class CandidatePatch(BaseModel):
    pc_id: str = Field(max_length=200)
    candidates: list[Candidate] = Field(max_length=100)


@dataclass
class Session:
    """One participant's worker and what happened to it."""

    id: str
    transport: str
    #: The peer connection's id (WebRTC), by which a dropped page resumes this session.
    peer_id: str = ""
    started_at: float = field(default_factory=time.time)
    state: str = "starting"
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The built agent (``pipelines.builder.BuiltAgent``) while the session runs.
    built: Any = None

    def event(self, name: str, detail: str = "") -> None:
        """Records and logs an event; a few names also set the session's state."""
        self.events.append({"time": time.time(), "event": name, "detail": detail})
        log = logger.warning if name in ("dropped", "refused", "failed") else logger.info
        log(f"session {self.id} ({self.transport}): {name}" + (f": {detail}" if detail else ""))
        if name in ("connected", "ended", "failed"):
            self.state = name

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "transport": self.transport, "state": self.state, "events": self.events}


class AgentServer:
    """Runs a session of ``agent`` for each participant that connects."""

    def __init__(self, agent: Agent):
        transport = agent.transport.type.name
        if transport not in ("webrtc", "websocket"):
            raise ValueError(f"the server runs webrtc and websocket agents, not {transport!r} ones")
        self.agent = agent
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task] = set()
        self._workers: set[Any] = set()
        ice = getattr(agent.transport.params, "ice_servers", None) or None
        self.webrtc = SmallWebRTCRequestHandler(ice_servers=ice)

    @property
    def transport_type(self) -> str:
        return self.agent.transport.type.name

    def resumable(self, peer_id: str | None) -> bool:
        """Whether a live session has the peer connection ``peer_id`` (a page coming back)."""
        return bool(peer_id) and any(
            s.peer_id == peer_id and s.state not in ("ended", "failed") for s in self.sessions.values()
        )

    def full(self) -> str | None:
        """Why a new participant is refused (the agent is at ``max_participants``), or None."""
        limit = self.agent.transport.params.max_participants
        active = sum(s.state not in ("ended", "failed") for s in self.sessions.values())
        if limit is not None and active >= limit:
            return f"the agent is talking to {active} participants, its limit; try again later"
        return None

    async def run_session(self, peer: Any) -> Session:
        """Builds the agent around ``peer`` (a connection) and runs it until it ends."""
        session = Session(uuid.uuid4().hex[:12], self.transport_type, getattr(peer, "pc_id", ""))
        self.sessions[session.id] = session
        try:
            built = session.built = build_agent(self.agent, peer=peer)
            self._watch(built.transport, session)
            worker = built.worker()
            self._workers.add(worker)
            try:
                await run_worker(worker)
            finally:
                self._workers.discard(worker)
            session.event("ended")
        except Exception as e:
            session.event("failed", f"{e.__class__.__name__}: {e}")
        session.built = None  # a finished graph is large; let it be collected
        self._forget_old_sessions()
        return session

    def _forget_old_sessions(self) -> None:
        ended = [sid for sid, s in self.sessions.items() if s.state in ("ended", "failed")]
        for sid in ended[: max(0, len(ended) - KEPT_ENDED_SESSIONS)]:
            del self.sessions[sid]

    async def start_session(self, peer: Any) -> None:
        """Runs a session in the background (WebRTC: the offer answers at once)."""
        task = asyncio.create_task(self.run_session(peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _watch(transport: Any, session: Session) -> None:
        @transport.event_handler("on_client_connected")
        async def _connected(t, client):
            session.event("resumed" if session.state == "connected" else "connected")

        @transport.event_handler("on_client_disconnected")
        async def _closed(t, client):
            session.event("closed")

        @transport.event_handler("on_peer_dropped")
        async def _dropped(t, client, reason):
            session.event("dropped", reason)

        @transport.event_handler("on_message_refused")
        async def _refused(t, reason):
            session.event("refused", reason)

    async def close(self) -> None:
        """Ends every session's worker, closes every peer connection, waits for the sessions."""
        await asyncio.gather(*(w.cancel(reason="the server is shutting down") for w in list(self._workers)))
        await self.webrtc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def create_app(agent: Agent) -> FastAPI:
    """The FastAPI app serving ``agent``; ``app.state.server`` is its ``AgentServer``."""
    server = AgentServer(agent)
    app = FastAPI(title=f"framegraph: {agent.spec.name}", lifespan=_lifespan)
    app.state.server = server

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/api/agent")  # what the page tells a new user (pipelines.agent_info)
    async def info():
        return agent_info(agent)

    @app.get("/api/sessions")
    async def sessions():
        return [s.summary() for s in server.sessions.values()]

    if server.transport_type == "webrtc":

        @app.post("/api/offer")
        async def offer(request: Request):
            body = await _bounded_json(request, Offer)
            full = None if server.resumable(body.pc_id) else server.full()
            if full:
                logger.warning(f"refused a WebRTC participant: {full}")
                raise HTTPException(503, full)
            try:
                return await server.webrtc.handle_web_request(
                    SmallWebRTCRequest(sdp=body.sdp, type=body.type, pc_id=body.pc_id, restart_pc=body.restart_pc),
                    server.start_session,
                )
            except HTTPException:
                raise
            except Exception as e:
                logger.warning(f"refused a WebRTC offer: {e.__class__.__name__}: {e}")
                raise HTTPException(400, f"could not answer the offer: {e}") from e

        @app.patch("/api/offer")
        async def candidates(request: Request):
            body = await _bounded_json(request, CandidatePatch)
            patch = SmallWebRTCPatchRequest(
                pc_id=body.pc_id, candidates=[IceCandidate(**c.model_dump()) for c in body.candidates]
            )
            await server.webrtc.handle_patch_request(patch)
            return {"status": "ok"}

    else:

        @app.websocket("/ws")
        async def websocket(ws: WebSocket):
            await ws.accept()
            full = server.full()
            if full:
                logger.warning(f"refused a WebSocket participant: {full}")
                await ws.close(code=1013, reason=full[:120])
                return
            await server.run_session(ws)

    return app


async def _bounded_json(request: Request, model: type[BaseModel]) -> Any:
    """The request body parsed into ``model``; 413 when too large, 400 when malformed."""
    body = await request.body()
    if len(body) > MAX_OFFER_BYTES:
        logger.warning(f"refused a {len(body)}-byte request to {request.url.path}")
        raise HTTPException(413, f"request body over {MAX_OFFER_BYTES} bytes")
    try:
        return model.model_validate_json(body)
    except ValueError as e:
        logger.warning(f"refused a malformed request to {request.url.path}: {e}")
        raise HTTPException(400, f"malformed request: {e}") from e


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    await app.state.server.close()


def server_config(agent: Agent, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """uvicorn settings for ``agent``: its host and port, TLS, its WebSocket keep-alive."""
    params = agent.transport.params
    tls = {
        "ssl_certfile": str(agent.config_dir / params.ssl_certfile),
        "ssl_keyfile": str(agent.config_dir / params.ssl_keyfile),
    } if params.ssl_certfile else {}
    return uvicorn.Config(
        create_app(agent),
        host=host or params.host,
        port=params.port if port is None else port,
        ws_ping_interval=getattr(params, "ping_interval_secs", 10.0),
        ws_ping_timeout=getattr(params, "ping_timeout_secs", 10.0),
        log_level="warning",
        # Sessions are ended by AgentServer.close(); a connection still open
        # after this long does not hold the shutdown.
        timeout_graceful_shutdown=5,
        **tls,
    )


async def serve(agent: Agent, options: Any = None) -> None:
    """Serves ``agent`` until interrupted; ``options`` may override host and port.

    This is what ``framegraph run FILE`` awaits for webrtc and websocket agents.
    """
    server = uvicorn.Server(server_config(agent, getattr(options, "host", None), getattr(options, "port", None)))
    serving = asyncio.create_task(server.serve())
    while not (server.started or serving.done()):
        await asyncio.sleep(0.05)
    if server.started:
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        secure = "s" if server.config.ssl_certfile else ""
        where = f"http{secure}://{host}:{port}/"
        ws = f"ws{secure}://{host}:{port}/ws"
        endpoint = "open it in a browser" if agent.transport.type.name == "webrtc" else f"WebSocket at {ws}"
        print(f"serving agent {agent.spec.name!r} on {where} ({endpoint}); Ctrl-C stops", flush=True)
    await serving


@asynccontextmanager
async def running(agent: Agent, host: str = "127.0.0.1", port: int = 0):
    """Serves ``agent`` in this event loop while the block runs; yields (base URL, AgentServer).

    Port 0 picks a free port. Tests and benchmarks use it.
    """
    config = server_config(agent, host, port)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()
        scheme = "https" if config.ssl_certfile else "http"
        yield f"{scheme}://{bound[0]}:{bound[1]}", config.app.state.server
    finally:
        await config.app.state.server.close()
        server.should_exit = True
        await task


def served_on(agent: Agent, transport: str, **params: Any) -> Agent:
    """``agent`` with its transport replaced by a ``transport`` (webrtc or websocket) one.

    The sample rates stay the agent's; ``params`` set the new transport's
    others (host, port, ...).
    """
    info = default_registry().get("transport", transport)
    if info is None or info.serve is None:
        raise ValueError(f"{transport!r} is not a transport the server serves")
    rates = {k: getattr(agent.transport.params, k) for k in ("audio_in_sample_rate", "audio_out_sample_rate")}
    return replace(agent, transport=Component(agent.transport.id, info, info.params(**rates, **params)))

