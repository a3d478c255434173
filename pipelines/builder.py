"""Builds a validated agent into a pipecat graph inside a pipecat worker.

The graph is exactly what a hand-written pipecat program would build
(``Pipeline`` with nested ``ParallelPipeline`` blocks), so building from YAML
costs nothing per frame at run time beyond the interruption guard
(``pipelines.interruptions``), which the builder attaches to every graph.
Factories get a ``pipelines.registry.BuildContext``.
"""

from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import InterruptionFrame
from pipecat.pipeline.parallel_pipeline import ParallelPipeline
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from pipelines.interruptions.guard import InterruptionGuard
from pipelines.interruptions.policy import apply_interruption_settings
from pipelines.pipecat_compat import rename_processor
from pipelines.registry import BuildContext
from pipelines.spec import ASSISTANT_CONTEXT, INPUT, OUTPUT, USER_CONTEXT, Parallel, Step
from pipelines.validate import Agent, Component


@dataclass
class BuiltAgent:
    """A built agent: its transport, its processors by id and its pipeline.

    Attributes:
        agent: what was built.
        transport_component: the transport it was built with (the agent's own, or the override).
        transport: the pipecat transport; its ``input()``/``output()`` are the pipeline's ends.
        processors: every processor by config id (``input``, ``output``, the context's halves included).
        pipeline: the pipecat graph.
        llm_context: the context block's pipecat ``LLMContext``; None without a context block.
        interruptions: the interruption guarantee's guard; None when built
            without it (to compare with plain pipecat).
    """

    agent: Agent
    transport_component: Component
    transport: BaseTransport
    processors: dict[str, FrameProcessor]
    pipeline: Pipeline
    llm_context: Any = None
    interruptions: InterruptionGuard | None = None

    async def interrupt(self) -> int | None:
        """Interrupts the bot: every processor flushes, nothing said before comes out after.

        Returns:
            The interruption's epoch (the one it joined, when nothing was handled since the latest).
            Without the guard, None: it does what pipecat does for an
            ``InterruptionWorkerFrame`` (an ``InterruptionFrame`` enters at the top of the pipeline).
        """
        if self.interruptions is not None:
            return await self.interruptions.interrupt()
        await self.pipeline.queue_frame(InterruptionFrame())
        return None

    @property
    def params(self) -> PipelineParams:
        """Pipeline params carrying the sample rates of the transport it was built with."""
        p = self.transport_component.params
        return PipelineParams(
            audio_in_sample_rate=getattr(p, "audio_in_sample_rate", 16000),
            audio_out_sample_rate=getattr(p, "audio_out_sample_rate", 24000),
        )

    def worker(self, **kwargs) -> PipelineWorker:
        """A pipecat worker for this agent's pipeline.

        pipecat's RTVI processor and idle timeout are off unless asked for:
        the RTVI processor halves raw frame throughput (bench/overhead.py measures
        without it), and an
        agent waiting for its user is not idle.
        """
        kwargs.setdefault("enable_rtvi", False)
        kwargs.setdefault("idle_timeout_secs", None)
        kwargs.setdefault("cancel_on_idle_timeout", False)
        kwargs.setdefault("name", self.agent.spec.name)
        return PipelineWorker(self.pipeline, params=self.params, **kwargs)


class _Builder:
    def __init__(self, agent: Agent, transport_override: Component | None, peer: Any, guard_interruptions: bool):
        self.agent = agent
        self.peer = peer
        self.guard_interruptions = guard_interruptions
        self.transport_component = transport_override or agent.transport
        tp = self.transport_component.params
        self.rates = (getattr(tp, "audio_in_sample_rate", 16000), getattr(tp, "audio_out_sample_rate", 24000))
        self.processors: dict[str, FrameProcessor] = {}

    def context(self, cid: str) -> BuildContext:
        return BuildContext(self.agent.spec, self.agent.config_dir, cid, *self.rates, peer=self.peer)

    def make(self, component: Component) -> Any:
        return component.type.factory(component.params, self.context(component.id))

    def build(self) -> BuiltAgent:
        transport = self.make(self.transport_component)
        self.processors[INPUT] = transport.input()
        self.processors[OUTPUT] = transport.output()
        llm_context = None
        if self.agent.context:
            pair = self.make(self.agent.context)
            self.processors[USER_CONTEXT] = pair.user()
            self.processors[ASSISTANT_CONTEXT] = pair.assistant()
            llm_context = pair.user().context
            apply_interruption_settings(pair.user(), self.agent.spec.interruptions)
        for pid, component in self.agent.processors.items():
            self.processors[pid] = _label(self.make(component), pid)
        pipeline = Pipeline(self.chain(self.agent.steps))
        guard = None
        if self.guard_interruptions:
            guard = InterruptionGuard(pipeline, {p: pid for pid, p in self.processors.items()})
        return BuiltAgent(self.agent, self.transport_component, transport, self.processors, pipeline, llm_context, guard)

    def chain(self, steps: list[Step]) -> list[FrameProcessor]:
        return [self.step(s) for s in steps]

    def step(self, step: Step) -> FrameProcessor:
        if isinstance(step, Parallel):
            return ParallelPipeline(*[self.chain(branch) for branch in step.branches])
        return self.processors[step]


def _label(processor: FrameProcessor, pid: str) -> FrameProcessor:
    """Names a processor by its config id when its factory could not.

    Some pipecat processors (FrameFilter, FrameLogger) take no ``name``
    argument; logs and reports should still say ``tts`` rather than
    ``FrameFilter#3``.
    """
    if processor.name != pid:
        rename_processor(processor, pid)
    return processor


def build_agent(
    agent: Agent, *, transport: Component | None = None, peer: Any = None, guard_interruptions: bool = True
) -> BuiltAgent:
    """Builds ``agent``; ``transport`` replaces the config's own (tests use the synthetic one).

    ``peer`` is the connection a transport's ``serve`` accepted for this
    participant; factories find it in ``BuildContext.peer``.

    ``guard_interruptions=False`` builds the plain pipecat graph, without the
    interruption guarantee: only tests and benchmarks comparing with pipecat want it.
    """
    return _Builder(agent, transport, peer, guard_interruptions).build()
