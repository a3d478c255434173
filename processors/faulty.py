"""Conformance fixtures: processors that break the interruption contract on purpose.

They exist so that ``framegraph check`` and the tests can show a violation
being caught and named; no shipped agent uses them.
"""

import asyncio

from pydantic import Field

from pipecat.frames.frames import Frame, InterruptionFrame, SystemFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipelines.registry import TypeInfo
from pipelines.spec import Params


class SwallowParams(Params):
    delay_ms: float = Field(0.0, ge=0, le=10_000, description="work time spent on each data frame")


class SwallowInterruptions(FrameProcessor):
    """Forwards every frame except InterruptionFrame, which it drops unseen.

    It never hands the interruption to ``FrameProcessor.process_frame``, so
    its queue is not flushed and its in-flight work is not cancelled; in plain
    pipecat it also hides the interruption from every processor after it.
    """

    def __init__(self, *, delay_ms: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self._delay = delay_ms / 1000.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            return
        await super().process_frame(frame, direction)
        if self._delay and not isinstance(frame, SystemFrame):
            await asyncio.sleep(self._delay)
        await self.push_frame(frame, direction)


TYPES = [
    TypeInfo(
        "processor", "swallow_interruptions", SwallowParams,
        lambda p, ctx: SwallowInterruptions(delay_ms=p.delay_ms, name=ctx.processor_id),
        "conformance fixture: drops InterruptionFrame without flushing (framegraph check must fail)",
    ),
]
