"""The ``tone_reply`` processor: answers each loud stretch of input with a tone; a loud sound interrupts it."""

import time

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

from processors.tone import ToneReplyParams, rms, tone


class ToneReply(FrameProcessor):
    """Answers each loud stretch of input with a tone; a loud sound interrupts it.

    Args:
        params: the type's params (``ToneReplyParams``).
        sample_rate: the rate of the tone it answers with (the transport's output rate).
    """

    def __init__(self, params: ToneReplyParams, *, sample_rate: int, **kwargs):
        super().__init__(**kwargs)
        self._params = params
        self._rate = sample_rate
        self._reply = tone(params.reply_secs, sample_rate, params.tone_hz, params.amplitude)
        self._step = int(sample_rate * 0.02) * 2  # 20 ms of 16-bit mono
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
        if rms(frame.audio) >= self._params.speech_rms:
            self._quiet_since = None
            self._loud_since = self._loud_since or now
            if not self.speaking and now - self._loud_since >= self._params.start_ms / 1000:
                await self._user_started(now)
        else:
            self._loud_since = None
            self._quiet_since = self._quiet_since or now
            if self.speaking and now - self._quiet_since >= self._params.stop_ms / 1000:
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
        await self.push_frame(TTSTextFrame(self._params.reply_text, text_type="sentence"))
        self.replied_at.append(time.monotonic())
        for i in range(0, len(self._reply), self._step):
            await self.push_frame(TTSAudioRawFrame(self._reply[i : i + self._step], self._rate, 1))
        await self.push_frame(TTSStoppedFrame())
