"""Output- and input-transport mixins shared by the network transports.

``ClientSignals`` makes an output transport stop bot audio at once on an
interruption and tell its client, in order with the audio, when to drop what
it buffered (see ``transports.client_messages``): it implements the output
contract ``pipelines.interruptions.InterruptibleOutput``, whose
``clear_buffer`` the interruption guard calls. Plain pipecat keeps playing
the chunk it was writing and whatever the transport had queued, and a client
plays out its jitter buffer: about 140 ms of bot audio after an interruption
on loopback WebRTC (docs/pipecat-facts.md). With the audio queue emptied and the client
told, what still plays is the time the message takes to arrive.

``EndsWorkerOnDisconnect`` makes an input transport end its agent's worker
when the peer leaves, so a closed or dropped connection never leaves a worker
running with nobody to talk to.
"""

import time

from loguru import logger

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelWorkerFrame,
    Frame,
    InterruptionFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipelines.interruptions.output import BufferedOutput
from pipelines.pipecat_compat import io_params
from transports import client_messages as cm


class ClientSignals(BufferedOutput):
    """Mixin for a ``BaseOutputTransport``: stop at once and tell the client.

    Attributes:
        interrupted_at: ``time.monotonic()`` of the last interruption this
            output handled (0.0 before any); tests and benchmarks measure from it.
    """

    interrupted_at: float = 0.0

    async def tell_client_to_drop(self) -> bool:
        await self.tell_client(cm.message(cm.BOT_INTERRUPTED))
        return True

    async def tell_client(self, msg: dict) -> None:
        """Sends ``msg`` to the client now, ahead of queued frames."""
        await self.send_message(OutputTransportMessageUrgentFrame(message=msg))

    async def start(self, frame: StartFrame):
        await super().start(frame)
        # Every processor before the output has started: the agent listens.
        rates = {"audio_in_sample_rate": io_params(self).audio_in_sample_rate, "audio_out_sample_rate": self.sample_rate}
        await self.tell_client(cm.message(cm.BOT_READY, rates))

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            self.interrupted_at = time.monotonic()
        await super().process_frame(frame, direction)

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM):
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, BotStartedSpeakingFrame):
                await self.tell_client(cm.message(cm.BOT_STARTED_SPEAKING))
            elif isinstance(frame, BotStoppedSpeakingFrame):
                await self.tell_client(cm.message(cm.BOT_STOPPED_SPEAKING))
            elif isinstance(frame, TTSTextFrame) and frame.text.strip():
                await self.tell_client(cm.bot_text(frame.text))
        await super().push_frame(frame, direction)


class EndsWorkerOnDisconnect:
    """Mixin for a ``BaseInputTransport``: the peer leaving ends the worker."""

    async def end_worker(self, reason: str) -> None:
        """Asks the worker running this transport to cancel, giving ``reason``."""
        logger.info(f"{self}: ending the agent's worker: {reason}")
        await self.push_frame(CancelWorkerFrame(reason=reason), FrameDirection.UPSTREAM)
