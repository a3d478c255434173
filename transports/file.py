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
- Otherwise the timeline is virtual: the seconds of input pushed so far. It
  runs ``speed`` times faster than real time while the agent only listens
  (silence, the user's speech) and at real time from the end of the user's
  speech until the bot has answered and finished speaking, so pipeline
  latency and barge-ins land on the timeline where they would in a call.

pipecat's output transport has no playback clock (NOTES.md): the output here
paces ``write_audio_frame`` itself, one chunk ahead, as a sound card does.
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
from pipelines.registry import TypeInfo
from transports.common import AudioTransportParams

CHUNK_SECS = 0.02


class FileTransportError(ValueError):
    """A WAV file that cannot be used; the message names the file."""


class FileParams(AudioTransportParams):
    input: str = Field(description="WAV the user says: 16-bit PCM, any rate, mono or stereo")
    output: str = Field("", description="WAV of the bot's audio on the input's timeline; empty: not written")
    transcript: str = Field("", description="JSONL of user and bot turns with times; empty: not written")
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


class Timeline:
    """The clock both ends of a file session share; see the module docstring."""

    def __init__(self, *, realtime: bool):
        self.realtime = realtime
        self.input_secs = 0.0  # audio pushed so far: the virtual clock
        self._wall_start: float | None = None

    def start(self) -> None:
        """Starts the clock (when the first input chunk is about to go)."""
        self._wall_start = time.monotonic()

    def now(self) -> float:
        """Seconds since the conversation started."""
        if not self.realtime:
            return self.input_secs
        if self._wall_start is None:
            return 0.0
        return time.monotonic() - self._wall_start


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


@dataclass
class _Span:
    """When something started and stopped on the timeline (None: not yet)."""

    start: float | None = None
    end: float | None = None


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
        self._user = _Span()
        self._bot = _Span()
        self._user_speaking = False
        self._bot_speaking = False
        self._bot_interrupted = False
        self._reply_deadline: float | None = None  # wall time until which an answer is awaited
        self._quiet_since = 0.0

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
        if self._feeder:
            await self.cancel_task(self._feeder)
            self._feeder = None

    async def cleanup(self):
        await super().cleanup()
        await self._stop_feeding()
        self._transcript.close()

    def _engaged(self) -> bool:
        """Whether the agent is answering or speaking, so time must run at real pace."""
        awaiting = self._reply_deadline is not None and time.monotonic() < self._reply_deadline
        return self._bot_speaking or awaiting

    async def _feed(self):
        rate = self._options.audio_in_sample_rate
        chunk_bytes = int(rate * CHUNK_SECS) * 2
        silence = bytes(chunk_bytes)
        self._timeline.start()
        next_wall = time.monotonic()
        offset = 0
        while True:
            if offset < len(self._pcm):
                audio = self._pcm[offset:offset + chunk_bytes].ljust(chunk_bytes, b"\0")
                offset += chunk_bytes
            elif self._session_over():
                break
            else:
                audio = silence
            await self.push_audio_frame(InputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=1))
            self._timeline.input_secs += CHUNK_SECS
            step = CHUNK_SECS if self._timeline.realtime or self._engaged() else CHUNK_SECS / self._options.speed
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
        if direction == FrameDirection.UPSTREAM:
            self._observe(frame)

    def _observe(self, frame: Frame) -> None:
        """Follows the conversation from the frames that come back upstream."""
        now = self._timeline.now()
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._user_speaking = True
            self._reply_deadline = None
            self._user = _Span(start=now)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._user_speaking = False
            self._user.end = now
            self._reply_deadline = time.monotonic() + self._options.reply_timeout_secs
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            self._reply_deadline = None
            if self._bot.start is None or self._bot.end is not None:
                self._bot = _Span(start=now)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            self._bot.end = now
        elif isinstance(frame, InterruptionFrame):
            self._bot_interrupted = self._bot_speaking or self._bot.start is not None
        elif isinstance(frame, LLMContextUserTurnFrame):
            self._transcript.add(role="user", text=frame.text, start=_round(self._user.start),
                                 end=_round(self._user.end))
        elif isinstance(frame, LLMContextAssistantTurnFrame):
            self._transcript.add(role="assistant", text=frame.text, start=_round(self._bot.start),
                                 end=_round(self._bot.end if self._bot.end is not None else now),
                                 interrupted=self._bot_interrupted)
            self._bot = _Span()
            self._bot_interrupted = False


def _round(secs: float | None) -> float | None:
    return None if secs is None else round(secs, 3)


class FileOutput(BaseOutputTransport):
    """Writes the bot's audio into a WAV at its place on the timeline, paced like a sound card."""

    def __init__(self, params: TransportParams, *, path: Path | None, timeline: Timeline,
                 input_secs: float, **kwargs):
        super().__init__(params, **kwargs)
        self._path = path
        self._timeline = timeline
        self._input_secs = input_secs
        self._wav: wave.Wave_write | None = None
        self._written_samples = 0
        self._played_until = 0.0

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._path and not self._wav:
            self._wav = wave.open(str(self._path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self.sample_rate)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        self._close()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        self._close()

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        """Places ``frame`` at the timeline's present (or right after the last chunk)."""
        self._write_at(self._timeline.now(), frame.audio)
        # One chunk of buffer: return once the previous chunk has played.
        now = time.monotonic()
        await asyncio.sleep(max(0.0, self._played_until - now))
        duration = len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)
        self._played_until = max(now, self._played_until) + duration
        return True

    def _write_at(self, secs: float, audio: bytes) -> None:
        if not self._wav:
            return
        gap = int(secs * self.sample_rate) - self._written_samples
        if gap > 0:
            self._wav.writeframes(bytes(2 * gap))
            self._written_samples += gap
        self._wav.writeframes(audio)
        self._written_samples += len(audio) // 2

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
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=options.audio_in_sample_rate,
            audio_out_enabled=True,
            audio_out_sample_rate=options.audio_out_sample_rate,
        )
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
