"""``tone_reply``: a processor that stands in for an agent, to check a transport end to end.

It needs no speech models: a loud sound from the user counts as speech; when
it ends the bot answers with a tone (and a line of transcript), and when the
user makes a sound while the tone plays, the bot is interrupted. The
transports' loopback tests, the browser test and ``bench/transport_latency.py``
run it; a person can too (``configs/transport_check.yaml``).

Laid out as the worked processor example (tests/plugin_example): params,
factory and ``TYPES`` here, light; the pipecat processor in ``processor.py``,
imported when the factory runs.
"""

import math

import numpy as np
from pydantic import Field

from pipelines import BuildContext, Params, TypeInfo


class ToneReplyParams(Params):
    reply_secs: float = Field(3.0, gt=0, le=60, description="length of the tone the bot answers with")
    tone_hz: float = Field(440.0, gt=0, le=8000, description="pitch of the answer")
    amplitude: int = Field(8000, gt=0, le=32767, description="peak of the answer, 16-bit")
    speech_rms: float = Field(500.0, gt=0, le=32767, description="input RMS above which the user counts as speaking")
    start_ms: float = Field(40.0, ge=0, le=10_000, description="loud input this long starts the user's turn")
    stop_ms: float = Field(300.0, gt=0, le=10_000, description="quiet input this long ends the user's turn")
    reply_text: str = Field("beep", description="the bot's transcript of its answer")


def tone(secs: float, sample_rate: int, hz: float, amplitude: int) -> bytes:
    """``secs`` of a 16-bit mono sine at ``hz``."""
    t = np.arange(int(secs * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * math.pi * hz * t)).astype(np.int16).tobytes()


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit samples."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def make_tone_reply(params: ToneReplyParams, ctx: BuildContext):
    """The ``tone_reply`` processor at the transport's output rate, named by its config id."""
    from processors.tone.processor import ToneReply

    return ToneReply(params, sample_rate=ctx.audio_out_sample_rate, name=ctx.processor_id)


TYPES = [
    TypeInfo(
        kind="processor",
        name="tone_reply",
        params=ToneReplyParams,
        factory=make_tone_reply,
        summary="answers loud input with a tone, interrupted by loud input: checks a transport without speech models",
    ),
]
