"""Memory stays flat over a long session: a parallel block's duplicate filter and the guard's history are bounded."""

import asyncio
import gc
import tracemalloc

from pipecat.frames.frames import TextFrame
from pipecat.pipeline.parallel_pipeline import ParallelPipeline

from pipelines.interruptions.guard import HISTORY
from pipelines.pipecat_compat import BranchCopies, parallel_seen_ids
from pipelines.testing import AgentHarness

PARALLEL = """version: 1
name: memory
transport: {type: synthetic, audio_out_sample_rate: 16000}
processors:
  a: {type: passthrough}
  b: {type: passthrough}
  c: {type: passthrough}
pipeline: [input, {parallel: [[a], [b, c]]}, output]
"""
MIB = 1024 * 1024


def traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def parallel_traffic(seen, frames: int, *, lag: int = 50) -> int:
    """Drives a seen-id set as ``ParallelPipeline`` does for two branches, the second ``lag`` frames behind,
    with one frame in ten made inside a branch (it comes out once); returns how many copies were pushed."""
    pushed = 0

    def out(frame_id: int) -> None:
        nonlocal pushed
        if frame_id not in seen:
            seen.add(frame_id)
            pushed += 1

    for n in range(frames + lag):
        if n < frames:
            if hasattr(seen, "enter"):
                seen.enter(n)
            out(n)  # first branch
            if n % 10 == 0:
                out(10**9 + n)  # made inside the first branch
        if n >= lag:
            out(n - lag)  # second branch's copy
    return pushed


def memory_growth(seen, frames: int) -> int:
    """Bytes ``seen`` grew by from the first 20,000 frames to ``frames`` (tracemalloc)."""
    tracemalloc.start()
    try:
        parallel_traffic(seen, 20_000)
        start = traced_bytes()
        parallel_traffic(seen, frames - 20_000)
        return traced_bytes() - start
    finally:
        tracemalloc.stop()


def test_a_parallel_blocks_duplicate_filter_stays_flat_over_100000_frames():
    """Caught: pipecat's ParallelPipeline remembered the id of every frame it passed, for the life of the session
    (about 70 bytes a frame: several MB over 100,000 frames); ``BranchCopies`` remembers a frame from its first
    copy to its last only, and still pushes each frame exactly once."""
    assert memory_growth(set(), 100_000) > 2 * MIB  # what pipecat's own set does
    copies = BranchCopies(branches=2, limit=65_536)
    assert memory_growth(copies, 100_000) < 0.2 * MIB
    assert len(copies) <= 50
    assert parallel_traffic(BranchCopies(branches=2, limit=65_536), 1000) == 1000 + 100


async def test_a_guarded_parallel_block_pushes_each_frame_once_and_forgets_it():
    """The guard installs ``BranchCopies`` in every parallel block it guards; frames still come out once."""
    async with AgentHarness.from_text(PARALLEL) as h:
        out = h.probe("output", processed=True)
        for n in range(2000):
            await h.inject(TextFrame(f"{n}"))
        await out.wait_for(TextFrame, where=lambda f: f.text == "1999", timeout=20.0)
        await asyncio.sleep(0.2)
        block = next(m.processor for m in h.built.interruptions.members if isinstance(m.processor, ParallelPipeline))
        seen = parallel_seen_ids(block)
        assert isinstance(seen, BranchCopies) and len(seen) < 20
    assert [f.text for f in out.of_type(TextFrame)] == [f"{n}" for n in range(2000)]


SMALL = """version: 1
name: interruptions
transport: {type: synthetic, audio_out_sample_rate: 16000}
processors:
  a: {type: passthrough}
pipeline: [input, a, output]
"""


async def test_the_guard_stays_flat_over_10000_interruptions():
    """Caught: the guard kept every interruption (its history and each processor's list of epochs), about
    450 bytes per interruption for the life of the session; it now keeps the latest ``HISTORY``."""
    async with AgentHarness.from_text(SMALL) as h:
        guard = h.built.interruptions

        async def interrupt(times: int) -> None:
            for n in range(1, times + 1):
                guard.note_fresh(TextFrame("something to cut"))
                await guard.interrupt()
                await asyncio.sleep(0)
                if n % 100 == 0:  # every processor works through the interruptions queued so far
                    while any(m.stats.received < guard.epoch for m in guard.members):
                        await asyncio.sleep(0.005)

        tracemalloc.start()
        try:
            await interrupt(1000)
            start = traced_bytes()
            await interrupt(9000)
            grown = traced_bytes() - start
        finally:
            tracemalloc.stop()
        assert guard.epoch == 10_000
        assert len(guard.history) == HISTORY and guard.history[-1].epoch == 10_000
        assert {m.stats.name: m.stats.received for m in guard.members} == {"input": 10_000, "a": 10_000, "output": 10_000}
    assert grown < 1 * MIB, f"{grown / MIB:.2f} MiB more over 9,000 interruptions"
