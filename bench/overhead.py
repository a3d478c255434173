"""Per-frame cost of a YAML-built graph against the same graph written by hand.

Both graphs are 10 pass-through processors between the synthetic transport's
input and output, run in the same kind of pipecat worker; rounds alternate so
both see the same machine state. Goal: ratio <= 1.05. The YAML-built graph
carries the interruption guard (pipelines.interruptions); the same graph built
without it shows what the guard itself costs. The machine's load average is
printed before and after: on a shared machine, compare ratios from the same run.

    .venv/bin/python bench/overhead.py [--frames 3000] [--rounds 7]
"""

import argparse
import asyncio
import os
import statistics
import time

from loguru import logger
from pipecat.frames.frames import EndFrame, TextFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.workers.runner import WorkerRunner

from pipelines.builder import build_agent
from pipelines.validate import load_agent_text
from processors.basic import PassThrough
from transports.synthetic import SyntheticParams, SyntheticTransport

STAGES = 10
YAML = "\n".join([
    "version: 1",
    "name: overhead",
    "transport: {type: synthetic}",
    "processors:",
    *[f"  p{i}: {{type: passthrough}}" for i in range(STAGES)],
    "pipeline: [input, " + ", ".join(f"p{i}" for i in range(STAGES)) + ", output]",
])
WORKER_KWARGS = dict(enable_rtvi=False, idle_timeout_secs=None, cancel_on_idle_timeout=False)


def yaml_graph(guard: bool = True):
    built = build_agent(load_agent_text(YAML), guard_interruptions=guard)
    return built.pipeline, built.processors["input"], built.worker(**WORKER_KWARGS)


def unguarded_yaml_graph():
    return yaml_graph(guard=False)


def hand_graph():
    transport = SyntheticTransport(SyntheticParams())
    stages = [PassThrough(name=f"p{i}") for i in range(STAGES)]
    pipeline = Pipeline([transport.input(), *stages, transport.output()])
    worker = PipelineWorker(pipeline, params=PipelineParams(), name="overhead", **WORKER_KWARGS)
    return pipeline, transport.input(), worker


async def per_frame_us(make, frames: int) -> tuple[float, float]:
    """Microseconds per frame from the first push at the input to the last frame at the sink: (wall, CPU).

    CPU time is this process's (all threads): other processes on a busy
    machine lengthen the wall time but not it.
    """
    _, source, worker = make()
    worker.set_reached_downstream_filter((TextFrame,))
    started, finished = asyncio.Event(), asyncio.Event()
    seen = 0

    @worker.event_handler("on_pipeline_started")
    async def _started(w, frame):
        started.set()

    @worker.event_handler("on_frame_reached_downstream")
    async def _reached(w, frame):
        nonlocal seen
        seen += 1
        if seen == frames:
            finished.set()

    runner = WorkerRunner(handle_sigint=False, force_gc=True)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 10)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(frames):
        await source.push_frame(TextFrame(str(i)))
    await asyncio.wait_for(finished.wait(), 120)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await worker.queue_frame(EndFrame())
    await run
    return elapsed / frames * 1e6, cpu / frames * 1e6


async def main(frames: int, rounds: int) -> None:
    logger.remove()
    load_before = os.getloadavg()[0]
    variants = {"yaml-built": yaml_graph, "yaml, no guard": unguarded_yaml_graph, "hand-written": hand_graph}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            wall, cpu = await per_frame_us(variants[name], frames)
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"graph: {STAGES} pass-through processors + synthetic input/output, {frames} frames x {rounds} rounds")
    for label, times in (("wall", walls), ("CPU", cpus)):
        median = {name: statistics.median(t) for name, t in times.items()}
        for name, value in median.items():
            print(f"{name:15} {label:4} per frame: {value:8.1f} us (median)")
        hand = median["hand-written"]
        print(f"{label} ratio yaml/hand: {median['yaml-built'] / hand:.3f} (goal <= 1.05); "
              f"without the guard: {median['yaml, no guard'] / hand:.3f}; the guard: "
              f"{(median['yaml-built'] - median['yaml, no guard']) / (STAGES + 2):.2f} us per processor per frame")
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.frames, args.rounds))
