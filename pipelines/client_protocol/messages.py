"""Names of pipecat's client protocol (RTVI) messages, for framegraph's clients and tests.

Every message is a JSON object ``{"label": "rtvi-ai", "type": ..., "id": ..., "data": ...}``
as pipecat's RTVI protocol defines it. Served agents speak it through
pipecat's own ``RTVIProcessor`` and ``RTVIObserver`` (``pipelines.client_protocol.rtvi``;
docs/transports.md lists every message). A client says ``client-ready`` once
it listens; the agent answers ``bot-ready``. The one message framegraph sends
itself is ``bot-interrupted``, straight from the output transport in order
with the audio: drop every bit of bot audio buffered or still arriving, and
stay silent until the next ``bot-started-speaking``.

No pipecat import here: the ``talk`` client, the WebRTC client and the tests
read the same names.
"""

import asyncio
import itertools
import time
from typing import Any

LABEL = "rtvi-ai"
#: The RTVI protocol version framegraph's clients declare in ``client-ready``.
PROTOCOL_VERSION = "1.0.0"
CLIENT_READY = "client-ready"
BOT_READY = "bot-ready"
BOT_INTERRUPTED = "bot-interrupted"
BOT_STARTED_SPEAKING = "bot-started-speaking"
BOT_STOPPED_SPEAKING = "bot-stopped-speaking"
USER_TRANSCRIPTION = "user-transcription"
BOT_TTS_TEXT = "bot-tts-text"
BOT_LLM_TEXT = "bot-llm-text"
USER_INPUT = "user-input"
SERVER_MESSAGE = "server-message"
#: The ``server-message`` data type a resumed session's server sends: ``{"type", "session_id", "turns"}``.
SESSION_RESTORED = "session-restored"
CLIENT_MESSAGE = "client-message"
#: The ``data.type`` of an avatar pose ``server-message`` (``processors.avatar.wire.MESSAGE_TYPE``).
AVATAR_POSE = "avatar-pose"
#: The ``t`` of the ``client-message`` by which a client asks for avatar poses (30 a second):
#: a served agent sends them only to clients that asked, never to others (pipecat's prebuilt client).
POSES_REQUEST = "avatar-poses"

#: Largest client message (bytes of JSON) a transport accepts; larger ones are refused.
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


_ids = itertools.count(1)


def message(kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An RTVI-shaped message of type ``kind`` with a fresh id."""
    return {"label": LABEL, "type": kind, "id": f"fg-{next(_ids)}", "data": data or {}}


def client_ready() -> dict[str, Any]:
    """What a client says once it listens; the agent answers ``bot-ready``."""
    return message(CLIENT_READY, {"version": PROTOCOL_VERSION, "about": {"library": "framegraph"}})


def ask_for_poses() -> dict[str, Any]:
    """What a client that draws the avatar says after ``client-ready``: send me the poses."""
    return message(CLIENT_MESSAGE, {"t": POSES_REQUEST, "d": {"send": True}})


def kind_of(msg: Any) -> str | None:
    """The RTVI type of a received message, or None when it is not one."""
    if isinstance(msg, dict) and msg.get("label") == LABEL and isinstance(msg.get("type"), str):
        return msg["type"]
    return None


def first_after(received: list[tuple[float, Any]], kind: str, after: float) -> float:
    """Arrival time of the first ``kind`` message in ``received`` ((time, message) pairs) after ``after``.

    Infinity when there is none.
    """
    return next((t for t, m in received if t > after and kind_of(m) == kind), float("inf"))


async def wait_for(received: list[tuple[float, Any]], kind: str, timeout: float, after: float = 0.0) -> dict:
    """The first ``kind`` message to arrive in ``received`` after ``after``, polling for up to ``timeout`` s.

    Raises:
        TimeoutError: naming the kinds that did arrive.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, msg in received:
            if t > after and kind_of(msg) == kind:
                return msg
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no {kind!r} message within {timeout} s; got {[kind_of(m) for _, m in received]}")
