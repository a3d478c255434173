"""The ``text_lines`` transport: pipecat input and output transports around two text files."""

import asyncio
from pathlib import Path

from pipecat.frames.frames import EndWorkerFrame, Frame, StartFrame, TextFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from pipelines import BufferedOutput


class LinesInput(BaseInputTransport):
    """Sends each line of a file downstream as a ``TextFrame``, then ends the worker."""

    def __init__(self, params: TransportParams, *, lines: list[str], **kwargs):
        super().__init__(params, **kwargs)
        self._lines = lines
        self._feeder: asyncio.Task | None = None

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._feeder is None:
            self._feeder = self.create_task(self._feed(), name="lines_feeder")

    async def _feed(self) -> None:
        for line in self._lines:
            await self.push_frame(TextFrame(line), FrameDirection.DOWNSTREAM)
        await self.push_frame(EndWorkerFrame(reason="no more lines"))


class LinesOutput(BufferedOutput, BaseOutputTransport):
    """Writes the text of every ``TextFrame`` that reaches it as one line.

    ``BufferedOutput`` is its interruption contract: an interruption clears
    what pipecat's media senders queued (text has nothing else buffered).
    """

    def __init__(self, params: TransportParams, *, path: Path, **kwargs):
        super().__init__(params, **kwargs)
        self._path = path

    async def start(self, frame: StartFrame):
        await super().start(frame)
        self._path.write_text("", encoding="utf-8")
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, TextFrame) and direction == FrameDirection.DOWNSTREAM:
            with self._path.open("a", encoding="utf-8") as out:
                out.write(frame.text + "\n")
        await super().process_frame(frame, direction)


class TextLinesTransport(BaseTransport):
    """The two ends, named ``input`` and ``output`` like every framegraph transport's."""

    def __init__(self, params, source: Path, target: Path):
        super().__init__(name="text_lines")
        transport_params = TransportParams(**params.audio_io())
        lines = source.read_text(encoding="utf-8").splitlines()
        self._input = LinesInput(transport_params, lines=lines, name="input")
        self._output = LinesOutput(transport_params, path=target, name="output")

    def input(self) -> LinesInput:
        return self._input

    def output(self) -> LinesOutput:
        return self._output
