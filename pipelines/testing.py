"""The test kit: run any YAML agent in process, inject frames, probe what flows.

Usable from pytest (``asyncio_mode = auto``)::

    async with AgentHarness.from_file("configs/assistant.yaml") as h:
        tts = h.probe("tts")
        await h.inject(TranscriptionFrame("hello", "user", now()), at="llm")
        await tts.wait_for(TTSAudioRawFrame, timeout=5)

The agent's transport is replaced by the synthetic one unless told otherwise.
Probes watch what a processor pushes (downstream by default) through a
pipecat observer, so probing changes nothing in the graph. Every wait is
bounded and a timeout says what was seen instead.
"""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines.audio import USER_SAMPLE_RATE
from pipelines.builder import BuiltAgent, build_agent
from pipelines.registry import default_registry
from pipelines.runner import run_worker
from pipelines.spec import INPUT
from pipelines.validate import Agent, Component, load_agent, load_agent_text

CHUNK_MS = 20


class Probe:
    """Frames one processor pushed in one direction (or processed), in order, with their monotonic times."""

    def __init__(self, label: str):
        self.label = label
        self.frames: list[Frame] = []
        self.times: list[float] = []
        self._changed = asyncio.Event()

    def add(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.times.append(time.monotonic())
        self._changed.set()

    def of_type(self, *types: type[Frame]) -> list[Frame]:
        """The frames seen so far that are instances of ``types``."""
        return [f for f in self.frames if isinstance(f, types)]

    async def wait_for(
        self,
        frame_type: type[Frame] | tuple[type[Frame], ...] = Frame,
        *,
        where: Callable[[Frame], bool] = lambda f: True,
        count: int = 1,
        timeout: float = 5.0,
    ) -> Frame:
        """Waits until ``count`` matching frames were seen; returns the last of them.

        Raises:
            TimeoutError: naming the frames that were seen instead.
        """

        def matches() -> list[Frame]:
            return [f for f in self.frames if isinstance(f, frame_type) and where(f)]

        async def wait() -> Frame:
            while len(found := matches()) < count:
                self._changed.clear()
                await self._changed.wait()
            return found[count - 1]

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            seen = ", ".join(type(f).__name__ for f in self.frames[-20:]) or "nothing"
            raise TimeoutError(f"{self.label}: no {count} x {frame_type} within {timeout}s; last seen: {seen}") from None


class _ProbeObserver(BaseObserver):
    """Routes every pushed frame to the probes watching its source, and every processed one to its processor's."""

    def __init__(self):
        super().__init__()
        self.probes: dict[tuple[int, FrameDirection | None], list[Probe]] = {}

    async def on_push_frame(self, data: FramePushed):
        for probe in self.probes.get((id(data.source), data.direction), ()):
            probe.add(data.frame)

    async def on_process_frame(self, data: FrameProcessed):
        for probe in self.probes.get((id(data.processor), None), ()):
            probe.add(data.frame)


class AgentHarness:
    """An agent running in process on the synthetic (or its own) transport."""

    def __init__(self, agent: Agent, *, transport: str | None = "synthetic", transport_params: dict | None = None,
                 start_timeout: float = 10.0, interruptions: bool = True, **worker_kwargs):
        self.agent = agent
        self.built: BuiltAgent = build_agent(agent, transport=_transport_component(agent, transport, transport_params),
                                             guard_interruptions=interruptions)
        self._observer = _ProbeObserver()
        observers = [self._observer, *worker_kwargs.pop("observers", [])]
        self.worker = self.built.worker(observers=observers, **worker_kwargs)
        self._start_timeout = start_timeout
        self._run_task: asyncio.Task | None = None

    @classmethod
    def from_file(cls, path: Path | str, **kwargs) -> "AgentHarness":
        """A harness for the agent in ``path``."""
        return cls(load_agent(path), **kwargs)

    @classmethod
    def from_text(cls, text: str, path: Path | str = "<test>", **kwargs) -> "AgentHarness":
        """A harness for agent YAML given as text."""
        return cls(load_agent_text(text, path), **kwargs)

    @property
    def processors(self) -> dict[str, FrameProcessor]:
        """The agent's processors by config id (``input``, ``output`` included)."""
        return self.built.processors

    @property
    def output(self):
        """The output transport (the synthetic one records what it wrote)."""
        return self.built.processors["output"]

    def probe(self, at: str, *, upstream: bool = False, processed: bool = False) -> Probe:
        """Watches what processor ``at`` pushes downstream (or upstream), or with ``processed`` what it processes.

        A processed frame is one that reached ``FrameProcessor.process_frame``
        (every pipecat processor calls it first), in either direction.
        """
        processor = self.built.processors[at]
        if processed:
            key, label = (id(processor), None), f"{at} processed"
        else:
            direction = FrameDirection.UPSTREAM if upstream else FrameDirection.DOWNSTREAM
            key, label = (id(processor), direction), f"{at} {'upstream' if upstream else 'downstream'}"
        probe = Probe(label)
        self._observer.probes.setdefault(key, []).append(probe)
        return probe

    async def inject(self, frame: Frame, *, at: str = INPUT, upstream: bool = False) -> None:
        """Delivers ``frame`` to processor ``at`` as if its neighbour had pushed it.

        At ``input`` (downstream) the frame enters as if the peer had sent it.
        """
        direction = FrameDirection.UPSTREAM if upstream else FrameDirection.DOWNSTREAM
        processor = self.built.processors[at]
        if at == INPUT and direction == FrameDirection.DOWNSTREAM and hasattr(processor, "inject"):
            await processor.inject(frame)
        else:
            await processor.queue_frame(frame, direction)

    async def inject_audio(self, pcm: bytes, *, sample_rate: int = USER_SAMPLE_RATE, realtime: bool = False) -> None:
        """Feeds 16-bit mono PCM at the input in 20 ms chunks (at real speed if ``realtime``)."""
        step = sample_rate * CHUNK_MS // 1000 * 2
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, offset in enumerate(range(0, len(pcm), step)):
            chunk = pcm[offset:offset + step]
            await self.inject(InputAudioRawFrame(audio=chunk, sample_rate=sample_rate, num_channels=1))
            if realtime:
                await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_MS / 1000 - loop.time()))
            else:
                await asyncio.sleep(0)

    async def __aenter__(self) -> "AgentHarness":
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker, frame):
            started.set()

        self._run_task = asyncio.create_task(run_worker(self.worker))
        waiter = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait({waiter, self._run_task}, timeout=self._start_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await self.stop()
            raise TimeoutError(f"agent {self.agent.spec.name} did not start within {self._start_timeout}s")
        return self

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Ends the agent (EndFrame, then cancel if it does not finish in ``timeout``)."""
        if not self._run_task or self._run_task.done():
            return
        await self.worker.queue_frame(EndFrame())
        try:
            await asyncio.wait_for(asyncio.shield(self._run_task), timeout)
        except TimeoutError:
            await self.worker.cancel(reason="test harness stop timed out")
            await asyncio.wait_for(self._run_task, timeout)

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def _transport_component(agent: Agent, transport: str | None, params: dict | None) -> Component | None:
    """The transport replacing the agent's own, keeping the agent's audio rates."""
    if transport is None or (transport == agent.transport.type.name and params is None):
        return None
    info = default_registry().get("transport", transport)
    if info is None:
        raise ValueError(f"unknown transport type {transport!r}")
    own = agent.transport.params
    rates = {k: getattr(own, k) for k in ("audio_in_sample_rate", "audio_out_sample_rate")
             if hasattr(own, k) and k in info.params.model_fields}
    return Component("transport", info, info.params.model_validate({**rates, **(params or {})}))
