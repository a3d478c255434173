"""pipecat's client protocol (RTVI) for served agents, through pipecat's own processor and observer.

A served graph (one built for a connecting client: WebRTC, WebSocket, Daily)
starts with pipecat's ``RTVIProcessor``, which handles what the client sends
(``client-ready``, ``send-text``, ``client-message``, ``append-to-context``,
``disconnect-bot``, ``raw-audio``, ...), and its worker runs ``RTVIObserver``,
which reports what the graph does (``bot-llm-*``, ``bot-tts-*``,
``user-input``, speaking events, metrics, ``server-message``, function calls).
Graphs that are not served carry neither: pipecat's default RTVI halves raw
frame throughput (docs/pipecat-facts.md).

pipecat 1.14's processor no longer handles the older ``append-to-context``
message that pipecat's JavaScript client still sends for
``appendToContext()``; ``FramegraphRTVIProcessor`` adds it: the message
(``{"role", "content", "run_immediately"}``) is appended to the LLM context,
and the LLM runs when asked.

Messages that change the LLM context or make the LLM run (``send-text``,
``append-to-context``, the eval harness's ``eval-context``) are refused (an
RTVI ``error`` naming the setting) unless the agent's YAML enables them
(``transport: {client_context: [...]}``; ``framegraph eval`` enables what the
harness needs): otherwise any client could rewrite what the agent was told.
Even enabled, no client message replaces or adds a system message, and an
``eval-context`` is appended to the context rather than replacing it, so it
is stored with the next turn like any other messages.

``FramegraphRTVIObserver`` tags every message with the id of the frame it
reports on, so the output (``pipelines.client_protocol.signals.ClientSignals``) can
tell a message about output made before an interruption from a fresh one.
A transcript the STT marked out of domain (``result["out_of_domain"]``: a
closed-domain agent did not understand it) goes out with ``"understood":
false`` in its data, so a page shows it as not understood rather than as
the open pass's guessed words.
"""

from typing import TYPE_CHECKING

