"""Runs an agent: one worker on its transport, or the transport's own server.

``run_worker`` is the one run lifecycle every caller uses (the CLI, the file
and Daily transports, the server's sessions, the test kit), so each finished
graph is collected at once: a finished pipeline is cyclic garbage, and
without a ``gc.collect()`` 64-142 MiB per finished agent lingered
(docs/pipecat-facts.md); pipecat's ``WorkerRunner(force_gc=...)`` does it.
"""

import asyncio
from dataclasses import dataclass

from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner

from pipelines.builder import build_agent
from pipelines.validate import Agent


@dataclass
class RunOptions:
    """What ``framegraph run`` was asked for beyond the config itself."""

    host: str | None = None
    port: int | None = None
    realtime: bool = False


async def run_worker(worker: PipelineWorker, *, handle_sigint: bool = False) -> None:
    """Runs ``worker`` until it ends, then collects its garbage.

    Args:
        worker: A built agent's worker.
        handle_sigint: Whether Ctrl-C ends it (a command that owns the
            process), rather than the caller (a server, a test).
    """
    runner = WorkerRunner(handle_sigint=handle_sigint, force_gc=True)
    await runner.add_workers(worker)
    await runner.run()


async def run_agent(agent: Agent, options: RunOptions | None = None) -> None:
    """Runs ``agent`` until its transport ends it (or Ctrl-C).

    Transports that serve many participants register a ``serve`` coroutine,
    which builds one worker per participant. Their models are loaded first
    (``warm``), as a server's workers do, so the first person to press
    Connect is not kept waiting 3-5 s (and their first words are not lost).
    """
    options = options or RunOptions()
    serve = agent.transport.type.serve
    if serve is not None:
        from pipelines.server.workers import warm

        warm([agent])
        await serve(agent, options)
        return
    await run_worker(build_agent(agent).worker(), handle_sigint=True)


def run(agent: Agent, options: RunOptions | None = None) -> None:
    """Blocking entry point for the CLI (which prints a ``CannotStart`` as one line)."""
    asyncio.run(run_agent(agent, options))
