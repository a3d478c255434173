"""Pass-through, logging and frame-filter processors.

They let a graph be built, run and tested before any speech service exists,
and serve as plain stages in conformance tests.
"""

import asyncio
from typing import Annotated

import pipecat.frames.frames as pipecat_frames
from loguru import logger
from pipecat.frames.frames import Frame, SystemFrame
from pipecat.processors.filters.frame_filter import FrameFilter
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pydantic import AfterValidator, Field

from pipelines.errors import did_you_mean
from pipelines.registry import TypeInfo
from pipelines.spec import Params


def frame_type(name: str) -> type[Frame]:
    """Resolves a pipecat frame class by name, with a did-you-mean on failure."""
    cls = getattr(pipecat_frames, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Frame)):
        names = [n for n, c in vars(pipecat_frames).items() if isinstance(c, type) and issubclass(c, Frame)]
        hint = did_you_mean(name, names)
        raise ValueError(f"unknown frame type '{name}'" + (f" ({hint})" if hint else ""))
    return cls


def _known_frame_types(names: list[str]) -> list[str]:
    for name in names:
        frame_type(name)
    return names


#: A list of pipecat frame class names, each checked at validation time.
FrameTypeNames = Annotated[list[str], AfterValidator(_known_frame_types)]


class PassThroughParams(Params):
    delay_ms: float = Field(0.0, ge=0, le=10_000, description="work time spent on each data frame, to simulate a slow stage")


class PassThrough(FrameProcessor):
    """Forwards every frame; optionally spends ``delay_ms`` on each non-system frame."""

    def __init__(self, *, delay_ms: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self._delay = delay_ms / 1000.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if self._delay and not isinstance(frame, SystemFrame):
            await asyncio.sleep(self._delay)
        await self.push_frame(frame, direction)


class LoggerParams(Params):
    prefix: str = ""
    ignore: FrameTypeNames = Field(
        default_factory=lambda: ["InputAudioRawFrame", "OutputAudioRawFrame", "BotSpeakingFrame", "UserSpeakingFrame"],
        description="frame types not logged",
    )


class FrameLog(FrameProcessor):
    """Logs each frame that passes (with its direction) and forwards it."""

    def __init__(self, *, prefix: str, ignore: tuple[type[Frame], ...], **kwargs):
        super().__init__(**kwargs)
        self._prefix = prefix or self.name
        self._ignore = ignore

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, self._ignore):
            arrow = "->" if direction == FrameDirection.DOWNSTREAM else "<-"
            logger.info(f"{self._prefix} {arrow} {frame}")
        await self.push_frame(frame, direction)


class FilterParams(Params):
    allow: FrameTypeNames = Field(description="frame types that pass; system and end frames always pass")


TYPES = [
    TypeInfo(
        "processor", "passthrough", PassThroughParams,
        lambda p, ctx: PassThrough(delay_ms=p.delay_ms, name=ctx.processor_id),
        "forwards every frame (optionally slowly)",
    ),
    TypeInfo(
        "processor", "logger", LoggerParams,
        lambda p, ctx: FrameLog(prefix=p.prefix, ignore=tuple(frame_type(n) for n in p.ignore), name=ctx.processor_id),
        "logs the frames that pass",
    ),
    TypeInfo(
        "processor", "filter", FilterParams,
        lambda p, ctx: FrameFilter(tuple(frame_type(n) for n in p.allow)),
        "lets only the listed frame types through (pipecat FrameFilter)",
    ),
]
