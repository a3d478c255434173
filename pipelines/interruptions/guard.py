"""The interruption guarantee: every processor, exactly once, nothing stale after it.

pipecat passes an ``InterruptionFrame`` from processor to processor, and that
leaves gaps (docs/interruptions.md): the originator's in-flight frame is not cancelled,
frames still in a processor's input queue overtake the flush and survive it,
an interruption born inside a ``ParallelPipeline`` branch never reaches its
sibling branches, a ``SyncParallelPipeline`` holds it back or delivers it
twice, and one processor that swallows it hides it from everything after it.

framegraph closes them the way GStreamer flushes a pipeline: out of band.
``InterruptionGuard`` is attached by the builder to every graph it builds.
Whoever starts an interruption (a processor pushing an ``InterruptionFrame``,
e.g. the user aggregator's turn strategy through ``broadcast_interruption()``;
an ``InterruptionFrame`` arriving from outside the graph, e.g. the worker's
answer to an ``InterruptionWorkerFrame``; or ``BuiltAgent.interrupt()``), the
guard

1. draws a boundary in pipecat's global frame-id counter: every frame created
   before it was produced before the interruption;
2. puts one ``InterruptionFrame`` straight into the input queue of every
   processor of the graph, in graph order, without yielding to the event loop
   (upstream of the originator it travels upstream, elsewhere downstream), so
   each processor runs its own flush (``FrameProcessor._start_interruption``
   and whatever its class adds) exactly once; copies that processors forward
   to their neighbours are recognised and dropped;
3. from then on drops every interruptible, non-system frame produced before
   the boundary wherever it turns up: when a processor dequeues it, when it
   is pushed, when an output transport would write it; and drops what a
   processor pushes while it is still working on such a frame;
   and, since every frame carries the turn it answers (the id of the frame
   that started the work it is part of, carried from the text to the audio
   made from it), it drops the work of every turn the interruption cut
   wherever it appears, whoever made it and whenever (a TTS's own audio task
   going on with cut text, even once the next turn has started);
4. once an output has processed the interruption, asks it to clear its
   buffers (``InterruptibleOutput.clear_buffer``: what it still queues, and
   the client's).

Uninterruptible frames (``frame.interruptible`` False) and system frames are
never dropped, as in pipecat, and neither are the user's transcripts
(``NEVER_STALE``). Two triggers with nothing produced between them
are one interruption. Each processor's part is counted in ``ProcessorStats``,
which ``framegraph check`` reports.
"""

import asyncio
import itertools
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace

from pipecat.frames.frames import (
    EagerTranscriptionFrame,
    Frame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    SystemFrame,
    TranscriptionFrame,
    TranslationFrame,
    UserBackchannelFrame,
)
from pipecat.pipeline.parallel_pipeline import ParallelPipeline
from pipecat.pipeline.pipeline import Pipeline, PipelineSink, PipelineSource
from pipecat.processors.aggregators.llm_response_universal import LLMAssistantAggregator
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.utils.utils import obj_id

from pipelines import pipecat_compat as compat
from pipelines.interruptions.output import DroppedReport, clear_buffer_of

#: Attribute marking the InterruptionFrames a guard sent, with their epoch.
EPOCH_ATTR = "framegraph_epoch"

#: Attribute carrying the turn a frame answers: the id of the frame that started the work it is part of.
#: A frame without it answers its own turn (its own id).
TURN_ATTR = "framegraph_turn"

#: How many TTS audio contexts a guarded TTS remembers the turn of (oldest forgotten first).
TTS_CONTEXTS = 256

#: How many interruptions the guard (and each processor's stats) remember: memory stays flat over a session.
HISTORY = 64

#: How many frame ids a guarded ParallelPipeline remembers at most to drop the copies its branches push out.
PARALLEL_SEEN_IDS = 65_536

#: Frames no interruption makes stale: system frames, and what the user said.
#: An interruption cancels what the bot was doing; a transcript still on its
#: way to the user aggregator (often of the very words that interrupted) is
#: the user's, and dropping it would lose them.
NEVER_STALE = (
    SystemFrame,
    TranscriptionFrame,
    InterimTranscriptionFrame,
    EagerTranscriptionFrame,
    TranslationFrame,
    UserBackchannelFrame,
)

_unnamed = itertools.count(1)


