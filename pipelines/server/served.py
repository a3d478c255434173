"""What a transport module needs to be served: its params' base, the peer, ``serve``.

A servable transport type (``TypeInfo.servable``, see ``pipelines.registry.Servable``)
takes ``ServedParams`` (where the server listens, how many participants it
takes, TLS). The server accepts a connection, then builds the agent with
``build_agent(agent, peer=connection)``; the transport factory finds it in
``BuildContext.peer`` (``peer_from``). This module is light (no FastAPI, no
aiortc) so that validating a config stays cheap.
"""

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.registry import BuildContext, Servable
from pipelines.spec import ConfigFile
from transports.common import AudioTransportParams

SDP_OFFER = Servable(signalling="sdp-offer")
"""Served by answering an SDP offer (``POST /sessions/{id}/offer``)."""

SOCKET = Servable(signalling="socket")
"""Served by handing an accepted WebSocket over (``WS /sessions/{id}/ws``)."""

#: Client messages that change the LLM context or make the LLM run, which a served agent
#: takes only when its YAML enables them (``transport: {client_context: [...]}``; ``transports.rtvi``).
ContextMessage = Literal["send-text", "append-to-context", "eval-context"]


class ServedParams(AudioTransportParams):
    """Where the server listens and how many participants it takes."""

    host: str = Field("127.0.0.1", min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_\[\]-]+$",
                      description="address the server listens on")
    port: int = Field(7860, ge=0, le=65535, description="port the server listens on (0: any free port)")
    max_participants: int | None = Field(
        None, gt=0, le=10_000, description="more are refused (HTTP 503, WebSocket close 1013) until one leaves; none: no limit"
    )
    ssl_certfile: ConfigFile = Field(
        "", description="PEM certificate (relative to the config's folder): serve HTTPS/WSS, which browsers "
        "on other machines need before they share a microphone"
    )
    ssl_keyfile: ConfigFile = Field("", description="PEM private key of ssl_certfile (relative to the config's folder)")
    client_context: list[ContextMessage] = Field(
        default_factory=list, max_length=3,
        description="client messages that may change the LLM context or run the LLM (off by default): "
        "send-text (a typed user turn), append-to-context (user or assistant text; never the system prompt), "
        "eval-context (pipecat's eval harness seeding the conversation; its system messages are dropped)"
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> "ServedParams":
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self


def peer_from(ctx: BuildContext, transport_type: str) -> Any:
    """The connection the server accepted for this participant.

    Raises:
        RuntimeError: when the transport is built outside the server, naming
            the command that serves it.
    """
    peer = ctx.peer
    if peer is None:
        raise RuntimeError(
            f"the {transport_type} transport is built for each connecting client by the server: "
            "start the agent with `framegraph run FILE`"
        )
    return peer


async def serve(agent: Any, options: Any) -> None:
    """``TypeInfo.serve`` of the served transports: ``framegraph run`` awaits it."""
    from pipelines.server.app import serve as serve_agents

    await serve_agents([agent], options)
