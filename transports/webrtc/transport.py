"""framegraph's WebRTC transport: pipecat's SmallWebRTC with three guarantees.

1. An interruption stops bot audio at once: the audio the output track still
   queues is dropped and the client is told to drop what it buffered
   (``ClientSignals``).
2. A peer that closes, fails or goes silent ends the agent's worker: closing
   is pipecat's ``closed`` state; silence is no data-channel ping for
   ``peer_timeout_secs`` (the page and the test clients ping every second),
   which catches a peer that vanished long before ICE consent expires (30 s).
   A silent peer is reported with the ``on_peer_dropped`` event.
3. A client message that is not a JSON object, or is larger than
   ``max_message_bytes``, is refused with a logged reason; the agent goes on.

Imports aiortc (through pipecat); ``transports.webrtc`` loads it lazily.
"""

import asyncio
import json
from typing import Any

from loguru import logger
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import (
    SmallWebRTCInputTransport,
    SmallWebRTCOutputTransport,
    SmallWebRTCTransport,
)

from pipelines.av_sync import AudioClockedOutput
from pipelines.client_protocol.signals import ClientSignals, EndsWorkerOnDisconnect
from pipelines.pipecat_compat import drop_webrtc_track_chunks

#: How often the peer watchdog looks at the connection.
WATCH_PERIOD_SECS = 0.5


class WebRTCOutput(AudioClockedOutput, ClientSignals, SmallWebRTCOutputTransport):
    """SmallWebRTC output that stops at once on an interruption and sends poses as their audio goes out."""

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        """A write returns when the track takes its last 10 ms for sending."""
        return self.audio_clock(), end - self.sample_rate // 100

    def drop_queued_audio(self) -> int:
        """Drops the 10 ms chunks SmallWebRTC's audio track still queues."""
        return drop_webrtc_track_chunks(self)


class WebRTCInput(EndsWorkerOnDisconnect, SmallWebRTCInputTransport):
    """SmallWebRTC input whose peer leaving ends the worker."""

    def __init__(self, transport: "WebRTCTransport", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._transport = transport

    async def cleanup(self):
        self._transport.stop_watchdog()
        await super().cleanup()


class WebRTCTransport(SmallWebRTCTransport):
    """One participant's SmallWebRTC connection, with framegraph's guarantees.

    Events (besides pipecat's ``on_client_connected``, ``on_client_disconnected``
    and ``on_app_message``):

    - ``on_peer_dropped(transport, connection, reason)``: the peer went silent
      or its connection failed without a close; the worker is being ended.
    - ``on_message_refused(transport, reason)``: a client message was refused.
    """

    def __init__(
        self,
        connection: SmallWebRTCConnection,
        params: TransportParams,
        *,
        peer_timeout_secs: float,
        max_message_bytes: int,
        input_name: str | None = None,
        output_name: str | None = None,
    ):
        super().__init__(connection, params, input_name=input_name, output_name=output_name)
        self._connection = connection
        self._peer_timeout_secs = peer_timeout_secs
        self._max_message_bytes = max_message_bytes
        self._watchdog: asyncio.Task | None = None
        self._peer_gone = False
        self._register_event_handler("on_peer_dropped")
        self._register_event_handler("on_message_refused")

        @connection.event_handler("failed")
        async def _on_failed(conn: SmallWebRTCConnection):
            await self._peer_lost("the WebRTC connection failed")

    def input(self) -> WebRTCInput:
        if not self._input:
            self._input = WebRTCInput(self, self._client, self._params, name=self._input_name)
        return self._input

    def output(self) -> WebRTCOutput:
        if not self._output:
            self._output = WebRTCOutput(self._client, self._params, name=self._output_name)
        return self._output

    async def _on_client_connected(self, webrtc_connection):
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_peer(), name=f"{self}::watch_peer")
        await super()._on_client_connected(webrtc_connection)

    async def _on_client_disconnected(self, webrtc_connection):
        await self._peer_left("the peer closed the connection")

    async def _peer_lost(self, reason: str):
        logger.warning(f"{self}: peer {self._connection.pc_id} dropped: {reason}")
        await self._peer_left(f"peer dropped: {reason}", dropped=reason)

    async def _peer_left(self, why: str, *, dropped: str | None = None):
        """Reports the peer gone (once) and ends the worker."""
        if self._peer_gone:
            return
        self._peer_gone = True
        self.stop_watchdog()
        if dropped is not None:
            await self._call_event_handler("on_peer_dropped", self._connection, dropped)
        await super()._on_client_disconnected(self._connection)
        if self._input:
            await self._input.end_worker(why)

    async def _watch_peer(self):
        silent_for = 0.0
        while not self._peer_gone:
            await asyncio.sleep(WATCH_PERIOD_SECS)
            silent_for = 0.0 if self._connection.is_connected() else silent_for + WATCH_PERIOD_SECS
            if silent_for >= self._peer_timeout_secs:
                await self._peer_lost(f"nothing heard for {self._peer_timeout_secs:g} s")
                return

    def stop_watchdog(self):
        """Stops watching the peer (the worker is ending)."""
        if self._watchdog and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self._watchdog = None

    async def _on_app_message(self, message: Any, sender: str):
        reason = self.refusal(message)
        if reason:
            logger.debug(f"{self}: refused a client message: {reason}")  # the server logs a summary (JunkMeter)
            await self._call_event_handler("on_message_refused", reason)
            return
        await super()._on_app_message(message, sender)

    def refusal(self, message: Any) -> str | None:
        """Why a client message is refused, or None when it is accepted."""
        if not isinstance(message, dict):
            return f"expected a JSON object, got {type(message).__name__}"
        size = len(json.dumps(message))
        if size > self._max_message_bytes:
            return f"{size} bytes is over the limit of {self._max_message_bytes}"
        return None