@dataclass
class ProcessorStats:
    """What one processor did about the interruptions of its graph.

    Attributes:
        name: the processor's config id (or pipecat name for inner blocks).
        seen: the epochs of the latest interruptions it processed (``HISTORY`` of them), in order.
        received: how many interruptions it processed in all.
        flushes: times its own flush (``FrameProcessor._start_interruption``) ran.
        flushed: frames its flushes removed from its queue, by type (the user's transcripts are kept, not flushed).
        cancelled: in-flight interruptible frames its flushes cancelled.
        no_op_flushes: flushes that left interruptible frames in its queue, or its in-flight
            interruptible frame running: the flush ran but did not flush (a conformance violation).
        dropped_in: stale frames dropped as it dequeued them, before it could process them, by type.
        dropped_out: stale frames it pushed, dropped before reaching anyone.
        late_out: of those, the ones it made (not given) for a cut turn after it had processed the
            interruption: in-flight work its flush should have cancelled, or work for a cut turn
            that its own tasks go on making (a conformance violation).
        reaction_out: of those, the ones it made while processing the interruption itself: work
            for the cut turn made anew (re-sent cut text, say), which would be heard (a violation).
        dropped_writes: stale audio or images an output transport was kept from writing.
        cleared: what an output's ``clear_buffer`` dropped, summed over its interruptions.
        duplicates: forwarded copies of an interruption it already had, not delivered again.
    """

    name: str
    seen: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    received: int = 0
    flushes: int = 0
    flushed: Counter = field(default_factory=Counter)
    cancelled: int = 0
    no_op_flushes: int = 0
    dropped_in: Counter = field(default_factory=Counter)
    dropped_out: int = 0
    late_out: int = 0
    reaction_out: int = 0
    dropped_writes: int = 0
    duplicates: int = 0
    cleared: DroppedReport = field(default_factory=DroppedReport)


@dataclass(frozen=True)
class Interruption:
    """One interruption: its epoch, its frame-id boundary (it cuts every turn below it), when and where it started."""

    epoch: int
    boundary: int
    at: float  # time.monotonic()
    origin: str  # the processor that started it, "api", or "outside" (an InterruptionFrame from outside the graph)


