"""The interruption conformance scenario that ``framegraph check`` runs against any YAML agent.

The agent runs on the synthetic transport. First a bot-like stream (text,
audio, uninterruptible markers) flows from the input and the API interrupts
it mid-way. Then, for agents with a context block, the user speaks, the bot
starts answering and the user barges in mid-LLM, and again mid-TTS; the
user's speech enters as VAD events and a final transcript at the user
aggregator, so the check does not depend on what the STT hears. The report
says per processor whether it processed each interruption, how many times,
what its flush removed, what stale frames the guard dropped around it, and
whether anything stale came out; the output's line says how much audio made
before an interruption played after it. Any violation names its processor
and makes the command exit non-zero.
"""

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from pipecat.frames.frames import (
    AudioRawFrame,
    DataFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.filters.frame_filter import FrameFilter

from pipelines.audio import USER_SAMPLE_RATE
from pipelines.interruptions.guard import NEVER_STALE, Interruption, ProcessorStats, turn_of
from pipelines.spec import OUTPUT, USER_CONTEXT
from pipelines.testing import AgentHarness, Probe
from pipelines.validate import Agent

#: Attribute of a processor type that declares it consumes the uninterruptible frames it is given (a filter):
#: only such a type may forward none of the check's markers.
CONSUMES_UNINTERRUPTIBLE = "consumes_uninterruptible"
#: What the user says to get a long answer (a scripted LLM's fallback is one too).
REQUEST = "tell me a story"
SETTLE_SECS = 0.5  # after a trigger: long enough for in-flight work to be cancelled or to leak
WAIT_SECS = 6.0  # longest wait for the bot to start answering (an error upstream ends it sooner)


@dataclass
class ConformanceMarker(DataFrame):
    """An uninterruptible frame the stream carries; no interruption may drop it."""

    n: int = 0
    interruptible: bool = field(default=False, init=False)


@dataclass
class ProcessorReport:
    """One processor's line of the report."""

    name: str
    stats: ProcessorStats
    processed_interruptions: int
    stale_processed: list[str]
    markers: tuple[int, int] = (0, 0)  # uninterruptible markers it processed, and pushed on
    violations: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """The whole report for one agent."""

    agent: str
    interruptions: list[Interruption]
    processors: list[ProcessorReport]
    audio_after_ms: list[float]  # per interruption: audio made before it or for the text it cut, played after it
    markers: tuple[int, int]  # uninterruptible markers the output processed, markers sent
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


class _Scenario:
    def __init__(self, h: AgentHarness):
        self.h = h
        self.notes: list[str] = []
        self.violations: list[str] = []
        self.markers_sent = 0
        self._asked = 0.0  # when the user last finished asking
        #: After the API's interruption of the stream, nothing new is asked for SETTLE_SECS: (start, end).
        self.quiet: tuple[float, float] | None = None
        self.processed = {pid: h.probe(pid, processed=True) for pid in h.processors}
        self.pushed = {pid: h.probe(pid) for pid in h.processors}
        self.errors = [h.probe(pid, upstream=True) for pid in h.processors]
        self.rate = h.built.params.audio_out_sample_rate
        settings = h.agent.spec.interruptions
        self.min_words, self.min_speech = settings.min_words, settings.min_speech_secs
        self.user_may_interrupt = settings.enabled

    @property
    def guard(self):
        return self.h.built.interruptions

    async def stream_then_interrupt(self) -> None:
        """A bot-like stream from the input, interrupted through the API once audio plays (or after 1 s)."""
        tone = (np.sin(np.arange(self.rate // 50) * 2 * np.pi * 440 / self.rate) * 8000).astype(np.int16).tobytes()
        start = time.monotonic()
        for i in range(40):
            await self.h.inject(TextFrame(f"word{i} "))
            await self.h.inject(TTSAudioRawFrame(tone, self.rate, 1))
            if i % 8 == 0:
                await self.h.inject(ConformanceMarker(n=i))
                self.markers_sent += 1
            await asyncio.sleep(0.002)
        await self._until(lambda: self._audio_since(start), 1.0)
        await self.h.built.interrupt()
        cut = time.monotonic()
        await asyncio.sleep(SETTLE_SECS)
        self.quiet = (cut, time.monotonic())

    async def user_turns_with_barge_ins(self) -> None:
        """The user asks, the bot answers, the user barges in mid-LLM; asks again, barges in mid-TTS."""
        await self.say(REQUEST)
        if await self._answer(lambda: self._pushed_since(LLMTextFrame, self._asked)):
            await self.barge_in("mid-LLM")
        else:
            self.notes.append("the bot did not start answering; barge-in mid-LLM skipped")
        await self.say(REQUEST, started=True)
        if await self._answer(lambda: self._audio_since(self._asked)):
            await self.barge_in("mid-TTS")
            await self.say("thank you", started=True)
        else:
            self.notes.append("the bot did not speak; barge-in mid-TTS skipped")
        await asyncio.sleep(SETTLE_SECS)

    async def _answer(self, started) -> bool:
        """Waits until ``started()`` (True), or an error travels upstream, or WAIT_SECS pass (False)."""
        await self._until(lambda: started() or self._errors_since(self._asked), WAIT_SECS)
        return started()

    async def say(self, text: str, *, started: bool = False) -> None:
        """One user utterance as VAD and a finalizing STT report it, straight into the user aggregator."""
        if not started:
            await self.h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at=USER_CONTEXT)
        await self.h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at=USER_CONTEXT)
        await self.h.inject(TranscriptionFrame(text, "user", _now(), finalized=True), at=USER_CONTEXT)
        self._asked = time.monotonic()

    async def barge_in(self, when: str) -> None:
        """The user starts speaking over the bot (with the words and speech time the settings ask for)."""
        epoch = self.guard.epoch
        await self.h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at=USER_CONTEXT)
        if self.min_words:
            words = " ".join(["wait"] * self.min_words)
            await self.h.inject(InterimTranscriptionFrame(words, "user", _now()), at=USER_CONTEXT)
        silence = bytes(2 * USER_SAMPLE_RATE // 50)  # 20 ms
        end = time.monotonic() + self.min_speech + 0.1
        while self.min_speech and time.monotonic() < end:
            await self.h.inject(InputAudioRawFrame(silence, USER_SAMPLE_RATE, 1), at=USER_CONTEXT)
            await asyncio.sleep(0.02)
        if not await self._until(lambda: self.guard.epoch > epoch, 1.0):
            if self.user_may_interrupt:
                self.violations.append(f"{USER_CONTEXT}: the user's barge-in {when} did not interrupt the bot")
            else:
                self.notes.append(f"barge-in {when} left the bot talking (interruptions disabled)")
        await asyncio.sleep(SETTLE_SECS)

    async def _until(self, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.005)
        return True

    def _audio_since(self, since: float) -> bool:
        return any(w.time > since and isinstance(w.frame, OutputAudioRawFrame) for w in self.h.output.written)

    def _errors_since(self, since: float) -> bool:
        return any(isinstance(f, ErrorFrame) and t > since
                   for probe in self.errors for f, t in zip(probe.frames, probe.times, strict=False))

    def _pushed_since(self, frame_type: type[Frame], since: float) -> bool:
        return any(isinstance(f, frame_type) and t > since
                   for probe in self.pushed.values() for f, t in zip(probe.frames, probe.times, strict=False))

    def report(self) -> CheckReport:
        history = list(self.guard.history)
        stats = self.guard.stats
        expected = [i.epoch for i in history]
        processors = []
        for pid, probe in self.processed.items():
            markers = (len(probe.of_type(ConformanceMarker)), len(self.pushed[pid].of_type(ConformanceMarker)))
            line = ProcessorReport(pid, stats[pid], len(probe.of_type(InterruptionFrame)),
                                   _stale_processed(probe, history), markers)
            _judge(line, expected, is_output=pid == OUTPUT)
            processors.append(line)
        cut_audio = _cut_audio_processed_ms(self.processed[OUTPUT], history)
        audio_after = [_audio_after_ms(self.h.output.written, i) + cut for i, cut in zip(history, cut_audio, strict=False)]
        chunk_ms = max((_duration_ms(w.frame) for w in self.h.output.written
                        if isinstance(w.frame, OutputAudioRawFrame)), default=0.0)
        violations = list(self.violations)
        for p in processors:
            violations.extend(f"{p.name}: {v}" for v in p.violations)
        for interruption, ms in zip(history, audio_after, strict=False):
            if ms > chunk_ms + 0.5:
                violations.append(f"{OUTPUT}: {ms:.0f} ms of audio made before interruption {interruption.epoch} "
                                  f"or for the text it cut played after it (more than the one {chunk_ms:.0f} ms "
                                  "chunk already in the card)")
        violations.extend(self._audio_after_the_quiet_cut(chunk_ms))
        markers = sum(isinstance(f, ConformanceMarker) for f in self.processed[OUTPUT].frames)
        consumers = [p for p in processors if p.markers[0] and not p.markers[1] and p.name != OUTPUT]
        declared = [p.name for p in consumers if _declares_consuming(self.h.processors[p.name])]
        violations.extend(f"{p.name}: dropped all {p.markers[0]} uninterruptible frames it was given, and its type "
                          f"does not declare that it consumes them ({CONSUMES_UNINTERRUPTIBLE})"
                          for p in consumers if p.name not in declared)
        if markers < self.markers_sent and not consumers:
            violations.append(f"{OUTPUT}: uninterruptible markers through the output: {markers} of {self.markers_sent}")
        notes = self.notes + [f"{name} consumes uninterruptible frames (its type declares it): not judged on them"
                              for name in declared]
        return CheckReport(self.h.agent.spec.name, history, processors, audio_after,
                           (markers, self.markers_sent), notes, violations)


    def _audio_after_the_quiet_cut(self, chunk_ms: float) -> list[str]:
        """Audio played after the API's interruption of the stream, while nothing new was asked: all of it is cut work.

        Whatever made it, and however it was tagged, it can answer nothing
        but the cut stream: beyond the chunk already in the card, it is a
        violation, named after the processor that made the first frame of
        the work it belongs to (a processor that re-sent the cut text, not
        the TTS that spoke it).
        """
        if self.quiet is None:
            return []
        start, end = self.quiet
        heard = [w.frame for w in self.h.output.written
                 if isinstance(w.frame, OutputAudioRawFrame) and start < w.time <= end and w.frame.interruptible]
        ms = sum(_duration_ms(f) for f in heard)
        if ms <= chunk_ms + 0.5:
            return []
        made = [f for pid, probe in self.pushed.items() if pid != OUTPUT
                for f, t in zip(probe.frames, probe.times, strict=False)
                if start < t <= end and isinstance(f, AudioRawFrame) and f.interruptible]
        makers = sorted({self._maker(turn_of(f)) or self._maker(f.id) for f in made} - {None}) or [OUTPUT]
        return [f"{maker}: {ms:.0f} ms of audio played after the interruption of the stream, with nothing new asked "
                "(work for what the interruption cut, made by it or from what it made)" for maker in makers]

    def _maker(self, frame_id: int) -> str | None:
        """The processor that made the frame with ``frame_id``: the first to push it without having been given it."""
        for pid, pushed in self.pushed.items():
            if any(f.id == frame_id for f in pushed.frames) and not any(
                    f.id == frame_id for f in self.processed[pid].frames):
                return pid
        return None


def _declares_consuming(processor) -> bool:
    """Whether ``processor``'s type declares that it consumes uninterruptible frames: its
    ``consumes_uninterruptible`` attribute, or pipecat's ``FrameFilter`` (a list of the types it lets through)."""
    return bool(getattr(processor, CONSUMES_UNINTERRUPTIBLE, False)) or isinstance(processor, FrameFilter)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _duration_ms(frame: OutputAudioRawFrame) -> float:
    return 1000.0 * len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)


def _audio_after_ms(written, interruption: Interruption) -> float:
    """Milliseconds of audio made before ``interruption`` that started playing after it."""
    return sum(_duration_ms(w.frame) for w in written
               if isinstance(w.frame, OutputAudioRawFrame) and w.time > interruption.at
               and w.frame.id < interruption.boundary and w.frame.interruptible)


def _after_each_interruption(probe: Probe, history: list[Interruption]):
    """(frame, the latest interruption the processor had processed before it) for each frame it processed after one.

    Judged by order, not by time: observers hear of frames through a queue,
    so their clock lags; their order is the order things happened in.
    """
    handled = 0
    for frame in probe.frames:
        if isinstance(frame, InterruptionFrame):
            handled = min(handled + 1, len(history))
        elif handled:
            yield frame, history[handled - 1]


def _is_cut(frame: Frame, interruption: Interruption) -> bool:
    """Whether ``interruption`` cut ``frame``: interruptible, not the user's, and answering a turn older than it."""
    if not frame.interruptible or isinstance(frame, NEVER_STALE):
        return False
    return turn_of(frame) < interruption.boundary


def _stale_processed(probe: Probe, history: list[Interruption]) -> list[str]:
    """Frames an interruption cut (made before it, or for a turn it cut) that the processor processed after processing it."""
    return [f"{frame.name} after interruption {i.epoch}"
            for frame, i in _after_each_interruption(probe, history) if _is_cut(frame, i)]


def _cut_audio_processed_ms(output: Probe, history: list[Interruption]) -> list[float]:
    """Per interruption, ms of audio for a turn it cut that the output processed (and so played) after processing it."""
    ms = {i.epoch: 0.0 for i in history}
    for frame, i in _after_each_interruption(output, history):
        if isinstance(frame, OutputAudioRawFrame) and frame.id >= i.boundary and _is_cut(frame, i):
            ms[i.epoch] += _duration_ms(frame)
    return [ms[i.epoch] for i in history]


def _judge(line: ProcessorReport, expected: list[int], *, is_output: bool) -> None:
    s = line.stats
    if list(s.seen) != expected:
        line.violations.append(f"received interruptions {list(s.seen)}, expected each of {expected} exactly once")
    if s.flushes < len(s.seen) or line.processed_interruptions < len(s.seen):
        line.violations.append(
            f"flushed on {s.flushes} of {len(s.seen)} interruptions: its process_frame does not hand "
            "InterruptionFrame to FrameProcessor.process_frame, so its queue and in-flight work are left alone"
        )
    if s.no_op_flushes:
        line.violations.append(f"its flush ran but flushed nothing on {s.no_op_flushes} interruptions: "
                               "interruptible frames stayed queued or its in-flight work kept running")
    if s.late_out:
        line.violations.append(f"kept pushing stale work after processing the interruption ({s.late_out} frames)")
    if s.reaction_out:
        line.violations.append(f"made {s.reaction_out} frames of cut work anew while it handled the interruption "
                               "(what the interruption cut, pushed again as new frames)")
    if line.stale_processed:
        line.violations.append(f"processed stale frames: {', '.join(line.stale_processed[:5])}")
    processed, pushed = line.markers
    if not is_output and 0 < pushed < processed:
        line.violations.append(f"dropped {processed - pushed} of {processed} uninterruptible frames it was given")


async def run_check(agent: Agent) -> CheckReport:
    """Runs the conformance scenario against ``agent`` on the synthetic transport."""
    async with AgentHarness(agent, transport="synthetic") as h:
        scenario = _Scenario(h)
        await scenario.stream_then_interrupt()
        if USER_CONTEXT in h.processors:
            await scenario.user_turns_with_barge_ins()
        report = scenario.report()
        await h.worker.cancel(reason="conformance check done")  # not waiting for the rest of the reply to play
        return report


def format_report(path: str, report: CheckReport) -> str:
    """The report as the command prints it."""
    origins = ", ".join(f"{i.epoch}: {i.origin}" for i in report.interruptions) or "none"
    lines = [f"{path}: agent {report.agent}; interruptions ({origins})",
             f"  {'processor':20} {'received':>8} {'processed':>9} {'flushed':>7} {'cancelled':>9} "
             f"{'stale in':>8} {'stale out':>9} {'duplicates':>10}"]
    for p in report.processors:
        s = p.stats
        lines.append(f"  {p.name:20} {len(s.seen):>8} {p.processed_interruptions:>9} {s.flushed.total():>7} "
                     f"{s.cancelled:>9} {s.dropped_in.total():>8} {s.dropped_out + s.dropped_writes:>9} "
                     f"{s.duplicates:>10}")
        for label, counts in (("flushed", s.flushed), ("stale in", s.dropped_in)):
            if counts:
                lines.append(f"  {'':20} {label}: " + ", ".join(f"{n} x{c}" for n, c in counts.most_common()))
    audio = ", ".join(f"{ms:.0f}" for ms in report.audio_after_ms) or "-"
    lines.append(f"  output: audio made before each interruption or for the text it cut, played after it (ms): {audio}")
    lines.append(f"  uninterruptible markers through the output: {report.markers[0]} of {report.markers[1]}")
    lines.extend(f"  note: {n}" for n in report.notes)
    lines.extend(f"  VIOLATION {v}" for v in report.violations)
    lines.append("  PASS" if report.ok else f"  FAIL ({len(report.violations)} violations)")
    return "\n".join(lines)
