"""The output contract for interruptions: drop what is queued, tell the client, report.

Every output framegraph builds implements ``InterruptibleOutput`` (in the
spirit of livekit's ``AudioOutput.clear_buffer()``); the interruption guard
calls ``clear_buffer()`` once the output has processed an interruption, so
no bot audio or image made before it is sent after it, and a client that
buffers audio (a browser's jitter buffer, a WebSocket program) drops it too.

``BufferedOutput`` is the implementation for ``BaseOutputTransport``
subclasses: it clears every destination's media sender (pipecat's own
interruption handling clears only the frame's destination), then the
transport's own queue (``drop_queued_audio``), then tells the client
(``tell_client_to_drop``); transports override those two hooks. Outputs
framegraph takes from pipecat unchanged (daily, local) get the same
behaviour through ``clear_buffer_of``.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pipecat.transports.base_output import BaseOutputTransport

from pipelines import pipecat_compat as compat


@dataclass(frozen=True)
class DroppedReport:
    """What an output dropped when it cleared its buffers (summed across interruptions with ``+``).

    Attributes:
        frames: bot audio or image frames (or transport chunks) dropped before they were sent.
        clients_told: times the client was told to drop what it buffered.
    """

    frames: int = 0
    clients_told: int = 0

    def __add__(self, other: "DroppedReport") -> "DroppedReport":
        return DroppedReport(self.frames + other.frames, self.clients_told + other.clients_told)


@runtime_checkable
class InterruptibleOutput(Protocol):
    """An output that can drop, at once, everything it would still play."""

    async def clear_buffer(self) -> DroppedReport:
        """Drops everything queued now, tells the client to drop what it buffered, and reports what was dropped."""
        ...


class BufferedOutput:
    """``InterruptibleOutput`` for a ``BaseOutputTransport`` subclass (list it before the pipecat base)."""

    async def clear_buffer(self) -> DroppedReport:
        """Clears every media sender and the transport's queue, then tells the client."""
        frames = await compat.clear_media_senders(self) + self.drop_queued_audio()
        told = await self.tell_client_to_drop()
        return DroppedReport(frames, int(told))

    def drop_queued_audio(self) -> int:
        """Drops audio the transport accepted but has not sent yet; returns how many chunks. None by default."""
        return 0

    async def tell_client_to_drop(self) -> bool:
        """Tells the client to drop the bot audio it buffered; returns whether it was told. No client by default."""
        return False


async def _clear_pipecat_output(output: BaseOutputTransport) -> DroppedReport:
    return DroppedReport(await compat.clear_media_senders(output))


def clear_buffer_of(output: BaseOutputTransport) -> Callable[[], Awaitable[DroppedReport]]:
    """The output's ``clear_buffer``; for a pipecat output used as is (daily, local), one that clears its media senders."""
    if isinstance(output, InterruptibleOutput):
        return output.clear_buffer
    return lambda: _clear_pipecat_output(output)
