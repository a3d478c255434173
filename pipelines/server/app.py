"""The one-process server: its FastAPI app (``create_app``), the app behind its middleware (``build_app``),
uvicorn's settings, and ``running`` (serves in the caller's event loop, for tests and benchmarks).

``framegraph serve`` and ``framegraph run`` of a servable agent start it
through ``pipelines.server.launch.serve`` (with worker processes behind a
front when asked for). A worker process (``pipelines.server.workers``) runs
this very server: this module never imports the front or the workers.
"""

import asyncio
import socket
import sqlite3
import tempfile
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequestHandler
from starlette.middleware.cors import CORSMiddleware

from pipelines.registry import default_registry
from pipelines.server.connecting import STORE_AWAY, STORE_RETRY_S, ice_servers
from pipelines.server.history_routes import history_router
from pipelines.server.limits import (
    AccessGuard,
    BodyLimit,
    ClientLimits,
    TooManySessions,
    client_address,
    timely_http_protocol,
)
from pipelines.server.load_level import LoadMonitor
from pipelines.server.manager import SessionManager
from pipelines.server.options import ServerOptions
from pipelines.server.pages import mount_assets, pages_router
from pipelines.server.runner_routes import runner_router
from pipelines.server.sessions_routes import sessions_router
from pipelines.server.user_routes import api_access, user_router
from pipelines.sessions.backends import store_for
from pipelines.sessions.model import sendable
from pipelines.sessions.store import SessionStore, StoreUnavailable
from pipelines.validate import Agent, Component


def create_app(manager: SessionManager, *, api_key: str | None, title: str) -> FastAPI:
    """The FastAPI app of ``manager``'s server: its state, its routers, its lifespan (``app.state.manager``)."""
    options = manager.options
    key_required = [Depends(api_access(api_key, options.user_keys))] if api_key or options.user_keys else []
    public_docs = not key_required  # with a key, the schema and its page are behind it too (routes of our own)
    # Operation ids are the handlers' names (create_session, list_sessions...), what client generators name methods after.
    app = FastAPI(title=title, docs_url="/docs" if public_docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if public_docs else None,
                  generate_unique_id_function=lambda route: route.name, lifespan=_lifespan)
    if not public_docs:
        _protected_docs(app, key_required)
    _answer_errors(app)
    app.state.manager = manager
    app.state.client_limits = ClientLimits(options.client_sessions_per_minute, options.client_unconnected_sessions,
                                           limit_loopback=options.limit_loopback_clients)
    webrtc = app.state.webrtc = SmallWebRTCRequestHandler(ice_servers=ice_servers(manager))
    app.include_router(pages_router(manager))
    mount_assets(app)
    app.include_router(sessions_router(manager, webrtc, key_required))
    app.include_router(runner_router(manager, webrtc, key_required, api_key))
    app.include_router(user_router(manager, key_required))
    app.include_router(history_router(manager, key_required))
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    await app.state.manager.start()
    app.state.manager.load.start()
    try:
        yield
    finally:
        await app.state.manager.load.stop()
        await app.state.manager.close()
        await app.state.webrtc.close()


def _answer_errors(app: FastAPI) -> None:
    """A malformed request, a client over its limit and a store outage each get a status and a sentence, never a 500."""

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


def _protected_docs(app: FastAPI, key_required: list) -> None:
    """``/openapi.json`` and ``/docs`` behind the API key."""
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False, dependencies=key_required)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=key_required)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)


def default_store(agent: Agent, port: int | None = None) -> str:
    """The SQLite file a server keeps its sessions in when no ``--store`` is given.

    Keyed by the port the server was asked for (``serve`` resolves it), so two
    servers started from one folder on two ports keep their sessions and
    dashboards apart instead of silently sharing them.
    """
    port = getattr(agent.transport.params, "port", None) if port is None else port
    return str(Path(agent.config_dir) / ".framegraph" / (f"sessions-{port}.db" if port is not None else "sessions.db"))


def build_app(agents: list[Agent], options: ServerOptions) -> tuple[Any, SessionManager]:
    """The ASGI app (middleware included) and its session manager for ``agents``."""
    by_name: dict[str, Agent] = {}
    for agent in agents:
        if agent.transport.type.servable is None:
            raise ValueError(f"{agent.spec.name}: the {agent.transport.type.name} transport cannot be served")
        if agent.spec.name in by_name:
            raise ValueError(f"two agents are named {agent.spec.name!r}; give each file its own name")
        by_name[agent.spec.name] = agent
    location = options.store or default_store(agents[0], options.port)
    if not location.startswith(("redis://", "rediss://", "unix://")):
        folder = Path(location.removeprefix("sqlite://")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"session store {location}: cannot make its folder {folder}: {e.strerror}") from None
    server_id = options.server_id or f"{socket.gethostname()}:{'+'.join(sorted(by_name))}"
    manager = SessionManager(by_name, store_for(location), options, server_id=server_id)
    manager.load = LoadMonitor(agents[0].spec.backpressure, manager.metrics, server_id,
                               running=lambda: [(live.agent, live.built) for live in manager.live.values() if live.built])
    app = create_app(manager, api_key=options.api_key, title="framegraph: " + ", ".join(by_name))
    return guarded(app, options, options.host or agents[0].transport.params.host), manager


