"""The synthetic transport: an in-process input and output for tests.

The input lets a test push frames and audio as a real transport would; the
output records what it writes and, like a sound card, plays audio in real
time (each write returns once the previous chunk has played), so bot-speaking
events and interruption timing behave as they do with a real peer.
"""

import asyncio
import time
from dataclasses import dataclass

from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, OutputImageRawFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pydantic import Field

from pipelines.av_sync import AudioClockedOutput
from pipelines.interruptions.output import BufferedOutput
from pipelines.registry import TypeInfo, VideoOut
from pipelines.transport_contract import AudioTransportParams, video_io


class SyntheticParams(AudioTransportParams):
    audio_out_10ms_chunks: int = Field(4, ge=1, le=10, description="bot audio written per chunk, in 10 ms (pipecat's default)")
    realtime: bool = Field(True, description="play output audio at its real duration, as a sound card does")
    video_out: bool = Field(False, description="accept avatar/video frames at the output (at the avatar's size and rate)")


@dataclass
class Written:
    """One thing the output wrote, with the monotonic time it was written."""

    time: float
    frame: Frame


class SyntheticInput(BaseInputTransport):
    """Input end: tests push frames with ``inject`` and audio with ``push_audio_frame``."""

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def inject(self, frame: Frame) -> None:
        """Sends ``frame`` downstream as if it had arrived from the peer."""
        if isinstance(frame, InputAudioRawFrame):
            await self.push_audio_frame(frame)
        else:
            await self.push_frame(frame, FrameDirection.DOWNSTREAM)


class SyntheticOutput(AudioClockedOutput, BufferedOutput, BaseOutputTransport):
    """Output end: records every written audio chunk and image, in order.

    Its ``clear_buffer`` (the interruption contract) drops what its media
    senders queue; the "card" it plays into has no buffer beyond the chunk playing.
    """

    def __init__(self, params: TransportParams, *, realtime: bool, **kwargs):
        super().__init__(params, **kwargs)
        self.written: list[Written] = []
        self._realtime = realtime
        self._played_until = 0.0

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        return await self.clocked_write(frame, self._play(frame))

    async def _play(self, frame: OutputAudioRawFrame) -> bool:
        if self._realtime:
            # Block while the previous chunk is still playing: one chunk of buffer.
            await asyncio.sleep(max(0.0, self._played_until - time.monotonic()))
            duration = len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)
            self._played_until = max(time.monotonic(), self._played_until) + duration
        self.written.append(Written(time.monotonic(), frame))
        return True

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        """Real time: the chunk written starts playing when the write returns; otherwise it has played at once."""
        return self.audio_clock(), first if self._realtime else end

    async def write_video_frame(self, frame: OutputImageRawFrame) -> bool:
        self.written.append(Written(time.monotonic(), frame))
        return True

    def audio_written(self) -> bytes:
        """All audio written so far, concatenated."""
        return b"".join(w.frame.audio for w in self.written if isinstance(w.frame, OutputAudioRawFrame))


class SyntheticTransport(BaseTransport):
    """A transport whose peer is the test itself."""

    def __init__(self, params: SyntheticParams, video_out: VideoOut | None = None, **kwargs):
        super().__init__(**kwargs)
        transport_params = TransportParams(
            **params.audio_io(),
            audio_out_auto_silence=False,
            audio_out_end_silence_secs=0,
            **(video_io(video_out) if params.video_out and video_out else dict(video_out_enabled=params.video_out)),
        )
        self._input = SyntheticInput(transport_params, name="input")
        self._output = SyntheticOutput(transport_params, realtime=params.realtime, name="output")

    def input(self) -> SyntheticInput:
        return self._input

    def output(self) -> SyntheticOutput:
        return self._output


TYPES = [
    TypeInfo(
        "transport", "synthetic", SyntheticParams,
        lambda p, ctx: SyntheticTransport(p, ctx.video_out, name="synthetic"),
        "in-process input and recording output, for tests",
    ),
]
