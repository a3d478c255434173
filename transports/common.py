"""Params every audio transport shares, the video out a processor asks for, and importing an optional pipecat transport."""

from importlib import import_module
from types import ModuleType
from typing import Literal

from loguru import logger
from pydantic import Field

from pipelines.audio import BOT_SAMPLE_RATE, USER_SAMPLE_RATE
from pipelines.registry import VideoOut
from pipelines.spec import Params

#: Sample rates a transport may use: those whose 10 ms chunk is a whole number
#: of samples (pipecat cuts audio in 10 ms chunks; other rates misbehave or crash).
SampleRate = Literal[8000, 12000, 16000, 24000, 32000, 44100, 48000]


class AudioTransportParams(Params):
    audio_in_sample_rate: SampleRate = Field(USER_SAMPLE_RATE, description="Hz of the user's audio inside the pipeline")
    audio_out_sample_rate: SampleRate = Field(BOT_SAMPLE_RATE, description="Hz of the bot's audio inside the pipeline")
    audio_out_10ms_chunks: int = Field(
        2, ge=1, le=10, description="bot audio written per chunk, in 10 ms; less is less to cut off on an interruption"
    )

    def audio_io(self) -> dict:
        """Keyword arguments of pipecat's TransportParams for two-way audio at these rates."""
        return dict(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=self.audio_in_sample_rate,
            audio_out_sample_rate=self.audio_out_sample_rate,
            audio_out_10ms_chunks=self.audio_out_10ms_chunks,
        )


def video_io(video_out: VideoOut | None) -> dict:
    """Keyword arguments of pipecat's TransportParams for the video a processor draws (none: no video out).

    Frames come already drawn at the frame rate, in step with the audio
    (``pipelines.av_sync``): pipecat's video task repeats the latest one
    at ``fps`` (not live: no queue of frames to fall behind on).
    """
    if video_out is None:
        return {}
    return dict(video_out_enabled=True, video_out_is_live=False, video_out_width=video_out.width,
                video_out_height=video_out.height, video_out_framerate=video_out.fps)


def import_optional_transport(module: str) -> ModuleType:
    """Imports an optional pipecat transport module (daily, local) without pipecat's own install advice.

    pipecat logs two ERROR lines when its transport's SDK is missing, with an
    install command of its own (``uv add "pipecat-ai[daily]"``); framegraph's
    one-line error (``missing_extra``) names the framegraph extra instead, so
    a user sees one command, not two different ones.

    Raises:
        ImportError: the SDK (or pipecat's module) is not installed.
    """
    logger.disable(module)
    try:
        return import_module(module)
    finally:
        logger.enable(module)
