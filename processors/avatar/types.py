"""The ``avatar`` processor type: its YAML params and its factory."""

from typing import Literal

from pydantic import Field

from pipelines.registry import TypeInfo, VideoOut
from pipelines.spec import Params


class AvatarParams(Params):
    fps: int = Field(30, ge=5, le=60, description="poses (and video frames) per second")
    output: Literal["poses", "video", "poses_and_video", "frames"] = Field(
        "poses",
        description="poses: pose messages to the client; video: a rendered face as the agent's video track (webrtc, daily); "
                    "poses_and_video: both; frames: PoseFrames only (tests, 3D clients)",
    )
    size: int = Field(256, ge=64, le=1024, description="rendered face width and height in pixels")
    source: Literal["auto", "phonemes", "audio"] = Field("auto", description="mouth from: auto (phonemes if the TTS gives them, else audio), phonemes, audio")
    lookahead_ms: int = Field(120, ge=0, le=500, description="phoneme look-ahead for coarticulation (audio held back that long)")
    hold_ms: int = Field(40, ge=0, le=1000, description="longest wait for more TTS audio before held-back audio goes out")
    max_change_per_s: float = Field(12.0, gt=0, le=100, description="largest change of any blendshape weight per second")
    blinks: bool = Field(True, description="the eyes blink every 2-5 s")
    idle_motion: bool = Field(True, description="eyes and brows move slightly")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="seeds blinks and idle motion (reproducible faces)")

    def video_out(self) -> VideoOut | None:
        """The face it draws, for the transport's video out (``output: video`` or ``poses_and_video``)."""
        if self.output in ("video", "poses_and_video"):
            return VideoOut(self.size, self.size, self.fps)
        return None


def make_avatar(params: AvatarParams, ctx):
    """Creates the avatar processor."""
    from processors.avatar.processor import AvatarProcessor

    return AvatarProcessor(**params.model_dump(), name=ctx.processor_id)


TYPES = [
    TypeInfo("processor", "avatar", AvatarParams, make_avatar,
             "the bot's speech as ARKit blendshape poses (phonemes or audio), optionally a rendered 2D face",
             live_params=("output",)),
]
