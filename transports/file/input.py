"""The file transport's input: pushes the user's WAV, then silence, and ends the session.

In fast mode (not ``realtime``) it runs ``speed`` times faster than real time
except where the pipeline's reaction time is what the timeline must show:
from the end of the user's speech until the bot starts answering, and while
the bot speaks with the user's speech coming up in the input (a barge-in). So
answers and barge-ins land on the timeline where they would in a call, and
the silences in between cost next to nothing. Fast never outruns the
pipeline: the input waits while more than ``MAX_LAG_SECS`` of its audio has
not yet come through to the output, so VAD and STT see it as soon as it is
pushed. When the input is over, silence follows until the bot is quiet for
``tail_secs``; then the session ends by itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np
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
    StartFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import TransportParams

from transports.file.clock import CHUNK_SECS, Span, Timeline
from transports.file.transcript import Transcript

if TYPE_CHECKING:
    from transports.file import FileParams

#: In fast mode, the input slows to real time this long before speech that
#: could interrupt the bot, so the pipeline reacts to it at its real pace.
LOOKAHEAD_SECS = 0.5
#: RMS of a 20 ms chunk (16-bit) above which it may hold speech (-40 dBFS).
SPEECH_RMS = 330
#: In fast mode, how far the input may run ahead of what the pipeline has
#: taken in (input audio seen at the output), so VAD and STT never lag.
MAX_LAG_SECS = 0.1


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
        self._user_is_speaking = False
        self._bot_is_speaking = False
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
        return self._bot_is_speaking or self._awaiting_reply()

    def _real_pace(self, chunk: int) -> bool:
        """Whether the next chunk must go at real pace (see the module docstring)."""
        if self._timeline.realtime or self._awaiting_reply():
            return True
        return self._bot_is_speaking and (self._user_is_speaking or self._speech_ahead(chunk))

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
        if self._user_is_speaking or self._engaged():
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
            self._user_is_speaking = True
            self._reply_deadline = None
            # VAD confirms speech start_secs after it began, and its end stop_secs after.
            self._user = Span(start=max(0.0, now - frame.start_secs))
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._user_is_speaking = False
            self._user.end = max(self._user.start or 0.0, now - frame.stop_secs)
            self._reply_deadline = time.monotonic() + self._options.reply_timeout_secs
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_is_speaking = True
            self._reply_deadline = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_is_speaking = False
        elif isinstance(frame, InterruptionFrame):
            self._bot_interrupted = self._bot_interrupted or self._bot_is_speaking
        elif isinstance(frame, LLMContextUserTurnFrame):
            if not self._bot_is_speaking and self._timeline.bot_audio.start is not None:
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
