"""Output- and input-transport mixins shared by the network transports.

``ClientSignals`` makes an output transport stop bot audio at once on an
interruption and tell its client, in order with the audio, when to drop what
it buffered (see ``pipelines.client_protocol.messages``): it implements the output
contract ``pipelines.interruptions.InterruptibleOutput``, whose
``clear_buffer`` the interruption guard calls. Plain pipecat keeps playing
the chunk it was writing and whatever the transport had queued, and a client
plays out its jitter buffer: about 140 ms of bot audio after an interruption
on loopback WebRTC (docs/pipecat-facts.md). With the audio queue emptied and the client
told, what still plays is the time the message takes to arrive.

Every other client message is pipecat's RTVI (``pipelines.client_protocol``
puts pipecat's ``RTVIProcessor`` and ``RTVIObserver`` in every served graph).
A message about the bot's output is stale when that output is: an RTVI
message about text or audio made before an interruption (``bot-llm-text``,
``bot-tts-text``, ``bot-started-speaking``, ...) that reaches the output after
it is dropped, so a client never shows words the user interrupted after it
was told to drop their audio. The observer's own ``bot-interrupted`` is
dropped too: the output's, sent in order with the audio, is the one that counts.
Avatar poses (30 ``server-message`` s a second) go only to a client that asked
for them (``client-message`` ``avatar-poses``, ``pipelines.client_protocol.messages.ask_for_poses``):
framegraph's page and clients ask; pipecat's prebuilt client, which would
only log them, does not.

``EndsWorkerOnDisconnect`` makes an input transport end its agent's worker
when the peer leaves, so a closed or dropped connection never leaves a worker
running with nobody to talk to.
"""

import time

from loguru import logger
from pipecat.frames.frames import (
    CancelWorkerFrame,
    Frame,
    InterruptionFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.processors.frameworks.rtvi.frames import RTVIClientMessageFrame
from pipecat.utils.utils import obj_id

from pipelines.client_protocol import messages as cm
from pipelines.interruptions.output import BufferedOutput

#: RTVI server messages about the bot's output: stale when that output is.
BOT_OUTPUT_MESSAGES = frozenset({
    "bot-llm-started", "bot-llm-text", "bot-llm-stopped", "bot-llm-marker",
    "bot-tts-started", "bot-tts-text", "bot-tts-stopped", "bot-output",
    cm.BOT_STARTED_SPEAKING,
})
#: Attribute of a message frame naming the id of the frame it reports on.
SOURCE_FRAME_ATTR = "framegraph_source_frame_id"


class ClientSignals(BufferedOutput):
    """Mixin for a ``BaseOutputTransport``: stop at once, tell the client, drop stale reports.

    Attributes:
        interrupted_at: ``time.monotonic()`` of the last interruption this
            output handled (0.0 before any); tests and benchmarks measure from it.
    """

    interrupted_at: float = 0.0
    #: Messages about frames with a lower id than this were made before the latest interruption.
    _stale_before: int = 0
    #: Whether the client asked for avatar poses.
    _poses_wanted: bool = False

    async def tell_client_to_drop(self) -> bool:
        self._stale_before = obj_id()
        await self.tell_client(cm.message(cm.BOT_INTERRUPTED))
        return True

    async def tell_client(self, msg: dict) -> None:
        """Sends ``msg`` to the client now, ahead of queued frames."""
        await super().send_message(OutputTransportMessageUrgentFrame(message=msg))

    async def send_message(self, frame: OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
        kind = cm.kind_of(frame.message)
        if kind == cm.BOT_INTERRUPTED:
            return
        if kind == cm.SERVER_MESSAGE and not self._poses_wanted and is_pose(frame.message):
            return
        if kind in BOT_OUTPUT_MESSAGES and getattr(frame, SOURCE_FRAME_ATTR, frame.id) < self._stale_before:
            logger.debug(f"{self}: dropped a stale {kind!r} message (its output was interrupted)")
            return
        await super().send_message(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            self.interrupted_at = time.monotonic()
        elif isinstance(frame, RTVIClientMessageFrame) and frame.type == cm.POSES_REQUEST:
            self._poses_wanted = not isinstance(frame.data, dict) or bool(frame.data.get("send", True))
        await super().process_frame(frame, direction)


def is_pose(message: dict) -> bool:
    """Whether an RTVI message is an avatar pose."""
    data = message.get("data")
    return isinstance(data, dict) and data.get("type") == cm.AVATAR_POSE


class EndsWorkerOnDisconnect:
    """Mixin for a ``BaseInputTransport``: the peer leaving ends the worker."""

    async def end_worker(self, reason: str) -> None:
        """Asks the worker running this transport to cancel, giving ``reason``."""
        logger.info(f"{self}: ending the agent's worker: {reason}")
        await self.push_frame(CancelWorkerFrame(reason=reason), FrameDirection.UPSTREAM)
