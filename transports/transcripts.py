"""Relays what the user said to the client as the live transcript.

The bot's own words go out from the output transport as they are played
(``ClientSignals``); the user's transcription never reaches the output (the
context aggregator consumes it), so an observer watches for it anywhere in
the graph. framegraph's workers run without pipecat's RTVI processor (it
halves raw frame throughput, docs/pipecat-facts.md), so nothing else would send it.
"""

from pipecat.frames.frames import InterimTranscriptionFrame, OutputTransportMessageUrgentFrame, TranscriptionFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.transports.base_output import BaseOutputTransport
from transports import client_messages as cm


class TranscriptRelay(BaseObserver):
    """Sends each user transcription to the client through ``output``."""

    def __init__(self, output: BaseOutputTransport, **kwargs):
        super().__init__(observe_every_push=False, **kwargs)
        self._output = output

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        if not isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)) or not frame.text.strip():
            return
        final = isinstance(frame, TranscriptionFrame)
        msg = cm.user_transcription(frame.text, final=final, user_id=frame.user_id, timestamp=frame.timestamp)
        await self._output.send_message(OutputTransportMessageUrgentFrame(message=msg))
