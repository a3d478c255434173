"""The file transport's output: the bot's audio into a WAV on the input's timeline, avatar poses beside it.

pipecat's output transport has no playback clock (docs/pipecat-facts.md):
the output here paces ``write_audio_frame`` itself on the timeline, one chunk
ahead, as a sound card does. Audio-clocked frames (avatar poses) are
released by that clock (``pipelines.av_sync``); those that can record
themselves (``RecordableFrame``: a pose in its wire format) are written as
JSON lines, each with the WAV sample it belongs to.
"""

import json
import wave
from pathlib import Path

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

from pipelines.audio import open_wav_writer
from pipelines.av_sync import AudioClockedOutput, RecordableFrame
from pipelines.interruptions.output import BufferedOutput
from transports.file.clock import Timeline


class FileOutput(AudioClockedOutput, BufferedOutput, BaseOutputTransport):
    """Writes the bot's audio into a WAV at its place on the timeline, paced like a sound card.

    Implements the interruption contract (``BufferedOutput.clear_buffer``):
    what its media senders queue is dropped, audio-clocked frames not yet
    released too; the WAV has no client to tell.
    """

    def __init__(self, params: TransportParams, *, path: Path | None, timeline: Timeline,
                 input_secs: float, poses: Path | None = None, **kwargs):
        super().__init__(params, **kwargs)
        self._path = path
        self._poses_path = poses
        self._poses = None
        self._chunk_at = 0.0  # where the last chunk written went on the timeline (seconds)
        self._timeline = timeline
        self._input_secs = input_secs
        self._wav: wave.Wave_write | None = None
        self._written_samples = 0

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._path and not self._wav:
            self._wav = open_wav_writer(self._path, self.sample_rate)
        if self._poses_path and not self._poses:
            self._poses = self._poses_path.open("w", encoding="utf-8")
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

    def audio_clock(self) -> float:
        """The timeline (virtual in fast mode)."""
        return self._timeline.now()

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        """Sample ``first`` plays where the chunk went on the timeline."""
        return self._chunk_at, first

    async def write_clocked_frame(self, frame: Frame, at: float) -> None:
        """A frame that records itself (a pose) becomes one JSON line: its record, and ``sample``: where it belongs in the WAV."""
        if isinstance(frame, RecordableFrame) and self._poses:
            line = {"sample": round(at * self.sample_rate), **frame.record()}
            self._poses.write(json.dumps(line) + "\n")
        await super().write_clocked_frame(frame, at)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        return await self.clocked_write(frame, self._play(frame))

    async def _play(self, frame: OutputAudioRawFrame) -> bool:
        """Places ``frame`` at the timeline's present, or right after the chunk still playing.

        Returns once that previous chunk has played: one chunk of buffer, as
        a sound card has.
        """
        start = self._chunk_at = self._write_at(self._timeline.now(), frame.audio)
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
        """Pads the WAV to the input's length, so both line up end to end too, and closes the files."""
        if self._poses:
            self._poses.close()
            self._poses = None
        if not self._wav:
            return
        end = max(self._input_secs, self._timeline.now())
        gap = int(end * self.sample_rate) - self._written_samples
        if gap > 0:
            self._wav.writeframes(bytes(2 * gap))
        self._wav.close()
        self._wav = None
