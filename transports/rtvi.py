"""pipecat's client protocol (RTVI) for served agents, through pipecat's own processor and observer.

A served graph (one built for a connecting client: WebRTC, WebSocket, Daily)
starts with pipecat's ``RTVIProcessor``, which handles what the client sends
(``client-ready``, ``send-text``, ``client-message``, ``append-to-context``,
``disconnect-bot``, ``raw-audio``, ...), and its worker runs ``RTVIObserver``,
which reports what the graph does (``bot-llm-*``, ``bot-tts-*``,
``user-input``, speaking events, metrics, ``server-message``, function calls).
Graphs that are not served carry neither: pipecat's default RTVI halves raw
frame throughput (docs/pipecat-facts.md).

``FramegraphRTVIObserver`` tags every message with the id of the frame it
reports on, so the output (``transports.client_signals.ClientSignals``) can
tell a message about output made before an interruption from a fresh one.
"""

from pipecat.frames.frames import OutputTransportMessageUrgentFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIObserverParams, RTVIProcessor
from transports.client_signals import SOURCE_FRAME_ATTR


class FramegraphRTVIObserver(RTVIObserver):
    """pipecat's ``RTVIObserver`` whose messages name the frame they report on."""

    def __init__(self, rtvi: RTVIProcessor, *, params: RTVIObserverParams | None = None):
        super().__init__(rtvi, params=params)
        self.rtvi_processor = rtvi
        self.reporting_on: int | None = None

    async def on_push_frame(self, data: FramePushed):
        self.reporting_on = data.frame.id
        try:
            await super().on_push_frame(data)
        finally:
            self.reporting_on = None

    async def send_rtvi_message(self, model, exclude_none: bool = True):
        frame = OutputTransportMessageUrgentFrame(message=model.model_dump(exclude_none=exclude_none))
        if self.reporting_on is not None:
            setattr(frame, SOURCE_FRAME_ATTR, self.reporting_on)
        await self.rtvi_processor.push_frame(frame)


def client_protocol() -> tuple[RTVIProcessor, FramegraphRTVIObserver]:
    """A served graph's RTVI processor (first in its pipeline) and the observer its worker runs."""
    rtvi = RTVIProcessor(name="rtvi")
    return rtvi, FramegraphRTVIObserver(rtvi)