from loguru import logger
from pipecat.frames.frames import (
    InputTransportMessageFrame,
    LLMMessagesAppendFrame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIObserverParams, RTVIProcessor

from pipelines.client_protocol.signals import SOURCE_FRAME_ATTR
from pipelines.observers import Companions

if TYPE_CHECKING:
    from pipelines.builder import GraphParts

APPEND_TO_CONTEXT = "append-to-context"


SEND_TEXT = "send-text"
EVAL_CONTEXT = "eval-context"
#: Roles a client may add to the context (never "system": the agent's prompt is its author's).
CLIENT_ROLES = ("user", "assistant")


class FramegraphRTVIProcessor(RTVIProcessor):
    """pipecat's ``RTVIProcessor`` that also takes ``append-to-context``, and only the context messages it may.

    Args:
        allowed: The context-changing messages this agent takes (``send-text``,
            ``append-to-context``, ``eval-context``); the rest are refused.
    """

    def __init__(self, allowed=(), **kwargs):
        super().__init__(**kwargs)
        self.allowed = frozenset(allowed)

    async def process_frame(self, frame, direction: FrameDirection):
        message = frame.message if isinstance(frame, InputTransportMessageFrame) else None
        kind = message.get("type") if isinstance(message, dict) and message.get("label") == "rtvi-ai" else None
        if kind == "client-message" and isinstance(message.get("data"), dict) and message["data"].get("t") == EVAL_CONTEXT:
            await FrameProcessor.process_frame(self, frame, direction)
            await self.seed_context(message["data"].get("d"))
            return
        if kind in (APPEND_TO_CONTEXT, SEND_TEXT) and kind not in self.allowed:
            await FrameProcessor.process_frame(self, frame, direction)
            await self.refuse(kind)
            return
        if kind == APPEND_TO_CONTEXT:
            await FrameProcessor.process_frame(self, frame, direction)
            await self.append_to_context(message.get("data"))
            return
        await super().process_frame(frame, direction)

    async def refuse(self, kind: str) -> None:
        """Tells the client that ``kind`` is not enabled for this agent (and logs it at debug level)."""
        logger.debug(f"refused a client's {kind}: not in the agent's transport client_context")
        await self.send_error(f"{kind} is not enabled for this agent (transport: client_context in its YAML)")

    async def seed_context(self, payload) -> None:
        """An eval-context (``{"messages": [...]}``): its user and assistant messages appended to the context.

        pipecat's eval serializer would replace the whole context, system
        prompt included; here the system prompt stays the agent's and the
        seeded messages are stored with the next turn, like any others.
        """
        if EVAL_CONTEXT not in self.allowed:
            await self.refuse(EVAL_CONTEXT)
            return
        given = payload.get("messages") if isinstance(payload, dict) else None
        given = given if isinstance(given, list) else []
        messages = [{"role": m["role"], "content": m["content"]} for m in given
                    if isinstance(m, dict) and m.get("role") in CLIENT_ROLES and isinstance(m.get("content"), str)]
        if len(messages) != len(given):
            await self.send_error("eval-context: only user and assistant messages with text content are taken "
                                  "(the system prompt is the agent's)")
        if messages:
            await self.push_frame(LLMMessagesAppendFrame(messages=messages, run_llm=False))

    async def append_to_context(self, data) -> None:
        """Appends an ``append-to-context`` message's ``content`` as ``role``; runs the LLM when ``run_immediately``."""
        data = data if isinstance(data, dict) else {}
        role, content = data.get("role"), data.get("content")
        if role not in CLIENT_ROLES or not isinstance(content, str):
            await self.send_error("append-to-context needs data.role (user or assistant: the system prompt is the "
                                  "agent's) and data.content (text)")
            return
        await self.push_frame(LLMMessagesAppendFrame(
            messages=[{"role": role, "content": content}], run_llm=bool(data.get("run_immediately"))))


class FramegraphRTVIObserver(Companions, RTVIObserver):
    """pipecat's ``RTVIObserver`` whose messages name the frame they report on; the worker's other observers ride on it."""

    def __init__(self, rtvi: RTVIProcessor, *, params: RTVIObserverParams | None = None):
        super().__init__(rtvi, params=params)
        self.rtvi_processor = rtvi
        self.reporting_on: int | None = None
        self._not_understood = False

    async def on_push_frame(self, data: FramePushed):
        self.reporting_on = data.frame.id
        self._not_understood = isinstance(data.frame, TranscriptionFrame) and bool(
            isinstance(data.frame.result, dict) and data.frame.result.get("out_of_domain"))
        try:
            await super().on_push_frame(data)
        finally:
            self.reporting_on = None
            self._not_understood = False

    async def send_rtvi_message(self, model, exclude_none: bool = True):
        message = model.model_dump(exclude_none=exclude_none)
        if self._not_understood and isinstance(message.get("data"), dict) and "text" in message["data"]:
            message["data"]["understood"] = False
        frame = OutputTransportMessageUrgentFrame(message=message)
        if self.reporting_on is not None:
            setattr(frame, SOURCE_FRAME_ATTR, self.reporting_on)
        await self.rtvi_processor.push_frame(frame)


def client_protocol(allowed=()) -> tuple[FramegraphRTVIProcessor, FramegraphRTVIObserver]:
    """A served graph's RTVI processor (first in its pipeline) and the observer its worker runs.

    Args:
        allowed: The context-changing client messages the agent takes (its transport's ``client_context``).
    """
    rtvi = FramegraphRTVIProcessor(allowed, name="rtvi")
    # The raw VAD events too (``vad-user-started/stopped-speaking``): with the turn's events they show a
    # client where a reply's or an interruption's time went (bench/browser.py prints that breakdown).
    return rtvi, FramegraphRTVIObserver(rtvi, params=RTVIObserverParams(vad_user_speaking_enabled=True))


def for_client(parts: "GraphParts") -> None:
    """Makes a graph one a client connects to (a ``build_agent`` addition): the RTVI processor first (right after
    the pipeline's source, so raw audio it pushes downstream reaches the input), its observer for the worker,
    and the greeting on the client's ``client-ready`` rather than at start."""
    rtvi, parts.client_observer = client_protocol(getattr(parts.agent.transport.params, "client_context", ()))
    parts.steps.insert(0, rtvi)
    if parts.keeper is not None:
        parts.keeper.greet_on_start = False
        rtvi.add_event_handler("on_client_ready", parts.keeper.on_client_ready)