class _Member:
    """One guarded processor: intercepts its process_frame, push_frame, flush (and an output's writes).

    The interceptors are plain functions that hand back the wrapped coroutine
    on the fast path, so a fresh frame costs a few reads of the member's own
    attributes and no extra coroutine. The guard keeps each member's copy of
    what the fast path needs (``boundary``, ``watch``) up to date, so nothing
    there reads the guard; the frame in flight is the one pipecat itself
    tracks (``pipecat_compat.current_frame``), read only for frames the
    processor makes after an interruption.
    """

    def __init__(self, guard: "InterruptionGuard", processor: FrameProcessor, name: str, ancestors: frozenset[int]):
        self.guard = guard
        self.processor = processor
        self.ancestors = ancestors
        self.stats = ProcessorStats(name)
        #: The guard's boundary: every turn (and frame) with a lower id was cut by the latest interruption.
        self.boundary = 0
        #: Whether the guard still waits for the first fresh frame since the latest interruption.
        self.watch = True
        # The in-flight frame whose processing started the latest interruption: spared.
        self.exempt: Frame | None = None
        self.received = 0  # epoch of the latest interruption it started processing
        self.handled = 0  # epoch of the latest interruption it finished processing
        #: The task processing an interruption while it does: what it makes then answers the cut work.
        self.reacting: asyncio.Task | None = None
        #: The assistant aggregator's answer to an interruption is its record of what was heard, not cut work.
        self.records = isinstance(processor, LLMAssistantAggregator)
        if isinstance(processor, ParallelPipeline):
            compat.bound_parallel_seen_ids(processor, PARALLEL_SEEN_IDS)
        own = compat.intercept(
            processor, process_frame=self.process_frame, push_frame=self.push_frame,
            start_interruption=self.start_interruption,
        )
        self._own_process, self._own_push, self._own_flush = (
            own.process_frame, own.push_frame, own.start_interruption)
        #: A TTS's audio contexts by id, with the turn of the text that opened each (its audio answers that).
        self.contexts: OrderedDict[str, int] | None = None
        if isinstance(processor, TTSService):
            self.contexts = OrderedDict()
            self._own_create_context = processor.create_audio_context
            processor.create_audio_context = self.create_audio_context
        self.clear_buffer = None
        if isinstance(processor, BaseOutputTransport):
            self._own_write_audio, self._own_write_video = compat.intercept_writes(
                processor, write_audio=self.write_audio_frame, write_video=self.write_video_frame)
            self.clear_buffer = clear_buffer_of(processor)

    def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, SystemFrame):
            if isinstance(frame, InterruptionFrame):
                return self._interruption(frame, direction)
            return self._own_process(frame, direction)
        # A frame given to the processor keeps its turn: a frame no one stamped answers its own.
        turn = frame.__dict__.setdefault(TURN_ATTR, frame.id)
        if turn < self.boundary and frame is not self.exempt and _cuttable(frame):
            self.stats.dropped_in[type(frame).__name__] += 1
            return _nothing()
        if self.watch:
            self.guard.note_fresh(frame)
        return self._own_process(frame, direction)

    async def _interruption(self, frame: InterruptionFrame, direction: FrameDirection):
        """Processes the guard's InterruptionFrame once; a copy forwarded by a neighbour, or one from
        outside the graph (which starts a new interruption), goes no further."""
        epoch = getattr(frame, EPOCH_ATTR, None)
        if epoch is None:
            await self.guard.interrupt(source="outside")
        elif epoch <= self.received:
            self.stats.duplicates += 1
        else:
            self.received = epoch
            self.stats.seen.append(epoch)
            self.stats.received += 1
            self.reacting = asyncio.current_task()
            try:
                await self._own_process(frame, direction)
            finally:
                self.reacting = None
            if self.clear_buffer is not None:
                self.stats.cleared += await self.clear_buffer()
            self.handled = epoch

    def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM):
        if isinstance(frame, SystemFrame):
            if isinstance(frame, InterruptionFrame) and not hasattr(frame, EPOCH_ATTR):
                return self.guard.interrupt(origin=self)
        else:
            turn = frame.__dict__.get(TURN_ATTR)
            if turn is None:  # a frame it makes: it answers what the processor was working on
                turn = frame.__dict__[TURN_ATTR] = self.turn_of_made(frame) if self.boundary else frame.id
            if turn < self.boundary and _cuttable(frame):
                # Made since the interruption for a turn it cut: new cut work, by the processor pushing it first.
                return self._cut_push(new=frame.id >= self.boundary)
        if self.watch:
            self.guard.note_fresh(frame)
        return self._own_push(frame, direction)

    def _cut_push(self, *, new: bool):
        """Drops a pushed frame of a cut turn, counting what new cut work says about the processor."""
        self.stats.dropped_out += 1
        if new and self.reacting is not None and asyncio.current_task() is self.reacting:
            self.stats.reaction_out += 1
        elif new and self.handled == self.guard.epoch:
            self.stats.late_out += 1
        return _nothing()

    def turn_of_made(self, frame: Frame) -> int:
        """The turn a frame the processor makes answers (see docs/interruptions.md, "Turns").

        - made while processing the interruption: the work it cut (the assistant aggregator's
          record of what was heard excepted);
        - made by the process task while it works on a frame: that frame's turn, when an
          interruption may cut that frame (the user's words, system and uninterruptible frames
          start no cut work);
        - a TTS's audio, from whichever task: the turn of the text that opened its audio context;
        - anything else (a timer's greeting or check-in, a tool's result, an idle pose): its own.
        """
        task = asyncio.current_task()
        if self.reacting is not None and task is self.reacting:
            return frame.id if self.records else self.boundary - 1
        work = self.work_turn(task)
        if work is not None:
            return work
        if self.contexts:
            context_id = getattr(frame, "context_id", None) or self.processor.get_active_audio_context_id()
            turn = self.contexts.get(context_id)
            if turn is not None:
                return turn
        return frame.id

    def work_turn(self, task: asyncio.Task | None) -> int | None:
        """The turn of the frame ``task`` is working on, if it is the process task and an interruption may cut that frame."""
        if task is None or task is not compat.process_task(self.processor):
            return None
        current = compat.current_frame(self.processor)
        if current is None or current is self.exempt or not _cuttable(current):
            return None
        return current.__dict__.get(TURN_ATTR, current.id)

    async def create_audio_context(self, context_id: str):
        """A TTS opens an audio context: its audio answers the turn of the text being spoken."""
        turn = self.work_turn(asyncio.current_task())
        if turn is not None:
            self.contexts[context_id] = turn
            self.contexts.move_to_end(context_id)
            if len(self.contexts) > TTS_CONTEXTS:
                self.contexts.popitem(last=False)
        else:
            self.contexts.pop(context_id, None)
        return await self._own_create_context(context_id)

    def in_flight(self) -> Frame | None:
        """The frame the processor is working on, when the caller is the task working on it."""
        if asyncio.current_task() is not compat.process_task(self.processor):
            return None
        return compat.current_frame(self.processor)

    async def start_interruption(self):
        """The processor's own flush, counted; the frame that started the interruption is spared."""
        processor = self.processor
        queued = compat.queued_frames(processor)
        inflight = compat.current_frame(processor)
        task = compat.process_task(processor)
        spared = inflight is not None and (inflight is self.exempt or isinstance(inflight, NEVER_STALE))
        # pipecat's flush keeps uninterruptible frames in place: the user's transcripts (queued, or in
        # flight) are made so for its duration, so they stay where they were and reach the context.
        kept_whole = [f for f in queued if f.interruptible and isinstance(f, NEVER_STALE)]
        if spared and inflight.interruptible:
            kept_whole.append(inflight)
        for f in kept_whole:
            f.interruptible = False
        try:
            await self._own_flush()
        finally:
            for f in kept_whole:
                f.interruptible = True
        self.stats.flushes += 1
        left = compat.queued_frames(processor)
        kept = {id(f) for f in left}
        self.stats.flushed.update(type(f).__name__ for f in queued if id(f) not in kept)
        cancelled = inflight is not None and inflight.interruptible and not spared
        if cancelled:
            self.stats.cancelled += 1
        still_running = cancelled and compat.process_task(processor) is task and compat.current_frame(processor) is inflight
        was_queued = {id(f) for f in queued}
        if still_running or any(f.interruptible and not isinstance(f, NEVER_STALE) and id(f) in was_queued
                                for f in left):
            self.stats.no_op_flushes += 1

    async def write_audio_frame(self, frame) -> bool:
        if self.stale_output(frame):
            return False
        return await self._own_write_audio(frame)

    async def write_video_frame(self, frame) -> bool:
        if self.stale_output(frame):
            return False
        return await self._own_write_video(frame)

    def stale_output(self, frame: Frame) -> bool:
        """Whether an output transport must not write ``frame``.

        Until the output has processed the latest interruption, nothing
        interruptible starts playing: chunks its media sender cut before the
        boundary are cut, and so is whatever its in-flight work cuts after.
        """
        stale = frame.interruptible and (self.guard.is_cut(frame) or self.handled < self.guard.epoch)
        if stale:
            self.stats.dropped_writes += 1
        return stale


