"""The avatar's frame: one face pose on the bot's audio timeline."""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pipecat.frames.frames import DataFrame, OutputImageRawFrame, OutputTransportMessageFrame

from processors.avatar import wire
from processors.avatar.arkit import COUNT


@dataclass
class PoseFrame(DataFrame):
    """One face pose: ARKit's 52 blendshape weights, stamped on the bot's audio timeline.

    A data frame, interruptible like the bot audio it goes with: an
    interruption flushes it and the interruption guard drops it wherever a
    stale one turns up. The avatar pushes each pose just before the audio
    sample it belongs to, so the output transport handles it in order with
    the audio.

    The timeline: utterance ``n`` (1, 2, ... in a session) is one TTS
    context, one bot reply; ``time_s`` counts from its first audio sample
    (``sample / sample_rate`` at the avatar, which is the audio the output
    plays). A client shows the pose when that sample plays. Poses with
    ``utterance`` 0 belong to no audio (idle, blinks, the ease back to neutral
    after an interruption): show them when they arrive; their ``time_s`` is
    the avatar's clock since it started.

    Parameters:
        weights: 52 float32 weights in 0..1, in ``processors.avatar.arkit.NAMES`` order.
        utterance: The utterance number, or 0 for a pose tied to no audio.
        time_s: Seconds from the utterance's first sample (or the avatar's clock).
        sample: The audio sample index within the utterance (-1 for utterance 0).
        viseme: The viseme weighing most in this pose (``sil`` at rest).
    """

    audio_clocked: ClassVar[bool] = True  # framegraph's outputs release it when its sample plays (pipelines.av_sync)

    weights: np.ndarray = field(default_factory=lambda: np.zeros(COUNT, dtype=np.float32))
    utterance: int = 0
    time_s: float = 0.0
    sample: int = -1
    viseme: str = "sil"

    def __str__(self):
        return f"{self.name}(utterance: {self.utterance}, time: {self.time_s:.3f}, viseme: {self.viseme})"

    def record(self) -> dict[str, Any]:
        """The pose as one record of an output that records (``pipelines.av_sync.RecordableFrame``): its wire form
        and ``utterance_sample``, its sample within the utterance."""
        return {"utterance_sample": self.sample, **wire.encode(self)}


@dataclass
class PoseMessageFrame(OutputTransportMessageFrame):
    """A pose as the client message (``processors.avatar.wire``), released with its pose's audio sample."""

    audio_clocked: ClassVar[bool] = True


@dataclass
class FaceImageFrame(OutputImageRawFrame):
    """A rendered face for the video track, shown when its pose's audio sample plays.

    ``sync_with_audio`` is set too, for outputs without framegraph's audio clock (pipecat's own, e.g. Daily).
    """

    audio_clocked: ClassVar[bool] = True
