"""framegraph's WebSocket transport: pipecat's FastAPI WebSocket transport, guarded.

One participant per WebSocket connection to the server's ``/ws`` endpoint.
Two wire formats, both pipecat's serializers, chosen by the YAML's
``serializer`` (``auto`` by default: the client's first message says which):

- ``protobuf``: pipecat's ``ProtobufFrameSerializer`` (binary frames; RTVI
  messages inside message frames), what pipecat's JavaScript WebSocket
  transport and ``framegraph talk`` speak.
- ``json``: RTVI as JSON text, pipecat's ``EvalSerializer`` (the bot end of
  the wire pipecat's ``RTVIClientSerializer`` and eval harness speak): user
  audio comes in as ``raw-audio``, the bot's goes out as ``eval-bot-audio``.
  When the first message is the eval harness's ``eval-connect``, its flags
  apply as pipecat's dev runner applies them (``capture_bot_audio``, and
  ``skip_tts`` before anything is said), so ``pipecat eval run --bot-url
  ws://HOST:PORT/ws`` works against any framegraph agent.

On top of pipecat:

- Bot audio stops at once on an interruption and the client is told
  (``ClientSignals``); pipecat's own serialized ``InterruptionFrame`` follows.
- A message larger than ``max_message_bytes``, one that does not decode, or
  audio that does not match the agent's input format is refused with a
  logged reason; pipecat would end the connection on a decode error.
- The client leaving ends the worker. A close frame (codes 1000/1001) is a
  clean close; anything else (the server's ping got no pong, the socket
  died) is reported with the ``on_peer_dropped`` event.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger
from pipecat.evals.serializer import EvalConnectionFlags, EvalSerializer, parse_eval_connect
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    LLMConfigureOutputFrame,
    LLMMessagesUpdateFrame,
)
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketInputTransport,
    FastAPIWebsocketOutputTransport,
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

from pipelines.av_sync import AudioClockedOutput
from pipelines.client_protocol.signals import ClientSignals, EndsWorkerOnDisconnect

#: WebSocket close codes of a peer that said goodbye.
CLEAN_CLOSE_CODES = (1000, 1001)


class GuardedProtobufSerializer(ProtobufFrameSerializer):
    """pipecat's protobuf serializer that refuses bad input instead of raising."""

    def __init__(self, *, max_message_bytes: int, audio_in_sample_rate: int, on_refused: Callable[[str], Any]):
        super().__init__()
        self._max_bytes = max_message_bytes
        self._sample_rate = audio_in_sample_rate
        self._on_refused = on_refused

    def size_problem(self, data: str | bytes) -> str | None:
        """Why a message is refused for its size, or None."""
        if len(data) > self._max_bytes:
            return f"{len(data)} bytes is over the limit of {self._max_bytes}"
        return None

    async def refuse(self, reason: str) -> None:
        """Reports a refused client message; the server counts them and logs one summary line per
        connection every few seconds (``pipelines.server.limits.JunkMeter``), never a line per message."""
        logger.debug(f"refused a client message: {reason}")
        await self._on_refused(reason)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        reason, frame = self.size_problem(data), None
        if reason is not None:
            await self.refuse(reason)
            return None
        if isinstance(data, str):
            reason = "a text message; frames are binary protobuf"
        else:
            try:
                frame = await super().deserialize(data)
            except Exception as e:  # protobuf raises DecodeError, RuntimeWarning, ...
                reason = f"not a protobuf frame ({e.__class__.__name__}: {e})"
        if isinstance(frame, InputAudioRawFrame):
            reason = self._audio_problem(frame)
        if reason:
            await self.refuse(reason)
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


#: The ``serializer`` choices of a WebSocket agent.
SERIALIZERS = ("auto", "protobuf", "json")


class NegotiatedSerializer(FrameSerializer):
    """One connection's wire format: protobuf or JSON RTVI, fixed or chosen by the client's first message.

    A binary first message means protobuf, a text one JSON RTVI; an
    ``eval-connect`` first message (pipecat's eval harness) also hands its
    flags to ``on_eval_connect``. Until the client has spoken, frames go out
    as protobuf (an RTVI client says ``client-ready`` before the agent says anything).
    """

    def __init__(self, choice: str, protobuf: "GuardedProtobufSerializer", *,
                 on_eval_connect: Callable[[EvalConnectionFlags], Awaitable[None]]):
        super().__init__()
        if choice not in SERIALIZERS:
            raise ValueError(f"serializer must be one of {SERIALIZERS}, not {choice!r}")
        self.protobuf = protobuf
        self.json = EvalSerializer()
        self.json.set_capture_audio(True)
        self.mode = None if choice == "auto" else choice
        self._on_eval_connect = on_eval_connect

    async def setup(self, frame):
        await super().setup(frame)
        await self.protobuf.setup(frame)
        await self.json.setup(frame)

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if self.mode == "json":
            return await self.json.serialize(frame)
        return await self.protobuf.serialize(frame)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if self.mode == "protobuf" or (self.mode is None and isinstance(data, bytes)):
            self.mode = "protobuf"
            return await self.protobuf.deserialize(data)
        refused = self.protobuf.size_problem(data)
        if refused:
            await self.protobuf.refuse(refused)
            return None
        message, refused = _rtvi_message(data)
        if refused:  # refused (counted, summarized) here: pipecat's serializer would log every one
            await self.protobuf.refuse(refused)
            return None
        if self.mode is None:
            self.mode = "json"
            flags = _eval_flags(message)
            if flags is not None:
                self.json.set_capture_audio(flags.capture_bot_audio)
                await self._on_eval_connect(flags)
        frame = await self.json.deserialize(data)
        if isinstance(frame, LLMMessagesUpdateFrame):
            # An eval-context, which pipecat's serializer turns into a whole new context (system prompt
            # included): passed on as the message it was, for the RTVI processor to take or refuse.
            return InputTransportMessageFrame(message=json.loads(data))
        return frame


