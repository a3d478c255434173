"""The ``websocket`` transport type: a program talks to the agent over a WebSocket.

``framegraph run FILE`` serves ``ws://host:port/ws`` (``pipelines.server``, docs/sessions.md);
each connection gets its own worker. ``serializer`` picks the wire format:
pipecat's protobuf frames (``pipecat.frames.protobufs``, which pipecat's
JavaScript client and ``framegraph talk URL --input in.wav`` speak), JSON RTVI
(pipecat's eval harness and ``RTVIClientSerializer``), or ``auto`` (the
default): the client's first message says which. The server
pings every ``ping_interval_secs`` and drops a client whose pong is
``ping_timeout_secs`` late, so a dead peer is noticed within their sum.
"""

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.client_protocol.messages import MAX_CLIENT_MESSAGE_BYTES
from pipelines.registry import TypeInfo
from pipelines.transport_contract import SOCKET, ServedParams, peer_from

#: Longest a dead peer may go unnoticed, seconds.
MAX_DEAD_PEER_SECS = 30


class WebsocketParams(ServedParams):
    serializer: Literal["auto", "protobuf", "json"] = Field(
        "auto", description="wire format: pipecat protobuf, JSON RTVI, or auto (the client's first message says which)"
    )
    max_message_bytes: int = Field(MAX_CLIENT_MESSAGE_BYTES, gt=0, le=16 * 1024 * 1024, description="larger client messages are refused")
    audio_lead_secs: float = Field(
        0.1, ge=0, le=1,
        description="bot audio sent ahead of real time: the client plays through the server's scheduling jitter "
        "(a client that obeys bot-interrupted drops it)",
    )
    ping_interval_secs: float = Field(10.0, gt=0, le=MAX_DEAD_PEER_SECS, description="the server pings the client this often")
    ping_timeout_secs: float = Field(10.0, gt=0, le=MAX_DEAD_PEER_SECS, description="a client whose pong is this late is dropped")

    @model_validator(mode="after")
    def _dead_peer_noticed_in_time(self) -> "WebsocketParams":
        if self.ping_interval_secs + self.ping_timeout_secs > MAX_DEAD_PEER_SECS:
            raise ValueError(
                f"ping_interval_secs + ping_timeout_secs must be at most {MAX_DEAD_PEER_SECS} "
                "so a dead peer is noticed in time"
            )
        return self


def make_websocket_transport(params: WebsocketParams, ctx: Any):
    """Builds one participant's transport around the WebSocket the server accepted."""
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

    from transports.websocket.transport import WebsocketTransport

    return WebsocketTransport(
        peer_from(ctx, "websocket"),
        FastAPIWebsocketParams(**params.audio_io(), allowed_origins=[]),
        max_message_bytes=params.max_message_bytes,
        serializer=params.serializer,
        audio_lead_secs=params.audio_lead_secs,
        input_name="input",
        output_name="output",
    )


TYPES = [
    TypeInfo(
        kind="transport",
        name="websocket",
        params=WebsocketParams,
        factory=make_websocket_transport,
        servable=SOCKET,
        summary="a program over a WebSocket: pipecat protobuf or JSON RTVI (pipecat's eval harness); `framegraph talk` is a client",
    ),
]
