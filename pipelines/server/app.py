"""Starting the server: the app with its middleware, uvicorn's limits, ``serve`` and ``running``.

``serve(agents, options)`` is what ``framegraph serve FILE...`` and
``framegraph run`` of a servable agent await; ``running(agent, ...)`` serves
in the caller's event loop for tests and benchmarks.
"""

import asyncio
import socket
import sqlite3
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from loguru import logger
from starlette.middleware.cors import CORSMiddleware

from pipelines import logs
from pipelines.registry import default_registry
from pipelines.server.limits import AccessGuard, BodyLimit, exposure_warning, timely_http_protocol
from pipelines.server.load_level import LoadMonitor
from pipelines.server.manager import SessionManager
from pipelines.server.options import ServerOptions
from pipelines.server.routes import create_app
from pipelines.server.warming import warm
from pipelines.sessions.store import SessionStore, StoreUnavailable, store_for
from pipelines.validate import Agent, Component


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
    manager.load = LoadMonitor(agents[0].spec.backpressure, manager.metrics, server_id)
    manager.load.running = lambda: [(live.agent, live.built) for live in manager.live.values() if live.built]
    title = "framegraph: " + ", ".join(by_name)
    fastapi_app = create_app(manager, api_key=options.api_key, title=title)
    fastapi_app.router.lifespan_context = _lifespan
    return guarded(fastapi_app, options, options.host or agents[0].transport.params.host), manager


def guarded(app: Any, options: ServerOptions, host: str) -> Any:
    """``app`` behind the server's access middleware: CORS, Host/Origin checks, the body limit."""
    if options.allowed_origins:
        app = CORSMiddleware(app, allow_origins=options.allowed_origins, allow_methods=["*"],
                             allow_headers=["authorization", "content-type"])
    app = AccessGuard(app, allowed_hosts=[host, *options.allowed_hosts], allowed_origins=options.allowed_origins)
    return BodyLimit(app, options.max_body_bytes)


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


async def serve(agents: list[Agent], options: Any = None) -> None:
    """Serves ``agents`` until interrupted. ``options``: a ``ServerOptions`` or run options (host, port)."""
    if not isinstance(options, ServerOptions):
        options = ServerOptions(host=getattr(options, "host", None), port=getattr(options, "port", None))
    if options.store is None:  # resolved here: worker processes listen on other ports
        options = replace(options, store=default_store(agents[0], options.port))
    config, target = front_config(agents, options) if options.workers > 1 else server_config(agents, options)
    await usable_store(target.store)
    if options.workers <= 1:
        warm(agents)  # in this process; worker processes warm their own
    warning = exposure_warning(config.host, tls=bool(config.ssl_certfile), api_key=bool(options.api_key))
    if warning:
        logger.warning(warning)
        print(f"warning: {warning}", flush=True)
    async with _serving(config, target) as (where, serving):
        names = ", ".join(repr(a.spec.name) for a in agents)
        if options.workers > 1:
            names += f" in {options.workers} worker processes"
        print(f"serving {names} on {where}/ (page: /, API: /docs, dashboard: /dashboard/), ready in "
              f"{logs.since_start():.1f} s; Ctrl-C stops", flush=True)
        await serving


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
async def _serving(config: uvicorn.Config, target: Any):
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
    import tempfile

    agents = agent if isinstance(agent, list) else [agent]
    with tempfile.TemporaryDirectory(prefix="framegraph-server-") as tmp:
        options.setdefault("store", str(Path(tmp) / "sessions.db"))
        config, manager = server_config(agents, ServerOptions(host=host, port=port, **options))
        async with _serving(config, manager) as (url, _):
            yield url, manager


def front_config(agents: list[Agent], options: ServerOptions) -> tuple[uvicorn.Config, Any]:
    """uvicorn settings and app of the front process of ``options.workers`` worker processes (docs/scale.md)."""
    from pipelines.server.front import Front
    from pipelines.server.workers import WorkerPool

    _, manager = build_app(agents, options)  # checks the agents as one process would; its store stays closed
    pool = WorkerPool(agents, options, manager.server_id, options.workers)
    front = Front(pool, manager.store)
    app = guarded(front, options, options.host or agents[0].transport.params.host)
    return uvicorn_config(app, agents, options), front


@asynccontextmanager
async def running_workers(agent: Agent | list[Agent], workers: int = 2, host: str = "127.0.0.1", **options: Any):
    """``running`` with ``workers`` worker processes behind a front; yields (base URL, the ``Front``)."""
    import tempfile

    agents = agent if isinstance(agent, list) else [agent]
    with tempfile.TemporaryDirectory(prefix="framegraph-server-") as tmp:
        options.setdefault("store", str(Path(tmp) / "sessions.db"))
        config, front = front_config(agents, ServerOptions(host=host, port=0, workers=workers, **options))
        async with _serving(config, front) as (url, _):
            yield url, front


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
