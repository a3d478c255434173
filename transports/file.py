"""The ``file`` transport: a WAV file speaks to the agent, the bot answers into files.

Input: a 16-bit PCM WAV at any rate, mono or stereo, resampled to the
transport's input rate and pushed in 20 ms chunks. Output: the bot's audio as
a WAV on the same timeline as the input (an answer at 3.2 s into the output
file came 3.2 s into the conversation), and a JSONL transcript of the user's
and the bot's turns with their times. When the input is over, silence follows
until the bot is quiet for ``tail_secs``; then the session ends by itself.

Two clocks:

- ``realtime: true`` plays the input at its real pace and the output like a
  sound card; the timeline is the wall clock since the input started.
- Otherwise the timeline is virtual: the seconds of input pushed so far, and
  the output plays the bot's audio against that clock. It runs ``speed``
  times faster than real time except where the pipeline's reaction time is
  what the timeline must show: from the end of the user's speech until the
  bot starts answering, and while the bot speaks with the user's speech
  coming up in the input (a barge-in). So answers and barge-ins land on the
  timeline where they would in a call, and the silences in between cost
  next to nothing. Fast never outruns the pipeline: the input waits while
  more than ``MAX_LAG_SECS`` of its audio has not yet come through to the
  output, so VAD and STT see it as soon as it is pushed.

Either way the input starts once the pipeline has started (the StartFrame
reached the output), as a caller speaks once the call is up.

pipecat's output transport has no playback clock (NOTES.md): the output here
paces ``write_audio_frame`` itself on the timeline, one chunk ahead, as a
sound card does.
"""

import asyncio
import json
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextAssistantTurnFrame,
    LLMContextUserTurnFrame,
    OutputAudioRawFrame,
    StartFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipelines.errors import ConfigError, ConfigErrors
from pipelines.interruptions.output import BufferedOutput
from pipelines.registry import TypeInfo
from transports.common import AudioTransportParams

CHUNK_SECS = 0.02
#: In fast mode, the input slows to real time this long before speech that
#: could interrupt the bot, so the pipeline reacts to it at its real pace.
LOOKAHEAD_SECS = 0.5
#: RMS of a 20 ms chunk (16-bit) above which it may hold speech (-40 dBFS).
SPEECH_RMS = 330
#: In fast mode, how far the input may run ahead of what the pipeline has
#: taken in (input audio seen at the output), so VAD and STT never lag.
MAX_LAG_SECS = 0.1
#: If no input audio reaches the output within this long (real seconds), the
#: graph does not carry it there, and fast mode runs without that brake.
UNROUTED_SECS = 2.0


class FileTransportError(ValueError):
    """A WAV file that cannot be used; the message names the file."""


class FileParams(AudioTransportParams):
    input: str = Field(description="WAV the user says: 16-bit PCM, any rate, mono or stereo")
    output: str = Field("", description="WAV of the bot's audio on the input's timeline; empty: not written")
    transcript: str = Field("", description="JSONL of user and bot turns with times; empty: not written")
    audio_out_10ms_chunks: int = Field(4, ge=1, le=10, description="bot audio written per chunk, in 10 ms (pipecat's default)")
    realtime: bool = Field(False, description="play the input at its real pace instead of fast-forwarding")
    speed: float = Field(8.0, gt=0, description="fast mode: times real time while the agent only listens")
    tail_secs: float = Field(1.0, ge=0, description="silence after the input, once the bot is quiet, before the end")
    reply_timeout_secs: float = Field(5.0, gt=0, description="real seconds to wait for an answer after the user stops")