def turn_free(frame: Frame) -> Frame:
    """Marks ``frame`` as answering no earlier input (a turn of its own), and returns it.

    A frame a processor makes while working on a frame answers that frame's
    turn, and so does a TTS's audio for the text it speaks. A processor that
    makes, while working on something, a frame that answers nothing of it
    (an avatar easing to neutral as it processes the interruption) marks it:
    an interruption then cuts it only if it was made before it.
    """
    frame.__dict__[TURN_ATTR] = frame.id
    return frame


def answering(frame: Frame, source: Frame) -> Frame:
    """Marks ``frame`` as answering the turn ``source`` answers, and returns it.

    What a processor's own task makes for a frame it was given (a streaming
    TTS's audio task speaking queued text) cannot be traced by the guard: the
    task says what it answers, so that an interruption that cut ``source``
    cuts ``frame`` too, whenever it is made.
    """
    frame.__dict__[TURN_ATTR] = turn_of(source)
    return frame


def turn_of(frame: Frame) -> int:
    """The turn ``frame`` answers: the id of the frame that started its work (its own id when none did)."""
    return frame.__dict__.get(TURN_ATTR, frame.id)


def _cuttable(frame: Frame) -> bool:
    """Whether an interruption cuts ``frame`` when it belongs to an interrupted turn."""
    return frame.interruptible and not isinstance(frame, NEVER_STALE)


async def _nothing() -> None:
    """What a dropped frame's process_frame or push_frame comes to."""


