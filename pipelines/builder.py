"""Builds a validated agent into a pipecat graph inside a pipecat worker.

The graph is exactly what a hand-written pipecat program would build
(``Pipeline`` with nested ``ParallelPipeline`` blocks), so building from YAML
costs nothing per frame at run time beyond the interruption guard
(``pipelines.interruptions``), which the builder attaches to every graph.
Factories get a ``pipelines.registry.BuildContext``.

The builder builds the graph the YAML describes, no more. What a caller
adds around it (pipecat's RTVI processor for a connecting client,
``pipelines.client_protocol.rtvi.for_client``; the server's settings gate,
``pipelines.server.session_graph``) comes in as ``additions``: steps that
change the ``GraphParts`` before they become a ``Pipeline``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import InterruptionFrame
from pipecat.pipeline.parallel_pipeline import ParallelPipeline
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from pipelines.audio import BOT_SAMPLE_RATE, USER_SAMPLE_RATE
from pipelines.conversation import ConversationKeeper
from pipelines.interruptions.guard import InterruptionGuard
from pipelines.interruptions.policy import apply_interruption_settings
from pipelines.observers import joined
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
        client_observer: the RTVI observer a served graph's worker runs
            (``pipelines.client_protocol.rtvi.for_client``); None for graphs built for no client.
    """

    agent: Agent
    transport_component: Component
    transport: BaseTransport
    processors: dict[str, FrameProcessor]
    pipeline: Pipeline
    llm_context: Any = None
    interruptions: InterruptionGuard | None = None
    client_observer: Any = None
    settings_gate: Any = None
    """The ``SettingsGate`` an addition placed after the LLM (the server's: ``pipelines.server.session_graph``)."""

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
            audio_in_sample_rate=getattr(p, "audio_in_sample_rate", USER_SAMPLE_RATE),
            audio_out_sample_rate=getattr(p, "audio_out_sample_rate", BOT_SAMPLE_RATE),
        )

    def worker(self, *, usage_metrics: bool = False, **kwargs) -> PipelineWorker:
        """A pipecat worker for this agent's pipeline.

        pipecat's default RTVI processor and idle timeout are off: the RTVI
        processor halves raw frame throughput (bench/overhead.py measures
        without it), so only a graph built for a client carries RTVI (its own
        processor, first in the pipeline, and ``client_observer``); and an
        agent waiting for its user is not idle. pipecat's turn tracker (for
        its tracing, which framegraph does not use) is off too, and the
        observers share one queue (``pipelines.observers``): each observer
        costs a queue hand-off per frame per hop. ``usage_metrics`` turns on
        pipecat's usage reports (tokens, characters, audio seconds: ``pipelines.usage``).
        """
        kwargs["observers"] = joined(kwargs.get("observers", []), host=self.client_observer)
        kwargs.setdefault("enable_turn_tracking", False)
        kwargs.setdefault("enable_rtvi", False)
        kwargs.setdefault("idle_timeout_secs", None)
        kwargs.setdefault("cancel_on_idle_timeout", False)
        kwargs.setdefault("name", self.agent.spec.name)
        params = self.params.model_copy(update={"enable_usage_metrics": usage_metrics})
        return PipelineWorker(self.pipeline, params=params, **kwargs)


@dataclass
class GraphParts:
    """The graph the YAML describes before it becomes a ``Pipeline``: what an addition (``build_agent(additions=)``) may change.

    Attributes:
        agent: what is built.
        steps: the top-level chain, in order (the pipeline's source comes before the first).
        processors: every processor by config id.
        llm_context: the context block's pipecat ``LLMContext``; None without a context block.
        keeper: the ``conversation:`` block's greeting and check-ins (first in ``steps``); None without one.
        client_observer: what the ``BuiltAgent``'s ``client_observer`` becomes.
        settings_gate: what the ``BuiltAgent``'s ``settings_gate`` becomes.
    """

    agent: Agent
    steps: list[FrameProcessor]
    processors: dict[str, FrameProcessor]
    llm_context: Any
    keeper: ConversationKeeper | None
    client_observer: Any = None
    settings_gate: Any = None