def read_wav(path: Path, sample_rate: int) -> bytes:
    """Reads a 16-bit PCM WAV as mono 16-bit PCM at ``sample_rate``.

    Raises:
        FileTransportError: Missing, unreadable or not 16-bit PCM; names ``path``.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise FileTransportError(f"{path}: no such file") from None
    except (OSError, EOFError, RuntimeError, wave.Error) as e:  # wave raises all four
        raise FileTransportError(f"{path}: not a readable WAV file ({e or type(e).__name__})") from None
    if width != 2:
        raise FileTransportError(f"{path}: sample width is {8 * width} bits; 16-bit PCM is required")
    samples = np.frombuffer(raw, dtype=np.int16).reshape(-1, channels)
    mono = samples.mean(axis=1).astype(np.int16) if channels > 1 else samples[:, 0]
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate)
    return mono.astype(np.int16).tobytes()


@dataclass
class Span:
    """When something started and stopped on the timeline (None: not yet)."""

    start: float | None = None
    end: float | None = None


class Timeline:
    """The clock both ends of a file session share; see the module docstring."""

    def __init__(self, *, realtime: bool):
        self.realtime = realtime
        self.input_secs = 0.0  # audio pushed so far: the virtual clock
        self._wall_start: float | None = None
        self._advanced = asyncio.Event()
        self._stopped = False
        self.consumed_secs = 0.0  # input audio that came through to the output
        self._consumed = asyncio.Event()
        self.ready = asyncio.Event()  # the pipeline has started
        self.bot_audio = Span()  # the bot's audio since the last assistant turn, as written

    def start(self) -> None:
        """Starts the clock (when the first input chunk is about to go)."""
        self._wall_start = time.monotonic()

    def stop(self) -> None:
        """The input stopped for good: nothing waits on the clock any more."""
        self._stopped = True
        self._advanced.set()

    def advance(self, secs: float) -> None:
        """The input pushed ``secs`` more audio."""
        self.input_secs += secs
        self._advanced.set()

    def consume(self, secs: float) -> None:
        """``secs`` more input audio came through the pipeline to the output."""
        self.consumed_secs += secs
        self._consumed.set()

    async def wait_for_pipeline(self, max_lag: float) -> None:
        """Waits while the pipeline is more than ``max_lag`` behind the input.

        Does not wait if no input audio ever reached the output within
        ``UNROUTED_SECS``: the graph does not route it there.
        """
        deadline = time.monotonic() + UNROUTED_SECS
        while self.input_secs - self.consumed_secs > max_lag and not self._stopped:
            if not self.consumed_secs and time.monotonic() > deadline:
                return
            self._consumed.clear()
            try:
                await asyncio.wait_for(self._consumed.wait(), 0.05)
            except TimeoutError:
                pass

    def now(self) -> float:
        """Seconds since the conversation started."""
        if not self.realtime:
            return self.input_secs
        if self._wall_start is None:
            return 0.0
        return time.monotonic() - self._wall_start

    async def wait_until(self, secs: float) -> None:
        """Returns once the timeline has reached ``secs`` (at once when it has stopped)."""
        if self.realtime and not self._stopped:
            await asyncio.sleep(max(0.0, secs - self.now()))
            return
        while not self._stopped and self.input_secs < secs:
            self._advanced.clear()
            await self._advanced.wait()


class Transcript:
    """Appends one JSON object per user or bot turn to a file (or nowhere)."""

    def __init__(self, path: Path | None):
        self._file = path.open("w", encoding="utf-8") if path else None

    def add(self, **record) -> None:
        """Writes a record at once, so a crash keeps what was said."""
        if self._file:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


class FileInput(BaseInputTransport):
    """Pushes the input WAV, then silence, and ends the session when the bot is quiet.

    It also watches what comes back upstream (VAD, bot speaking, the context
    aggregators' turn frames) to pace the virtual clock and to write the
    transcript.
    """

    def __init__(self, params: TransportParams, *, pcm: bytes, options: FileParams, timeline: Timeline,
                 transcript: Transcript, **kwargs):
        super().__init__(params, **kwargs)
        self._pcm = pcm
        self._options = options
        self._timeline = timeline
        self._transcript = transcript
        self._feeder: asyncio.Task | None = None
        self._user = Span()
        self._user_speaking = False
        self._bot_speaking = False
        self._bot_interrupted = False
        self._reply_deadline: float | None = None  # wall time until which an answer is awaited
        self._quiet_since = 0.0
        self._loud_chunks = _loud_chunk_counts(pcm, int(options.audio_in_sample_rate * CHUNK_SECS))

    @property
    def input_secs(self) -> float:
        """Duration of the input file."""
        return len(self._pcm) / (2 * self._options.audio_in_sample_rate)

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        if not self._feeder:
            self._feeder = self.create_task(self._feed(), name=f"{self}::feed")

    async def stop(self, frame: EndFrame):
        await self._stop_feeding()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame):
        await self._stop_feeding()
        await super().cancel(frame)

    async def _stop_feeding(self):
        self._timeline.stop()
        if self._feeder:
            await self.cancel_task(self._feeder)
            self._feeder = None

    async def cleanup(self):
        await super().cleanup()
        await self._stop_feeding()
        self._transcript.close()

    def _awaiting_reply(self) -> bool:
        return self._reply_deadline is not None and time.monotonic() < self._reply_deadline

    def _engaged(self) -> bool:
        """Whether the agent is answering or speaking."""
        return self._bot_speaking or self._awaiting_reply()

    def _real_pace(self, chunk: int) -> bool:
        """Whether the next chunk must go at real pace (see the module docstring)."""
        if self._timeline.realtime or self._awaiting_reply():
            return True
        return self._bot_speaking and (self._user_speaking or self._speech_ahead(chunk))

    def _speech_ahead(self, chunk: int) -> bool:
        """Whether the input holds possible speech within LOOKAHEAD_SECS of ``chunk``."""
        counts = self._loud_chunks
        first = min(chunk, len(counts) - 1)
        last = min(chunk + int(LOOKAHEAD_SECS / CHUNK_SECS), len(counts) - 1)
        return counts[last] > counts[first]

    async def _feed(self):
        rate = self._options.audio_in_sample_rate
        chunk_bytes = int(rate * CHUNK_SECS) * 2
        silence = bytes(chunk_bytes)
        await self._timeline.ready.wait()
        self._timeline.start()
        next_wall = time.monotonic()
        chunk = 0
        while True:
            offset = chunk * chunk_bytes
            if offset < len(self._pcm):
                audio = self._pcm[offset:offset + chunk_bytes].ljust(chunk_bytes, b"\0")
            elif self._session_over():
                break
            else:
                audio = silence
            if not self._timeline.realtime:
                await self._timeline.wait_for_pipeline(MAX_LAG_SECS)
            await self.push_audio_frame(InputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=1))
            self._timeline.advance(CHUNK_SECS)
            chunk += 1
            step = CHUNK_SECS if self._real_pace(chunk) else CHUNK_SECS / self._options.speed
            # Pace on a schedule, not per sleep, so the loop's own overhead does
            # not slow the clock; after a stall, do not burst to catch up.
            next_wall = max(next_wall + step, time.monotonic() - 0.1)
            await asyncio.sleep(max(0.0, next_wall - time.monotonic()))
        await self.push_frame(EndWorkerFrame(reason="file input finished"))

    def _session_over(self) -> bool:
        """After the input: the user and the bot are quiet and ``tail_secs`` have passed."""
        now = self._timeline.now()
        if self._user_speaking or self._engaged():
            self._quiet_since = now
            return False
        self._quiet_since = max(self._quiet_since, self.input_secs)
        return now - self._quiet_since >= self._options.tail_secs

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        # An interruption reaches the input upstream when a processor starts
        # it, downstream when the worker does.
        if direction == FrameDirection.UPSTREAM or isinstance(frame, InterruptionFrame):
            self._observe(frame)

    def _observe(self, frame: Frame) -> None:
        """Follows the conversation from the frames that come back upstream."""
        now = self._timeline.now()
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._user_speaking = True
            self._reply_deadline = None
            # VAD confirms speech start_secs after it began, and its end stop_secs after.
            self._user = Span(start=max(0.0, now - frame.start_secs))
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._user_speaking = False
            self._user.end = max(self._user.start or 0.0, now - frame.stop_secs)
            self._reply_deadline = time.monotonic() + self._options.reply_timeout_secs
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            self._reply_deadline = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, InterruptionFrame):
            self._bot_interrupted = self._bot_interrupted or self._bot_speaking
        elif isinstance(frame, LLMContextUserTurnFrame):
            if not self._bot_speaking and self._timeline.bot_audio.start is not None:
                # The bot spoke but was cut off before it finished a sentence,
                # so the context (and its turn frame) has none of its words.
                self._add_bot_turn("")
            self._transcript.add(role="user", text=frame.text, start=_round(self._user.start),
                                 end=_round(self._user.end))
        elif isinstance(frame, LLMContextAssistantTurnFrame):
            self._add_bot_turn(frame.text)

    def _add_bot_turn(self, text: str) -> None:
        """Records the bot's turn with the times the output wrote its audio at."""
        bot = self._timeline.bot_audio
        self._transcript.add(role="assistant", text=text, start=_round(bot.start), end=_round(bot.end),
                             interrupted=self._bot_interrupted)
        self._timeline.bot_audio = Span()
        self._bot_interrupted = False


def _loud_chunk_counts(pcm: bytes, chunk_samples: int) -> np.ndarray:
    """counts[i]: how many of the first i chunks of ``pcm`` may hold speech (last index: all)."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    chunks = samples[: len(samples) // chunk_samples * chunk_samples].reshape(-1, chunk_samples)
    loud = np.sqrt((chunks**2).mean(axis=1)) > SPEECH_RMS
    return np.concatenate([[0], np.cumsum(loud)])


def _round(secs: float | None) -> float | None:
    return None if secs is None else round(secs, 3)


class FileOutput(BufferedOutput, BaseOutputTransport):
    """Writes the bot's audio into a WAV at its place on the timeline, paced like a sound card.

    Implements the interruption contract (``BufferedOutput.clear_buffer``):
    what its media senders queue is dropped; the WAV has no client to tell.
    """

    def __init__(self, params: TransportParams, *, path: Path | None, timeline: Timeline,
                 input_secs: float, **kwargs):
        super().__init__(params, **kwargs)
        self._path = path
        self._timeline = timeline
        self._input_secs = input_secs
        self._wav: wave.Wave_write | None = None
        self._written_samples = 0

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._path and not self._wav:
            self._wav = wave.open(str(self._path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self.sample_rate)
        await self.set_transport_ready(frame)
        self._timeline.ready.set()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InputAudioRawFrame):
            self._timeline.consume(len(frame.audio) / (2 * frame.num_channels * frame.sample_rate))
        await super().process_frame(frame, direction)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        self._close()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        self._close()

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        """Places ``frame`` at the timeline's present, or right after the chunk still playing.

        Returns once that previous chunk has played: one chunk of buffer, as
        a sound card has.
        """
        start = self._write_at(self._timeline.now(), frame.audio)
        bot = self._timeline.bot_audio
        if bot.start is None:
            bot.start = start
        bot.end = start + len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)
        await self._timeline.wait_until(start)
        return True

    def _write_at(self, secs: float, audio: bytes) -> float:
        """Writes ``audio`` at ``secs`` or after what is written; returns where it went."""
        gap = max(0, int(secs * self.sample_rate) - self._written_samples)
        start = (self._written_samples + gap) / self.sample_rate
        if self._wav:
            self._wav.writeframes(bytes(2 * gap) + audio)
        self._written_samples += gap + len(audio) // 2
        return start

    def _close(self) -> None:
        """Pads the file to the input's length, so both line up end to end too, and closes it."""
        if not self._wav:
            return
        end = max(self._input_secs, self._timeline.now())
        gap = int(end * self.sample_rate) - self._written_samples
        if gap > 0:
            self._wav.writeframes(bytes(2 * gap))
        self._wav.close()
        self._wav = None


class FileTransport(BaseTransport):
    """A WAV file in; a WAV and a JSONL transcript out."""

    def __init__(self, options: FileParams, *, pcm: bytes, output: Path | None, transcript: Path | None,
                 name: str | None = None):
        super().__init__(name=name)
        params = TransportParams(**options.audio_io())
        self.timeline = Timeline(realtime=options.realtime)
        self._input = FileInput(params, pcm=pcm, options=options, timeline=self.timeline,
                                transcript=Transcript(transcript), name="input")
        self._output = FileOutput(params, path=output, timeline=self.timeline,
                                  input_secs=self._input.input_secs, name="output")

    def input(self) -> FileInput:
        return self._input

    def output(self) -> FileOutput:
        return self._output


def _resolve(folder: Path, path: str) -> Path | None:
    return (folder / path).expanduser().resolve() if path else None


def build_file_transport(params: FileParams, ctx) -> FileTransport:
    """Reads the input WAV (so a bad file fails at build time) and makes the transport.

    Relative paths are resolved against the config's folder; output folders
    are created.

    Raises:
        ConfigErrors: One line naming the key and the file that cannot be used.
    """
    source = _resolve(ctx.config_dir, params.input)
    try:
        pcm = read_wav(source, params.audio_in_sample_rate)
    except FileTransportError as e:
        raise ConfigErrors([ConfigError(None, "transport.input", str(e))]) from None
    output = _resolve(ctx.config_dir, params.output)
    transcript = _resolve(ctx.config_dir, params.transcript)
    for key, path in (("transport.output", output), ("transport.transcript", transcript)):
        if path:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigErrors([ConfigError(None, key, f"{path}: cannot create its folder ({e.strerror})")]) from None
    return FileTransport(params, pcm=pcm, output=output, transcript=transcript, name=ctx.processor_id)


async def serve(agent, options) -> None:
    """``framegraph run`` on a file agent: one session, ``--realtime`` honoured, errors in one line."""
    from pipecat.workers.runner import WorkerRunner
    from pipelines.builder import build_agent
    from pipelines.validate import Component

    transport = agent.transport
    if getattr(options, "realtime", False):
        transport = Component(transport.id, transport.type, transport.params.model_copy(update={"realtime": True}))
    try:
        built = build_agent(agent, transport=transport)
    except ConfigErrors as e:
        raise SystemExit(str(e)) from None
    runner = WorkerRunner(handle_sigint=True, force_gc=True)
    await runner.add_workers(built.worker())
    await runner.run()
    params = transport.params
    for label, path in (("bot audio", params.output), ("transcript", params.transcript)):
        if path:
            print(f"{label}: {_resolve(agent.config_dir, path)}")


TYPES = [
    TypeInfo("transport", "file", FileParams, build_file_transport,
             "WAV file in; bot audio WAV and JSONL transcript out, fast or real time", serve=serve),
]
