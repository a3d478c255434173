"""What ``framegraph run FILE`` does: one worker on the agent's transport, its own loop, or the server.

A transport with a ``serve`` coroutine in its registry entry (daily, file)
owns its loop and is awaited; a servable transport (webrtc, websocket: a
``servable`` descriptor) is served by the same server as ``framegraph serve``
(``pipelines.server``), loaded only then; any other runs one worker until its
transport ends it (or Ctrl-C).
"""

import asyncio

from pipelines.builder import build_agent
from pipelines.runner import RunOptions, run_worker
from pipelines.validate import Agent


async def run_agent(agent: Agent, options: RunOptions | None = None) -> None:
    """Runs ``agent`` until its transport ends it (or Ctrl-C)."""
    options = options or RunOptions()
    info = agent.transport.type
    if info.serve is not None:
        await info.serve(agent, options)
    elif info.servable is not None:
        from pipelines.server.launch import serve  # FastAPI and uvicorn: only when served (the same server as `serve`)

        await serve([agent], options)
    else:
        await run_worker(build_agent(agent).worker(), handle_sigint=True)


def run(agent: Agent, options: RunOptions | None = None) -> None:
    """Blocking entry point for the CLI (which prints a ``CannotStart`` as one line)."""
    asyncio.run(run_agent(agent, options))
