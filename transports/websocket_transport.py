"""framegraph's WebSocket transport: pipecat's FastAPI WebSocket transport, guarded.

One participant per WebSocket connection to the server's ``/ws`` endpoint,
frames in pipecat's protobuf format. On top of pipecat:

- Bot audio stops at once on an interruption and the client is told
  (``ClientSignals``); pipecat's own serialized ``InterruptionFrame`` follows.
- A message larger than ``max_message_bytes``, one that does not decode, or
  audio that does not match the agent's input format is refused with a
  logged reason; pipecat would end the connection on a decode error.
- The client leaving ends the worker. A close frame (codes 1000/1001) is a
  clean close; anything else (the server's ping got no pong, the socket
  died) is reported with the ``on_peer_dropped`` event.
"""

from collections.abc import Callable
from typing import Any

from loguru import logger

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketInputTransport,
    FastAPIWebsocketOutputTransport,
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipelines.av_sync import AudioClockedOutput
from transports.client_signals import ClientSignals, EndsWorkerOnDisconnect

#: WebSocket close codes of a peer that said goodbye.
CLEAN_CLOSE_CODES = (1000, 1001)


class GuardedProtobufSerializer(ProtobufFrameSerializer):
    """pipecat's protobuf serializer that refuses bad input instead of raising."""

    def __init__(self, *, max_message_bytes: int, audio_in_sample_rate: int, on_refused: Callable[[str], Any]):
        super().__init__()
        self._max_bytes = max_message_bytes
        self._sample_rate = audio_in_sample_rate
        self._on_refused = on_refused

    async def deserialize(self, data: str | bytes) -> Frame | None:
        reason, frame = None, None
        if len(data) > self._max_bytes:
            reason = f"{len(data)} bytes is over the limit of {self._max_bytes}"
        elif isinstance(data, str):
            reason = "a text message; frames are binary protobuf"
        else:
            try:
                frame = await super().deserialize(data)
            except Exception as e:  # protobuf raises DecodeError, RuntimeWarning, ...
                reason = f"not a protobuf frame ({e.__class__.__name__}: {e})"
        if isinstance(frame, InputAudioRawFrame):
            reason = self._audio_problem(frame)
        if reason:
            logger.warning(f"refused a client message: {reason}")
            await self._on_refused(reason)
            return None
        return frame

    def _audio_problem(self, frame: InputAudioRawFrame) -> str | None:
        if frame.sample_rate != self._sample_rate:
            return f"audio at {frame.sample_rate} Hz; this agent takes {self._sample_rate} Hz"
        if frame.num_channels not in (1, 2):
            return f"audio with {frame.num_channels} channels"
        if not frame.audio or len(frame.audio) % (2 * frame.num_channels):
            return f"audio of {len(frame.audio)} bytes is not whole 16-bit frames"
        return None


class _CloseCodeWebSocket:
    """Wraps a FastAPI WebSocket to remember the code of the disconnect it received."""

    def __init__(self, websocket: Any):
        self._websocket = websocket
        self.close_code: int | None = None

    async def receive(self) -> dict:
        message = await self._websocket.receive()
        if message["type"] == "websocket.disconnect":
            self.close_code = message.get("code")
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)


class WebsocketOutput(AudioClockedOutput, ClientSignals, FastAPIWebsocketOutputTransport):
    """FastAPI WebSocket output that tells the client on an interruption and sends poses as their audio plays."""

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        """A write sends the chunk, then sleeps as long as it plays: its end is playing when it returns."""
        return self.audio_clock(), end


class WebsocketInput(EndsWorkerOnDisconnect, FastAPIWebsocketInputTransport):
    """FastAPI WebSocket input whose client leaving ends the worker."""


class WebsocketTransport(FastAPIWebsocketTransport):
    """One participant's WebSocket connection, with framegraph's guarantees.

    Events (besides pipecat's ``on_client_connected`` and ``on_client_disconnected``):

    - ``on_peer_dropped(transport, websocket, reason)``: the connection died
      without a close frame; the worker is being ended.
    - ``on_message_refused(transport, reason)``: a client message was refused.
    """

    def __init__(self, websocket: Any, params: FastAPIWebsocketParams, *, max_message_bytes: int, **kwargs):
        self._socket = _CloseCodeWebSocket(websocket)
        params.serializer = GuardedProtobufSerializer(
            max_message_bytes=max_message_bytes,
            audio_in_sample_rate=params.audio_in_sample_rate,
            on_refused=self._refused,
        )
        super().__init__(self._socket, params, **kwargs)
        self._input = WebsocketInput(self, self._client, self._params, name=self._input_name)
        self._output = WebsocketOutput(self, self._client, self._params, name=self._output_name)
        self._register_event_handler("on_peer_dropped")
        self._register_event_handler("on_message_refused")

    async def _refused(self, reason: str):
        await self._call_event_handler("on_message_refused", reason)

    async def _on_client_disconnected(self, websocket):
        code = self._socket.close_code
        if code in CLEAN_CLOSE_CODES:
            why = "the client closed the connection"
        else:
            why = f"peer dropped: connection lost without a close frame (code {code})"
            logger.warning(f"{self}: {why}")
            await self._call_event_handler("on_peer_dropped", websocket, why)
        await super()._on_client_disconnected(websocket)
        await self._input.end_worker(why)