def _rtvi_message(data: str | bytes) -> tuple[dict | None, str | None]:
    """A JSON RTVI message and None, or None and why it is refused."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(message, dict) or message.get("label") != "rtvi-ai":
        return None, "not an RTVI message (label rtvi-ai)"
    return message, None


def _eval_flags(message: dict) -> EvalConnectionFlags | None:
    try:
        return parse_eval_connect(message)
    except ValueError:
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
    """FastAPI WebSocket output that tells the client on an interruption and sends poses as their audio plays.

    pipecat paces a WebSocket's audio at exactly real time: each chunk is
    sent when the one before it has finished playing at the client. A client
    has no jitter buffer of its own to speak of (a browser's WebAudio queue,
    ``framegraph talk``), so every chunk the server's event loop sends a few
    ms late is a gap in the bot's voice; with a dozen sessions on one loop
    the bot's replies played 30% longer than they are, in hundreds of small
    gaps (bench/load.py). This output keeps the same real-time schedule but
    runs ``lead_secs`` ahead of it: the client holds that much audio, and a
    loop late by less than that is not heard. A client that obeys
    ``bot-interrupted`` drops what it holds (the page and ``framegraph talk``
    do), so the lead adds nothing to what is heard after an interruption.
    """

    def __init__(self, *args, lead_secs: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._lead_secs = lead_secs

    async def _write_audio_sleep(self):
        """Sleeps until the client holds at most ``lead_secs`` of audio; a client that ran dry starts again now.

        Behind the schedule, it returns at once: the next chunk goes out in
        the same turn of the event loop, not one turn later.
        """
        now = time.monotonic()
        self._next_send_time = max(self._next_send_time, now) + self._send_interval
        delay = self._next_send_time - self._lead_secs - now
        if delay > 0:
            await asyncio.sleep(delay)

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        """A write returns when the client holds what is left of the schedule: ``end`` plays when that has played."""
        now = self.audio_clock()
        return now, end - round(max(0.0, self._next_send_time - now) * self.sample_rate)


class WebsocketInput(EndsWorkerOnDisconnect, FastAPIWebsocketInputTransport):
    """FastAPI WebSocket input whose client leaving ends the worker."""


class WebsocketTransport(FastAPIWebsocketTransport):
    """One participant's WebSocket connection, with framegraph's guarantees.

    Events (besides pipecat's ``on_client_connected`` and ``on_client_disconnected``):

    - ``on_peer_dropped(transport, websocket, reason)``: the connection died
      without a close frame; the worker is being ended.
    - ``on_message_refused(transport, reason)``: a client message was refused.
    """

    def __init__(self, websocket: Any, params: FastAPIWebsocketParams, *, max_message_bytes: int,
                 serializer: str = "auto", audio_lead_secs: float = 0.0, **kwargs):
        self._socket = _CloseCodeWebSocket(websocket)
        protobuf = GuardedProtobufSerializer(
            max_message_bytes=max_message_bytes,
            audio_in_sample_rate=params.audio_in_sample_rate,
            on_refused=self._refused,
        )
        params.serializer = NegotiatedSerializer(serializer, protobuf, on_eval_connect=self._eval_connected)
        super().__init__(self._socket, params, **kwargs)
        self._input = WebsocketInput(self, self._client, self._params, name=self._input_name)
        self._output = WebsocketOutput(self, self._client, self._params, name=self._output_name,
                                       lead_secs=audio_lead_secs)
        self._register_event_handler("on_peer_dropped")
        self._register_event_handler("on_message_refused")

    async def _eval_connected(self, flags: EvalConnectionFlags):
        """Applies the eval harness's flags as pipecat's eval transport does: ``skip_tts`` before anything is said."""
        logger.info(f"{self}: pipecat's eval harness connected ({flags.model_dump()})")
        await self._input.push_frame(LLMConfigureOutputFrame(skip_tts=flags.skip_tts))

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
