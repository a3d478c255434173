"""What a transport module builds on: the params every audio transport shares, video out, serving.

Beside the registry (``pipelines.registry``), below the transports and the
server, so both read the same contract:

- ``AudioTransportParams``: the sample rates and chunking every audio transport takes.
- ``video_io``: pipecat's video-out keyword arguments for the video a processor draws.
- ``ServedParams``, ``SDP_OFFER``, ``SOCKET``, ``peer_from``: a servable
  transport type (``TypeInfo.servable``, see ``pipelines.registry.Servable``)
  takes ``ServedParams`` (where the server listens, how many participants it
  takes, TLS). The server accepts a connection, then builds the agent with
  ``build_agent(agent, peer=connection)``; the transport factory finds it in
  ``BuildContext.peer`` (``peer_from``). ``framegraph run`` of a servable
  transport starts the same server as ``framegraph serve``.
- ``import_optional_transport``: an optional pipecat transport (daily, local)
  without pipecat's own install advice.

This module is light (no FastAPI, no aiortc) so that validating a config stays cheap.
"""

from importlib import import_module
from types import ModuleType
from typing import Any, Literal

from loguru import logger
from pydantic import Field, model_validator

from pipelines.audio import BOT_SAMPLE_RATE, USER_SAMPLE_RATE
from pipelines.registry import BuildContext, Servable, VideoOut
from pipelines.spec import ConfigFile, Params

#: Sample rates a transport may use: those whose 10 ms chunk is a whole number
#: of samples (pipecat cuts audio in 10 ms chunks; other rates misbehave or crash).
SampleRate = Literal[8000, 12000, 16000, 24000, 32000, 44100, 48000]


class AudioTransportParams(Params):
    audio_in_sample_rate: SampleRate = Field(USER_SAMPLE_RATE, description="Hz of the user's audio inside the pipeline")
    audio_out_sample_rate: SampleRate = Field(BOT_SAMPLE_RATE, description="Hz of the bot's audio inside the pipeline")
    audio_out_10ms_chunks: int = Field(
        2, ge=1, le=10, description="bot audio written per chunk, in 10 ms; less is less to cut off on an interruption"
    )

    def audio_io(self) -> dict:
        """Keyword arguments of pipecat's TransportParams for two-way audio at these rates."""
        return dict(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=self.audio_in_sample_rate,
            audio_out_sample_rate=self.audio_out_sample_rate,
            audio_out_10ms_chunks=self.audio_out_10ms_chunks,
        )


def video_io(video_out: VideoOut | None) -> dict:
    """Keyword arguments of pipecat's TransportParams for the video a processor draws (none: no video out).

    Frames come already drawn at the frame rate, in step with the audio
    (``pipelines.av_sync``): pipecat's video task repeats the latest one
    at ``fps`` (not live: no queue of frames to fall behind on).
    """
    if video_out is None:
        return {}
    return dict(video_out_enabled=True, video_out_is_live=False, video_out_width=video_out.width,
                video_out_height=video_out.height, video_out_framerate=video_out.fps)


SDP_OFFER = Servable(signalling="sdp-offer")
"""Served by answering an SDP offer (``POST /sessions/{id}/offer``)."""

SOCKET = Servable(signalling="socket")
"""Served by handing an accepted WebSocket over (``WS /sessions/{id}/ws``)."""

#: Client messages that change the LLM context or make the LLM run, which a served agent
#: takes only when its YAML enables them (``transport: {client_context: [...]}``; ``pipelines.client_protocol.rtvi``).
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


def import_optional_transport(module: str) -> ModuleType:
    """Imports an optional pipecat transport module (daily, local) without pipecat's own install advice.

    pipecat logs two ERROR lines when its transport's SDK is missing, with an
    install command of its own (``uv add "pipecat-ai[daily]"``); framegraph's
    one-line error (``missing_extra``) names the framegraph extra instead, so
    a user sees one command, not two different ones.

    Raises:
        ImportError: the SDK (or pipecat's module) is not installed.
    """
    logger.disable(module)
    try:
        return import_module(module)
    finally:
        logger.enable(module)
