"""The messages framegraph's transports send to their clients, in RTVI's shape.

Every message is a JSON object ``{"label": "rtvi-ai", "type": ..., "data": ...}``
as pipecat's RTVI protocol defines it, so pipecat's own clients understand
them too. The transports send the speaking and interruption messages straight
from the output transport, in order with the audio, rather than through the
pipeline, because a client obeys them to drop stale audio:

- ``bot-ready``: the agent's pipeline has started; it hears what is sent from
  now on. ``data`` has its ``audio_in_sample_rate`` and ``audio_out_sample_rate``.
- ``bot-interrupted``: drop every bit of bot audio buffered or still arriving,
  and stay silent until the next ``bot-started-speaking``.
- ``bot-started-speaking`` / ``bot-stopped-speaking``: the bot's speech turns.
- ``user-transcription`` / ``bot-tts-text``: the live transcript.

No pipecat import here: the web page, the ``talk`` client and the tests read
the same names.
"""

import asyncio
import time
from typing import Any

LABEL = "rtvi-ai"
BOT_READY = "bot-ready"
BOT_INTERRUPTED = "bot-interrupted"
BOT_STARTED_SPEAKING = "bot-started-speaking"
BOT_STOPPED_SPEAKING = "bot-stopped-speaking"
USER_TRANSCRIPTION = "user-transcription"
BOT_TTS_TEXT = "bot-tts-text"

#: Largest client message (bytes of JSON) a transport accepts; larger ones are refused.
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


def message(kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An RTVI-shaped message of type ``kind``."""
    return {"label": LABEL, "type": kind, "data": data or {}}


def user_transcription(text: str, *, final: bool, user_id: str = "", timestamp: str = "") -> dict[str, Any]:
    """What the user said, as the STT heard it."""
    return message(USER_TRANSCRIPTION, {"text": text, "final": final, "user_id": user_id, "timestamp": timestamp})


def bot_text(text: str) -> dict[str, Any]:
    """Words the bot is speaking, sent as their audio is played."""
    return message(BOT_TTS_TEXT, {"text": text})


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
