"""Conformance fixtures: processors that break (or strain) the interruption contract on purpose.

They exist so that ``framegraph check``, the tests and ``bench/interruption.py``
can show a violation being caught and named, and the guard holding against
it. They are test code: ``register()`` adds them to the process's registry
(``tests/conftest.py`` does it for every test session, the bench for its
run); an installed framegraph never lists them.
"""

import asyncio

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    StartFrame,
    SystemFrame,
    TextFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pydantic import Field

from pipelines.interruptions import answering
from pipelines.registry import Registry, TypeInfo, default_registry
from pipelines.spec import Params


class SwallowParams(Params):
    delay_ms: float = Field(0.0, ge=0, le=10_000, description="work time spent on each data frame")


class SwallowInterruptions(FrameProcessor):
    """Forwards every frame except InterruptionFrame, which it drops unseen.

    It never hands the interruption to ``FrameProcessor.process_frame``, so
    its queue is not flushed and its in-flight work is not cancelled; in plain
    pipecat it also hides the interruption from every processor after it.
    """

    def __init__(self, *, delay_ms: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self._delay = delay_ms / 1000.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            return
        await super().process_frame(frame, direction)
        if self._delay and not isinstance(frame, SystemFrame):
            await asyncio.sleep(self._delay)
        await self.push_frame(frame, direction)


class NoOpFlush(SwallowInterruptions):
    """Hands InterruptionFrame to ``FrameProcessor.process_frame`` and forwards it, but its flush does nothing.

    Its ``_start_interruption`` (what pipecat runs on an interruption to
    flush the queue and cancel the in-flight frame) is overridden with
    nothing: the flush "runs" and its queued and in-flight work stay.
    """

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            await FrameProcessor.process_frame(self, frame, direction)
            await self.push_frame(frame, direction)
            return
        await super().process_frame(frame, direction)

    async def _start_interruption(self):
        """Flushes nothing."""


class DropUninterruptible(SwallowInterruptions):
    """Holds data frames in a buffer of its own, releasing one every ``delay_ms``; an interruption empties the buffer.

    Uninterruptible frames (end markers, function-call results) go with the
    rest: exactly what an interruption must never do.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._held: list[tuple[Frame, FrameDirection]] = []
        self._release_task: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await FrameProcessor.process_frame(self, frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._held.clear()
            await self.push_frame(frame, direction)
        elif isinstance(frame, SystemFrame):
            await self.push_frame(frame, direction)
            if isinstance(frame, (EndFrame, CancelFrame)) and self._release_task:
                await self.cancel_task(self._release_task)
        else:
            self._held.append((frame, direction))
            if self._release_task is None:
                self._release_task = self.create_task(self._release())

    async def _release(self):
        while True:
            await asyncio.sleep(self._delay or 0.01)
            if self._held:
                await self.push_frame(*self._held.pop(0))


class StreamingTTSParams(Params):
    busy_ms: float = Field(0.0, ge=0, le=10_000,
                           description="how long its input task stays busy when an interruption comes, before it flushes")
    drops_cut_work: bool = Field(True, description="false: its audio task goes on with the cut text after the interruption")
    word_ms: float = Field(200.0, gt=0, le=2_000, description="audio per word")
    says_what_it_speaks: bool = Field(True, description="false: its audio does not say which text it speaks (untraceable)")


class StreamingTTS(FrameProcessor):
    """A streaming TTS: each text frame becomes ``word_ms`` of tone per word, pushed by an audio task of its own.

    The audio task pushes 20 ms chunks at twice real time, as a streaming
    service receives them; each chunk says which text it speaks
    (``pipelines.interruptions.answering``), as a TTS with a task of its own
    must (``says_what_it_speaks: false``: an untraceable one, which only
    ``framegraph check`` can catch). Well behaved (``drops_cut_work``), it drops the cut
    text's audio once it has processed the interruption, as pipecat's TTS
    services do; ``busy_ms`` keeps its input task busy before then (a slow
    service: what its audio task pushes meanwhile is for cut text); with
    ``drops_cut_work: false`` it never drops it (a leaky service).
    """

    CHUNK_MS = 20

    def __init__(self, *, busy_ms: float = 0.0, drops_cut_work: bool = True, word_ms: float = 200.0,
                 says_what_it_speaks: bool = True, sample_rate: int = 24000, **kwargs):
        super().__init__(**kwargs)
        self._traced = says_what_it_speaks
        self._busy = busy_ms / 1000.0
        self._drops = drops_cut_work
        self._word_ms = word_ms
        self._rate = sample_rate
        self._texts: asyncio.Queue[TextFrame] = asyncio.Queue()
        self._audio_task: asyncio.Task | None = None
        self._generation = 0
        n = sample_rate * self.CHUNK_MS // 1000
        self._chunk = (np.sin(np.arange(n) * 2 * np.pi * 330 / sample_rate) * 6000).astype(np.int16).tobytes()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame) and self._busy:
            await asyncio.sleep(self._busy)
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._audio_task = self.create_task(self._speak())
        elif isinstance(frame, (EndFrame, CancelFrame)) and self._audio_task:
            await self.cancel_task(self._audio_task)
        elif isinstance(frame, InterruptionFrame) and self._drops:
            self._generation += 1
            while not self._texts.empty():
                self._texts.get_nowait()
        if isinstance(frame, TextFrame) and direction is FrameDirection.DOWNSTREAM:
            self._texts.put_nowait(frame)
        await self.push_frame(frame, direction)

    async def _speak(self):
        while True:
            text = await self._texts.get()
            generation = self._generation
            chunks = int(len(text.text.split()) * self._word_ms / self.CHUNK_MS)
            for _ in range(chunks):
                if generation != self._generation:
                    break
                audio = TTSAudioRawFrame(self._chunk, self._rate, 1)
                await self.push_frame(answering(audio, text) if self._traced else audio)
                await asyncio.sleep(self.CHUNK_MS / 2000)


class ResendCutText(FrameProcessor):
    """Forwards everything; while it handles an interruption it pushes the text it forwarded since the last one again.

    Each text goes out as a new frame: a copy of the cut reply, made anew
    after the interruption's boundary. A processor after the LLM that
    "replays" what was cut is what this stands for: the guard must keep the
    copies from being spoken, and ``framegraph check`` must name it (and not
    the TTS that is handed them).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._texts: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            texts, self._texts = self._texts, []
            for text in texts:
                await self.push_frame(TextFrame(text))
        elif isinstance(frame, TextFrame) and direction is FrameDirection.DOWNSTREAM:
            self._texts.append(frame.text)
        await self.push_frame(frame, direction)


class DropAllUninterruptible(FrameProcessor):
    """Forwards every frame except the uninterruptible ones, which it drops (all of them, undeclared)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if frame.interruptible or isinstance(frame, SystemFrame):
            await self.push_frame(frame, direction)


class ConsumeUninterruptible(DropAllUninterruptible):
    """The same filter, whose type declares that it consumes the uninterruptible frames it is given."""

    consumes_uninterruptible = True


class NoParams(Params):
    pass


#: A reply long enough to be cut mid-stream.
STORY = " ".join(["once upon a time a small robot learned to speak"] * 4)


#: What the scripted LLM answers to a question barged in over the story: one word, ``word_ms`` of tone.
QUESTION, ANSWER = "what time is it", "Noon."


def streaming_agent_yaml(*, busy_ms: float, drops_cut_work: bool, reply: str = STORY) -> str:
    """An agent whose scripted LLM answers ``reply`` (and ``ANSWER`` to ``QUESTION``) through ``streaming_tts_fixture``.

    The tests and ``bench/interruption.py`` measure the audio of cut text on it
    for a well-behaved, a slow (``busy_ms``) and a leaky (``drops_cut_work: false``) TTS.
    """
    return f"""version: 1
name: streaming
transport: {{type: synthetic, audio_out_sample_rate: 16000}}
context: {{type: llm_context, vad: null, turn: {{stop: speech_timeout, speech_timeout: 0.05}}}}
processors:
  llm: {{type: scripted, token_delay_ms: 0, rules: [{{match: "{QUESTION}", reply: "{ANSWER}"}}], fallback: "{reply}"}}
  tts: {{type: streaming_tts_fixture, busy_ms: {busy_ms}, drops_cut_work: {str(drops_cut_work).lower()}}}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""


TYPES = [
    TypeInfo(
        "processor", "swallow_interruptions", SwallowParams,
        lambda p, ctx: SwallowInterruptions(delay_ms=p.delay_ms, name=ctx.processor_id),
        "conformance fixture: drops InterruptionFrame without flushing (framegraph check must fail)",
    ),
    TypeInfo(
        "processor", "noop_flush", SwallowParams,
        lambda p, ctx: NoOpFlush(delay_ms=p.delay_ms, name=ctx.processor_id),
        "conformance fixture: processes InterruptionFrame but its flush does nothing (framegraph check must fail)",
    ),
    TypeInfo(
        "processor", "drop_uninterruptible", SwallowParams,
        lambda p, ctx: DropUninterruptible(delay_ms=p.delay_ms, name=ctx.processor_id),
        "conformance fixture: empties its own buffer on an interruption, uninterruptible frames too (check must fail)",
    ),
    TypeInfo(
        "processor", "streaming_tts_fixture", StreamingTTSParams,
        lambda p, ctx: StreamingTTS(busy_ms=p.busy_ms, drops_cut_work=p.drops_cut_work, word_ms=p.word_ms,
                                    says_what_it_speaks=p.says_what_it_speaks,
                                    sample_rate=ctx.audio_out_sample_rate, name=ctx.processor_id),
        "conformance fixture: a streaming TTS with an audio task of its own; slow (busy_ms) or leaky (drops_cut_work: false)",
    ),
    TypeInfo(
        "processor", "resend_cut_text", NoParams, lambda p, ctx: ResendCutText(name=ctx.processor_id),
        "conformance fixture: pushes the text it forwarded again while it handles an interruption (check must fail)",
    ),
    TypeInfo(
        "processor", "drop_all_uninterruptible", NoParams, lambda p, ctx: DropAllUninterruptible(name=ctx.processor_id),
        "conformance fixture: drops every uninterruptible frame without declaring it (check must fail)",
    ),
    TypeInfo(
        "processor", "consume_uninterruptible", NoParams, lambda p, ctx: ConsumeUninterruptible(name=ctx.processor_id),
        "conformance fixture: a filter whose type declares it consumes uninterruptible frames (check passes it)",
    ),
]


def register(registry: Registry | None = None) -> None:
    """Adds the fixtures to ``registry`` (the process's own by default), once."""
    registry = registry or default_registry()
    for info in TYPES:
        if registry.get(info.kind, info.name) is None:
            registry.add(info)
