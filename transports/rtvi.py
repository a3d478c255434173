"""pipecat's client protocol (RTVI) for served agents, through pipecat's own processor and observer.

A served graph (one built for a connecting client: WebRTC, WebSocket, Daily)
starts with pipecat's ``RTVIProcessor``, which handles what the client sends
(``client-ready``, ``send-text``, ``client-message``, ``append-to-context``,
``disconnect-bot``, ``raw-audio``, ...), and its worker runs ``RTVIObserver``,
which reports what the graph does (``bot-llm-*``, ``bot-tts-*``,
``user-input``, speaking events, metrics, ``server-message``, function calls).
Graphs that are not served carry neither: pipecat's default RTVI halves raw
frame throughput (docs/pipecat-facts.md).

pipecat 1.14's processor no longer handles the older ``append-to-context``
message that pipecat's JavaScript client still sends for
``appendToContext()``; ``FramegraphRTVIProcessor`` adds it: the message
(``{"role", "content", "run_immediately"}``) is appended to the LLM context,
and the LLM runs when asked.

``FramegraphRTVIObserver`` tags every message with the id of the frame it
reports on, so the output (``transports.client_signals.ClientSignals``) can
tell a message about output made before an interruption from a fresh one.
A transcript the STT marked out of domain (``result["out_of_domain"]``: a
closed-domain agent did not understand it) goes out with ``"understood":
false`` in its data, so a page shows it as not understood rather than as
the open pass's guessed words.
"""

from pipecat.frames.frames import (
    InputTransportMessageFrame,
    LLMMessagesAppendFrame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIObserverParams, RTVIProcessor

from pipelines.observers import Companions
from transports.client_signals import SOURCE_FRAME_ATTR

APPEND_TO_CONTEXT = "append-to-context"


class FramegraphRTVIProcessor(RTVIProcessor):
    """pipecat's ``RTVIProcessor`` that also takes ``append-to-context``."""

    async def process_frame(self, frame, direction: FrameDirection):
        message = frame.message if isinstance(frame, InputTransportMessageFrame) else None
        if isinstance(message, dict) and message.get("label") == "rtvi-ai" and message.get("type") == APPEND_TO_CONTEXT:
            await FrameProcessor.process_frame(self, frame, direction)
            await self.append_to_context(message.get("data"))
            return
        await super().process_frame(frame, direction)

    async def append_to_context(self, data) -> None:
        """Appends an ``append-to-context`` message's ``content`` as ``role``; runs the LLM when ``run_immediately``."""
        data = data if isinstance(data, dict) else {}
        role, content = data.get("role"), data.get("content")
        if role not in ("user", "assistant", "system") or not isinstance(content, str):
            await self.send_error("append-to-context needs data.role (user, assistant or system) and data.content (text)")
            return
        await self.push_frame(LLMMessagesAppendFrame(
            messages=[{"role": role, "content": content}], run_llm=bool(data.get("run_immediately"))))


class FramegraphRTVIObserver(Companions, RTVIObserver):
    """pipecat's ``RTVIObserver`` whose messages name the frame they report on; the worker's other observers ride on it."""

    def __init__(self, rtvi: RTVIProcessor, *, params: RTVIObserverParams | None = None):
        super().__init__(rtvi, params=params)
        self.rtvi_processor = rtvi
        self.reporting_on: int | None = None
        self._not_understood = False

    async def on_push_frame(self, data: FramePushed):
        self.reporting_on = data.frame.id
        self._not_understood = isinstance(data.frame, TranscriptionFrame) and bool(
            isinstance(data.frame.result, dict) and data.frame.result.get("out_of_domain"))
        try:
            await super().on_push_frame(data)
        finally:
            self.reporting_on = None
            self._not_understood = False

    async def send_rtvi_message(self, model, exclude_none: bool = True):
        message = model.model_dump(exclude_none=exclude_none)
        if self._not_understood and isinstance(message.get("data"), dict) and "text" in message["data"]:
            message["data"]["understood"] = False
        frame = OutputTransportMessageUrgentFrame(message=message)
        if self.reporting_on is not None:
            setattr(frame, SOURCE_FRAME_ATTR, self.reporting_on)
        await self.rtvi_processor.push_frame(frame)


def client_protocol() -> tuple[FramegraphRTVIProcessor, FramegraphRTVIObserver]:
    """A served graph's RTVI processor (first in its pipeline) and the observer its worker runs."""
    rtvi = FramegraphRTVIProcessor(name="rtvi")
    return rtvi, FramegraphRTVIObserver(rtvi)
