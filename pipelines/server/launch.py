"""Starting a server from a command: ``serve(agents, options)``, in one process or as worker processes behind a front.

``framegraph serve FILE...`` and ``framegraph run`` of a servable agent both
await ``serve`` (pipelines.serve_command, pipelines.run_command): one server,
whichever command starts it. ``running_workers`` is the worker-process
server in the caller's event loop, for tests and benchmarks (``running`` in
``pipelines.server.app`` is the one-process one).
"""

import tempfile
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from loguru import logger

from pipelines import logs
from pipelines.server.app import build_app, default_store, guarded, server_config, serving, usable_store, uvicorn_config
from pipelines.server.front import Front
from pipelines.server.limits import exposure_warning
from pipelines.server.options import ServerOptions
from pipelines.server.warming import warm
from pipelines.server.workers import WorkerPool
from pipelines.validate import Agent


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
    async with serving(config, target) as (where, server_task):
        names = ", ".join(repr(a.spec.name) for a in agents)
        if options.workers > 1:
            names += f" in {options.workers} worker processes"
        print(f"serving {names} on {where}/ (page: /, API: /docs, dashboard: /dashboard/), ready in "
              f"{logs.since_start():.1f} s; Ctrl-C stops", flush=True)
        await server_task


def front_config(agents: list[Agent], options: ServerOptions) -> tuple[uvicorn.Config, Any]:
    """uvicorn settings and app of the front process of ``options.workers`` worker processes (docs/scale.md)."""
    _, manager = build_app(agents, options)  # checks the agents as one process would; its store stays closed
    pool = WorkerPool(agents, options, manager.server_id, options.workers)
    front = Front(pool, manager.store)
    app = guarded(front, options, options.host or agents[0].transport.params.host)
    return uvicorn_config(app, agents, options), front


@asynccontextmanager
async def running_workers(agent: Agent | list[Agent], workers: int = 2, host: str = "127.0.0.1", **options: Any):
    """``running`` with ``workers`` worker processes behind a front; yields (base URL, the ``Front``)."""
    agents = agent if isinstance(agent, list) else [agent]
    with tempfile.TemporaryDirectory(prefix="framegraph-server-") as tmp:
        options.setdefault("store", str(Path(tmp) / "sessions.db"))
        config, front = front_config(agents, ServerOptions(host=host, port=0, workers=workers, **options))
        async with serving(config, front) as (url, _):
            yield url, front
