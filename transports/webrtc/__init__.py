"""The ``webrtc`` transport type: a browser (or any WebRTC peer) talks to the agent.

``framegraph run FILE`` serves the agent's web page and the SmallWebRTC offer
endpoint on ``host:port`` (``pipelines.server``, docs/sessions.md); each peer that connects gets
its own worker, built with this transport around its connection. Nothing here
imports aiortc: validating a config must stay cheap.
"""

from typing import Annotated, Any

from pydantic import Field

from pipelines.client_protocol.messages import MAX_CLIENT_MESSAGE_BYTES
from pipelines.registry import TypeInfo
from pipelines.transport_contract import SDP_OFFER, ServedParams, peer_from, video_io


class WebRTCParams(ServedParams):
    peer_timeout_secs: float = Field(
        15.0, gt=0, le=27, description="a peer silent this long (no data-channel ping, after 3 s) is dropped and its "
        "worker ended; until then a page back from a dropped connection resumes its session"
    )
    max_message_bytes: int = Field(
        MAX_CLIENT_MESSAGE_BYTES, gt=0, le=16 * 1024 * 1024, description="larger client data-channel messages are refused"
    )
    ice_servers: list[Annotated[str, Field(pattern=r"^(stun|stuns|turn|turns):\S+$")]] = Field(
        default_factory=list, description="STUN/TURN URLs; none are needed on loopback or a LAN"
    )


def make_webrtc_transport(params: WebRTCParams, ctx: Any):
    """Builds one participant's transport around the connection the server accepted."""
    from pipecat.transports.base_transport import TransportParams

    from transports.webrtc.transport import WebRTCTransport

    return WebRTCTransport(
        peer_from(ctx, "webrtc"),
        TransportParams(**params.audio_io(), **video_io(ctx.video_out)),
        peer_timeout_secs=params.peer_timeout_secs,
        max_message_bytes=params.max_message_bytes,
        input_name="input",
        output_name="output",
    )


TYPES = [
    TypeInfo(
        kind="transport",
        name="webrtc",
        params=WebRTCParams,
        factory=make_webrtc_transport,
        servable=SDP_OFFER,
        summary="browser or WebRTC peer over SmallWebRTC (aiortc); `framegraph run` serves the page",
    ),
]