class InterruptionGuard:
    """Keeps the interruption guarantee for one pipecat graph (see the module docstring).

    Args:
        root: the graph (a ``Pipeline``; nested parallel blocks are walked).
        names: config ids of the processors, for stats and reports.
    """

    def __init__(self, root: FrameProcessor, names: dict[FrameProcessor, str] | None = None):
        names = {id(p): n for p, n in (names or {}).items()}
        self.members: list[_Member] = []
        for processor, ancestors in _layout(root, frozenset()):
            name = names.get(id(processor)) or f"{type(processor).__name__}#{next(_unnamed)}"
            self.members.append(_Member(self, processor, name, ancestors))
        self.epoch = 0
        #: Frames whose id is below this were created before the latest interruption.
        self.boundary = 0
        #: The latest interruptions (``HISTORY`` of them), in order.
        self.history: deque[Interruption] = deque(maxlen=HISTORY)
        #: Whether anything an interruption would cut was produced since the latest one.
        self.fresh = False

    @property
    def stats(self) -> dict[str, ProcessorStats]:
        """Each guarded processor's stats by name, in graph order."""
        return {m.stats.name: m.stats for m in self.members}

    def is_cut(self, frame: Frame) -> bool:
        """Whether the latest interruption cut ``frame``: it may be cut, and it answers a turn older than the boundary."""
        return _cuttable(frame) and frame.__dict__.get(TURN_ATTR, frame.id) < self.boundary

    def note_fresh(self, frame: Frame) -> None:
        """Remembers that something an interruption would cut exists since the latest one."""
        if frame.interruptible and not isinstance(frame, SystemFrame):
            self.fresh = True
            for member in self.members:
                member.watch = False

    async def interrupt(self, origin: _Member | None = None, *, source: str = "api") -> int:
        """Starts an interruption (or joins the one just started); returns its epoch.

        Args:
            origin: the guarded processor that asked for it, if any; processors
                upstream of it get the interruption travelling upstream.
            source: who asked, when no processor of the graph did.
        """
        if self.epoch and not self.fresh:
            # Joined: nothing was handled since the latest one, but what was created since (a frame
            # queued at the worker or at a processor meanwhile) is cut by this trigger too.
            self._cut(new_epoch=False)
            self.history[-1] = replace(self.history[-1], boundary=self.boundary)
            if origin is not None and origin.exempt is None:
                origin.exempt = origin.in_flight()
            return self.epoch
        self.epoch += 1
        self._cut(new_epoch=True)
        self.fresh = False
        at = time.monotonic()
        self.history.append(
            Interruption(self.epoch, self.boundary, at, origin.stats.name if origin else source))
        if origin is not None:
            origin.exempt = origin.in_flight()
        down, up = InterruptionFrame(), InterruptionFrame()
        down.broadcast_sibling_id, up.broadcast_sibling_id = up.id, down.id
        setattr(down, EPOCH_ATTR, self.epoch)
        setattr(up, EPOCH_ATTR, self.epoch)
        upstream = origin.ancestors if origin is not None else frozenset()
        for member in self.members:
            if id(member.processor) in upstream:
                await member.processor.queue_frame(up, FrameDirection.UPSTREAM)
            else:
                await member.processor.queue_frame(down, FrameDirection.DOWNSTREAM)
        return self.epoch

    def _cut(self, *, new_epoch: bool) -> None:
        """Draws a new boundary, in every member: every turn started so far is cut (a new epoch spares no frame yet)."""
        self.boundary = obj_id()
        for member in self.members:
            member.boundary, member.watch = self.boundary, True
            if new_epoch:
                member.exempt = None


def _layout(processor: FrameProcessor, before: frozenset[int]) -> list[tuple[FrameProcessor, frozenset[int]]]:
    """The processors to guard under ``processor``, in graph order, each with the ids of those upstream of it.

    A ``Pipeline`` is a series of steps; any other compound (``ParallelPipeline``,
    ``SyncParallelPipeline``) is guarded itself, for its own queue, and its
    branches run in parallel after it. Pipeline sources and sinks are plumbing
    in direct mode, with no queue of their own.
    """
    if isinstance(processor, (PipelineSource, PipelineSink)):
        return []
    if isinstance(processor, Pipeline):
        laid: list[tuple[FrameProcessor, frozenset[int]]] = []
        for step in processor.processors:
            placed = _layout(step, before)
            laid.extend(placed)
            before = before | {id(p) for p, _ in placed}
        return laid
    laid = [(processor, before)]
    inside = before | {id(processor)}
    for branch in processor.processors:
        laid.extend(_layout(branch, inside))
    return laid


def guard_graph(root: FrameProcessor, names: dict[FrameProcessor, str] | None = None) -> InterruptionGuard:
    """Attaches the interruption guarantee to a pipecat graph built by hand or by the builder."""
    return InterruptionGuard(root, names)
