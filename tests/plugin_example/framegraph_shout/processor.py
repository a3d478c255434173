"""The ``shout`` processor: a plain pipecat ``FrameProcessor``."""

from pipecat.frames.frames import Frame, TextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class Shout(FrameProcessor):
    """Upper-cases every ``TextFrame`` and appends ``suffix``; other frames pass unchanged.

    Like every pipecat processor it forwards what it does not consume,
    ``InterruptionFrame`` included; framegraph's interruption guard does the rest.
    """

    def __init__(self, *, suffix: str, **kwargs):
        super().__init__(**kwargs)
        self._suffix = suffix

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            frame = TextFrame(frame.text.upper() + self._suffix)
        await self.push_frame(frame, direction)