#: A step that changes the parts of a graph before it becomes a ``Pipeline`` (``build_agent(additions=)``).
Addition = Callable[[GraphParts], None]


class _Builder:
    def __init__(
        self, agent: Agent, transport_override: Component | None, peer: Any, guard_interruptions: bool,
        memory: Any = None, additions: Sequence[Addition] = (),
    ):
        self.agent = agent
        self.memory = memory
        self.additions = additions
        self.peer = peer
        self.guard_interruptions = guard_interruptions
        self.transport_component = transport_override or agent.transport
        tp = self.transport_component.params
        self.rates = (getattr(tp, "audio_in_sample_rate", USER_SAMPLE_RATE), getattr(tp, "audio_out_sample_rate", BOT_SAMPLE_RATE))
        self.processors: dict[str, FrameProcessor] = {}
        self.video_out = next(
            (v for c in agent.processors.values() if hasattr(c.params, "video_out") and (v := c.params.video_out())), None
        )

    def context(self, cid: str) -> BuildContext:
        return BuildContext(self.agent.spec, self.agent.config_dir, cid, *self.rates, peer=self.peer,
                            video_out=self.video_out, memory=self.memory)

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
        steps = self.chain(self.agent.steps)
        keeper = self.conversation()
        if keeper is not None:
            steps.insert(0, keeper)
        parts = GraphParts(self.agent, steps, self.processors, llm_context, keeper)
        for addition in self.additions:
            addition(parts)
        pipeline = Pipeline(parts.steps)
        guard = None
        if self.guard_interruptions:
            guard = InterruptionGuard(pipeline, {p: pid for pid, p in self.processors.items()})
        return BuiltAgent(self.agent, self.transport_component, transport, self.processors, pipeline, llm_context, guard,
                          parts.client_observer, parts.settings_gate)

    def conversation(self) -> ConversationKeeper | None:
        """The greeting and idle check-ins of the ``conversation:`` block, when it asks for any.

        It greets when the pipeline starts, unless an addition says a client
        will tell when it listens (``for_client``: on its ``client-ready``).
        """
        settings = self.agent.spec.conversation
        if settings.greeting is None and settings.idle is None:
            return None
        keeper = ConversationKeeper(settings, greet_on_start=True)
        if settings.idle is not None:  # validation made sure there is a context block
            self.processors[USER_CONTEXT].add_event_handler("on_user_turn_idle", keeper.on_user_turn_idle)
        return keeper

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
    agent: Agent,
    *,
    transport: Component | None = None,
    peer: Any = None,
    guard_interruptions: bool = True,
    memory: Any = None,
    additions: Sequence[Addition] = (),
) -> BuiltAgent:
    """Builds ``agent``; ``transport`` replaces the config's own (tests use the synthetic one).

    ``peer`` is the connection a transport's ``serve`` accepted for this
    participant; factories find it in ``BuildContext.peer``.

    ``guard_interruptions=False`` builds the plain pipecat graph, without the
    interruption guarantee: only tests and benchmarks comparing with pipecat want it.

    ``additions`` change the graph's parts, in order, before they become the
    pipeline: ``pipelines.client_protocol.rtvi.for_client`` makes a graph a
    client connects to speak pipecat's client protocol (RTVI); the server
    adds its settings gate too (``pipelines.server.session_graph``).

    ``memory`` is the session user's memory (``pipelines.sessions.memory``):
    factories find it in ``BuildContext.memory`` (the remember/forget tools,
    the scripted LLM's ``remember`` rules).
    """
    return _Builder(agent, transport, peer, guard_interruptions, memory, additions).build()


def prewarm_agent(agent: Agent) -> list[str]:
    """Calls each component type's ``prewarm`` hook (``TypeInfo.prewarm``) with the context its factory would get.

    Returns:
        The ids of the components warmed, in build order (transport, context, processors).
    """
    builder = _Builder(agent, None, None, guard_interruptions=False)
    warmed = []
    for component in (agent.transport, agent.context, *agent.processors.values()):
        if component is not None and component.type.prewarm is not None:
            component.type.prewarm(component.params, builder.context(component.id))
            warmed.append(component.id)
    return warmed