def guarded(app: Any, options: ServerOptions, host: str) -> Any:
    """``app`` behind the server's access middleware: CORS, Host/Origin checks, the body limit."""
    if options.allowed_origins:
        app = CORSMiddleware(app, allow_origins=options.allowed_origins, allow_methods=["*"],
                             allow_headers=["authorization", "content-type"])
    app = AccessGuard(app, allowed_hosts=[host, *options.allowed_hosts], allowed_origins=options.allowed_origins)
    return BodyLimit(app, options.max_body_bytes)


def server_config(agents: list[Agent], options: ServerOptions, *, tls: bool = True) -> tuple[uvicorn.Config, SessionManager]:
    """uvicorn settings: address, TLS, WebSocket keep-alive and size limits, idle and slow-header timeouts.

    ``tls=False`` serves plain HTTP whatever the agent's transport says (a
    worker process behind the front, which terminates TLS).
    """
    app, manager = build_app(agents, options)
    return uvicorn_config(app, agents, options, tls=tls), manager


def uvicorn_config(app: Any, agents: list[Agent], options: ServerOptions, *, tls: bool = True) -> uvicorn.Config:
    """The uvicorn settings of a server of ``agents`` serving ``app`` (the front process uses them too)."""
    first = agents[0].transport.params
    certificates = {
        "ssl_certfile": str(agents[0].config_dir / first.ssl_certfile),
        "ssl_keyfile": str(agents[0].config_dir / first.ssl_keyfile),
    } if tls and first.ssl_certfile else {}
    return uvicorn.Config(
        app,
        host=options.host or first.host,
        port=first.port if options.port is None else options.port,
        ws_ping_interval=getattr(first, "ping_interval_secs", 10.0),
        ws_ping_timeout=getattr(first, "ping_timeout_secs", 10.0),
        ws_max_size=options.max_message_bytes,
        # No permessage-deflate: audio does not compress, and deflating 50 messages a second each
        # way cost a talking session about 3% of the event loop (and its client as much).
        ws_per_message_deflate=False,
        # An idle keep-alive connection is closed after this; a request whose
        # headers do not arrive in time by TimelyH11Protocol; large headers by h11's limit.
        timeout_keep_alive=options.keep_alive_s,
        http=timely_http_protocol(options.header_timeout_s),
        h11_max_incomplete_event_size=16 * 1024,
        limit_concurrency=1000,
        log_level="warning",
        # Sessions are ended by the manager; a connection still open after this does not hold the shutdown.
        timeout_graceful_shutdown=5,
        **certificates,
    )


async def usable_store(store: SessionStore) -> None:
    """Opens and closes ``store`` once, so that a server whose store cannot be used stops with one line.

    Raises:
        RuntimeError: Redis does not answer, or the SQLite file cannot be opened or written.
    """
    try:
        await store.open()
        await store.recover(owner="framegraph start-up check")  # a write: a read-only file fails here
    except (StoreUnavailable, OSError, sqlite3.Error) as e:
        raise RuntimeError(f"{_one_line(e)}; the server cannot start without its session store") from None
    finally:
        await store.close()


def _one_line(error: Exception) -> str:
    text = str(error) if isinstance(error, StoreUnavailable) else f"session store: {error.__class__.__name__}: {error}"
    return " ".join(text.split()).rstrip(".")


@asynccontextmanager
async def serving(config: uvicorn.Config, target: Any):
    """Binds, tells ``target`` (a manager or a front) its URL, serves; yields (URL, the serving task)."""
    sock = config.bind_socket()
    host, port = sock.getsockname()[:2]
    url = f"{'https' if config.ssl_certfile else 'http'}://{host}:{port}"
    target.advertise(url)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.02)
        yield url, task
    finally:
        if isinstance(target, SessionManager):
            await target.stop_sessions()  # before uvicorn waits for the sessions' connections to close
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def running(agent: Agent | list[Agent], host: str = "127.0.0.1", port: int = 0, **options: Any):
    """Serves in this event loop while the block runs; yields (base URL, SessionManager).

    Port 0 picks a free port; ``options`` are ``ServerOptions`` fields. Without
    a ``store`` the sessions go to a SQLite file in a temporary folder.
    """
    agents = agent if isinstance(agent, list) else [agent]
    with tempfile.TemporaryDirectory(prefix="framegraph-server-") as tmp:
        options.setdefault("store", str(Path(tmp) / "sessions.db"))
        config, manager = server_config(agents, ServerOptions(host=host, port=port, **options))
        async with serving(config, manager) as (url, _):
            yield url, manager


def served_on(agent: Agent, transport: str, **params: Any) -> Agent:
    """``agent`` with its transport replaced by a servable ``transport`` one (sample rates and ``client_context`` kept)."""
    info = default_registry().get("transport", transport)
    if info is None or info.servable is None:
        raise ValueError(f"{transport!r} is not a transport the server serves")
    kept = ("audio_in_sample_rate", "audio_out_sample_rate", "client_context")
    kept = {k: getattr(agent.transport.params, k) for k in kept if hasattr(agent.transport.params, k)}
    return replace(agent, transport=Component(agent.transport.id, info, info.params(**{**kept, **params})))


def servable_transports() -> list[str]:
    """The names of the registered transports the server can serve."""
    registry = default_registry()
    return [n for n in registry.names("transport") if registry.get("transport", n).servable is not None]
