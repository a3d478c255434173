"""The one run lifecycle: ``run_worker``, and the options ``framegraph run`` takes.

``run_worker`` is the one run lifecycle every caller uses (the CLI, the file
and Daily transports, the server's sessions, the test kit), so each finished
graph is collected at once: a finished pipeline is cyclic garbage, and
without a ``gc.collect()`` 64-142 MiB per finished agent lingered
(docs/pipecat-facts.md); pipecat's ``WorkerRunner(force_gc=...)`` does it.
"""

from dataclasses import dataclass

from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner


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
