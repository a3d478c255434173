"""Audio-clocked frames: what goes with the bot's audio leaves the output when that audio plays.

pipecat's output queues a frame that must stay in step with the audio (an
image with ``sync_with_audio``, a transport message) behind the audio chunks
before it, and hands it on once they have been *written*. A write returns
when the transport has taken the chunk (SmallWebRTC: sent; a sound card:
when the previous chunk has played), and audio short of a whole chunk is
still in the sender's buffer behind the frame: avatar poses and face images
left about 64 ms before their sample played (docs/avatar.md).

``AudioClockedOutput`` (a mixin for framegraph's ``BaseOutputTransport``
subclasses) takes a frame whose class says ``audio_clocked = True`` out of
pipecat's queue when it arrives, notes its place in the audio stream (the
samples that entered the output before it), and releases it when that
sample plays, by the output's audio clock: each write tells it which sample
is playing when (``playing_after_write``, one line per transport). An
interruption drops every frame not yet released. An output without the
mixin (pipecat's own, e.g. Daily) treats these frames as pipecat does.

An audio-clocked frame that can say itself as a record (``RecordableFrame``:
an avatar pose) is written by an output that records what it plays (the
file transport's JSON lines), which so needs to know no processor's frames.
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    OutputTransportMessageFrame,
    StartFrame,
    SystemFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection

from pipelines import pipecat_compat as compat
from pipelines.interruptions.output import DroppedReport
from pipelines.pressure import LATE_SECS, PRESSURE


@runtime_checkable
class RecordableFrame(Protocol):
    """An audio-clocked frame that an output which records (the file transport) writes as one JSON-ready record."""

    def record(self) -> dict[str, Any]:
        """What the frame says, as plain JSON-ready data; the output adds where in its audio it played."""
        ...


#: Longest wait between two looks at the clock (a virtual clock moves without telling).
_POLL_SECS = 0.02


def audio_clocked(frame: Frame) -> bool:
    """Whether ``frame`` belongs to the audio sample it follows (its class sets ``audio_clocked``)."""
    return getattr(frame, "audio_clocked", False)


class AudioClockedOutput:
    """Mixin for a ``BaseOutputTransport``: releases audio-clocked frames when their sample plays.

    List it first among the output's bases. Transports say, in
    ``playing_after_write``, which sample is playing when a write returns.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._entered = 0  # samples (at the output rate) that entered in whole chunks
        self._partial = 0  # samples entered but short of a whole chunk
        self._written = 0  # samples handed to write_audio_frame
        self._taken = 0  # samples whose write has returned (the clock knows when they play)
        # Per write still needed: (its first sample, clock time, sample playing then).
        self._writes: deque[tuple[int, float, int]] = deque()
        self._held: deque[tuple[int, Frame]] = deque()
        # Audio that entered and is not all written: (the sample after it, when it entered).
        self._arrivals: deque[tuple[int, float]] = deque()
        self._plays_until: float | None = None  # clock time the audio written so far has played
        self._wake = asyncio.Event()
        self._release_task: asyncio.Task | None = None

    # The transport's clock (overridden by outputs with their own timeline)

    def audio_clock(self) -> float:
        """The clock ``playing_after_write`` reads, in seconds."""
        return time.monotonic()

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        """(clock time, sample playing then) right after samples ``first``..``end`` were written.

        The default is a sound card's: a write returns when the chunk before
        it has played, so ``first`` starts playing now.
        """
        return self.audio_clock(), first

    async def write_clocked_frame(self, frame: Frame, at: float) -> None:
        """Hands on a released frame that is neither a message nor an image (a pose); ``at`` is its clock time."""
        await self.write_transport_frame(frame)

    # Frames in

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, StartFrame) and self._release_task is None:
                self._release_task = self.create_task(self._release(), "audio-clocked-release")
            elif isinstance(frame, InterruptionFrame):
                self._drop_held()
            elif isinstance(frame, OutputAudioRawFrame) and frame.transport_destination is None:
                self._count_in(frame)
            elif isinstance(frame, TTSStoppedFrame) and self._partial:
                self._entered += self._chunk_samples()  # pipecat pads the rest of the chunk with silence
                self._partial = 0
            elif audio_clocked(frame) and not isinstance(frame, SystemFrame):
                self._held.append((self._entered + self._partial, frame))
                self._wake.set()
                return
        await super().process_frame(frame, direction)

    def _chunk_samples(self) -> int:
        return max(1, self.audio_chunk_size // (2 * compat.io_params(self).audio_out_channels))

    def _count_in(self, frame: OutputAudioRawFrame) -> None:
        samples = len(frame.audio) // (2 * frame.num_channels)
        if frame.sample_rate != self.sample_rate:
            samples = round(samples * self.sample_rate / frame.sample_rate)
        chunk = self._chunk_samples()
        self._partial += samples
        self._arrivals.append((self._entered + self._partial, self.audio_clock()))
        self._entered += self._partial // chunk * chunk
        self._partial %= chunk

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        return await self.clocked_write(frame, super().write_audio_frame(frame))

    async def clocked_write(self, frame: OutputAudioRawFrame, write: Awaitable[bool]) -> bool:
        """Awaits ``write`` (the transport writing ``frame``) and notes which sample plays then.

        An output that defines its own ``write_audio_frame`` returns
        ``await self.clocked_write(frame, self.its_own_write(frame))``.
        """
        first = self._written
        self._written += len(frame.audio) // (2 * frame.num_channels)
        written = await write
        self._taken = first + len(frame.audio) // (2 * frame.num_channels)
        at, sample = self.playing_after_write(first, self._taken)
        self._writes.append((first, at, sample))
        self._count_chunk(first, at + (first - sample) / self.sample_rate)
        self._plays_until = at + (self._taken - sample) / self.sample_rate
        oldest = self._held[0][0] if self._held else self._taken  # no frame will ask about an earlier sample
        while len(self._writes) > 1 and self._writes[1][0] <= oldest:
            self._writes.popleft()
        if self._held:  # nothing held: the release task sleeps on, no wake-up per chunk
            self._wake.set()
        return written

    def _count_chunk(self, first: int, starts: float) -> None:
        """Counts the chunk from sample ``first`` (playing at ``starts``) for the load level, late or not.

        Late: it was in the output before the audio ahead of it had played,
        and starts playing more than ``LATE_SECS`` after that audio ended
        (the listener heard a gap); a chunk that came after a pause (the
        next reply) is on time whenever it plays.
        """
        while self._arrivals and self._arrivals[0][0] <= first:
            self._arrivals.popleft()
        arrived = self._arrivals[0][1] if self._arrivals else None
        ahead = self._plays_until
        PRESSURE.count_chunk(ahead is not None and arrived is not None and arrived < ahead
                             and starts - ahead > LATE_SECS)

    # Release

    def _due(self, position: int) -> float | None:
        """Clock time when sample ``position`` plays; None while its audio is not written yet.

        The time comes from the write that holds the sample, not the latest
        one: a later chunk may go later than right after it (a gap in the
        stream). A frame after all the audio written waits for the audio
        that entered behind it, so it goes where that audio goes, not where
        the clock was when it arrived; with none behind it (an idle pose,
        the end of a reply) it belongs to the end of what was written.
        """
        if position > self._taken or position == self._taken < self._entered + self._partial:
            return None
        if not self._writes:
            return self.audio_clock()
        _, at, sample = next((w for w in reversed(self._writes) if w[0] <= position), self._writes[0])
        return at + (position - sample) / self.sample_rate

    async def _release(self) -> None:
        while True:
            due = self._due(self._held[0][0]) if self._held else None
            wait = None if due is None else due - self.audio_clock()
            if wait is not None and wait <= 0:
                _, frame = self._held.popleft()
                await self._hand_on(frame, due)
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), None if wait is None else min(wait, _POLL_SECS))
            except TimeoutError:
                pass

    async def _hand_on(self, frame: Frame, at: float) -> None:
        if isinstance(frame, OutputTransportMessageFrame):
            await self.send_message(frame)
        elif isinstance(frame, OutputImageRawFrame):
            await compat.show_video_image(self, frame)
        else:
            await self.write_clocked_frame(frame, at)
        await self.push_frame(frame)

    # Interruptions

    def _drop_held(self) -> int:
        """Drops every frame not released; the stream goes on from the audio written."""
        dropped = len(self._held)
        self._held.clear()
        self._entered, self._partial = self._written, 0
        self._writes.clear()
        self._arrivals.clear()
        return dropped

    async def clear_buffer(self) -> DroppedReport:
        """The output contract's clear, plus the audio-clocked frames not yet released."""
        report = await super().clear_buffer()
        return report + DroppedReport(self._drop_held())

    async def cleanup(self):
        if self._release_task is not None:
            await self.cancel_task(self._release_task)
            self._release_task = None
        await super().cleanup()
