"""Runs an agent: one worker on its transport, or the transport's own server."""

import asyncio
from dataclasses import dataclass

from pipecat.workers.runner import WorkerRunner
from pipelines.builder import build_agent
from pipelines.validate import Agent


@dataclass
class RunOptions:
    """What ``framegraph run`` was asked for beyond the config itself."""

    host: str | None = None
    port: int | None = None
    realtime: bool = False


async def run_agent(agent: Agent, options: RunOptions | None = None) -> None:
    """Runs ``agent`` until its transport ends it (or Ctrl-C).

    Transports that serve many participants register a ``serve`` coroutine,
    which builds one worker per participant.
    """
    options = options or RunOptions()
    serve = agent.transport.type.serve
    if serve is not None:
        await serve(agent, options)
        return
    worker = build_agent(agent).worker()
    runner = WorkerRunner(handle_sigint=True, force_gc=True)
    await runner.add_workers(worker)
    await runner.run()


def run(agent: Agent, options: RunOptions | None = None) -> None:
    """Blocking entry point for the CLI."""
    asyncio.run(run_agent(agent, options))
