"""``tone_reply``: a processor that stands in for an agent, to check a transport end to end.

It needs no speech models: a loud sound from the user counts as speech; when
it ends the bot answers with a tone (and a line of transcript), and when the
user makes a sound while the tone plays, the bot is interrupted. The
transports' loopback tests, the browser test and ``bench/transport_latency.py``
run it; a person can too (``configs/transport_check.yaml``).
"""

import math
import time

import numpy as np
from pydantic import Field

from pipelines.registry import TypeInfo
from pipelines.spec import Params


class ToneReplyParams(Params):
    reply_secs: float = Field(3.0, gt=0, le=60, description="length of the tone the bot answers with")
    tone_hz: float = Field(440.0, gt=0, le=8000, description="pitch of the answer")
    amplitude: int = Field(8000, gt=0, le=32767, description="peak of the answer, 16-bit")
    speech_rms: float = Field(500.0, gt=0, le=32767, description="input RMS above which the user counts as speaking")
    start_ms: float = Field(40.0, ge=0, le=10_000, description="loud input this long starts the user's turn")
    stop_ms: float = Field(300.0, gt=0, le=10_000, description="quiet input this long ends the user's turn")
    reply_text: str = Field("beep", description="the bot's transcript of its answer")


def tone(secs: float, sample_rate: int, hz: float, amplitude: int) -> bytes:
    """``secs`` of a 16-bit mono sine at ``hz``."""
    t = np.arange(int(secs * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * math.pi * hz * t)).astype(np.int16).tobytes()


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit samples."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def make_tone_reply(params: ToneReplyParams, ctx):
    from pipecat.frames.frames import (
        BotStoppedSpeakingFrame,
        InputAudioRawFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        TTSTextFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.utils.time import time_now_iso8601

    rate = ctx.audio_out_sample_rate
    reply = tone(params.reply_secs, rate, params.tone_hz, params.amplitude)
    step = int(rate * 0.02) * 2  # 20 ms of 16-bit mono

    class ToneReply(FrameProcessor):
        """Answers each loud stretch of input with a tone; a loud sound interrupts it."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.speaking = False
            self._loud_since = None
            self._quiet_since = None
            self._turn_started = 0.0
            self._replying = False
            #: Monotonic times each answer began, and each interruption was sent.
            self.replied_at: list[float] = []
            self.interrupted_at: list[float] = []

        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                await self._listen(frame)
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self._replying = False
            await self.push_frame(frame, direction)

        async def _listen(self, frame):
            now = time.monotonic()
            if rms(frame.audio) >= params.speech_rms:
                self._quiet_since = None
                self._loud_since = self._loud_since or now
                if not self.speaking and now - self._loud_since >= params.start_ms / 1000:
                    await self._user_started(now)
            else:
                self._loud_since = None
                self._quiet_since = self._quiet_since or now
                if self.speaking and now - self._quiet_since >= params.stop_ms / 1000:
                    await self._user_stopped(now)

        async def _user_started(self, now):
            self.speaking = True
            self._turn_started = now
            await self.push_frame(UserStartedSpeakingFrame())
            if self._replying:
                self._replying = False
                self.interrupted_at.append(time.monotonic())
                await self.broadcast_interruption()

        async def _user_stopped(self, now):
            self.speaking = False
            heard = now - self._turn_started
            await self.push_frame(UserStoppedSpeakingFrame())
            await self.push_frame(
                TranscriptionFrame(f"({heard:.1f} s of sound)", "user", time_now_iso8601()), FrameDirection.DOWNSTREAM
            )
            self._replying = True
            await self.push_frame(TTSStartedFrame())
            await self.push_frame(TTSTextFrame(params.reply_text, text_type="sentence"))
            self.replied_at.append(time.monotonic())
            for i in range(0, len(reply), step):
                await self.push_frame(TTSAudioRawFrame(reply[i : i + step], rate, 1))
            await self.push_frame(TTSStoppedFrame())

    return ToneReply(name=ctx.processor_id)


TYPES = [
    TypeInfo(
        kind="processor",
        name="tone_reply",
        params=ToneReplyParams,
        factory=make_tone_reply,
        summary="answers loud input with a tone, interrupted by loud input: checks a transport without speech models",
    ),
]
