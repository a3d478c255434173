"""The pose wire format: a PoseFrame as a small JSON message (docs/avatar.md).

``{"u": utterance, "t": milliseconds, "v": viseme, "w": base64 of 52 bytes}``:
each weight quantised to a byte (``round(w * 255)``, error under 0.002), in
``processors.avatar.arkit.NAMES`` order, about 110 bytes of JSON per pose.
It travels as an RTVI ``server-message`` whose ``data.type`` is ``avatar-pose``.
"""

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from processors.avatar.arkit import COUNT

if TYPE_CHECKING:  # frames.py writes a pose in this format (PoseFrame.record)
    from processors.avatar.frames import PoseFrame

MESSAGE_TYPE = "avatar-pose"


def quantise(weights: np.ndarray) -> bytes:
    """52 weights in 0..1 as 52 bytes."""
    return np.round(np.clip(weights, 0.0, 1.0) * 255).astype(np.uint8).tobytes()


def encode(pose: "PoseFrame") -> dict[str, Any]:
    """The compact form of one pose."""
    return {
        "u": pose.utterance,
        "t": round(pose.time_s * 1000),
        "v": pose.viseme,
        "w": base64.b64encode(quantise(pose.weights)).decode("ascii"),
    }


def decode(data: dict[str, Any]) -> tuple[int, int, np.ndarray]:
    """(utterance, milliseconds, 52 float32 weights) from a compact pose.

    Raises:
        ValueError: the weights are not 52 base64 bytes.
    """
    raw = base64.b64decode(data["w"], validate=True)
    if len(raw) != COUNT:
        raise ValueError(f"avatar pose: expected {COUNT} weights, got {len(raw)}")
    return int(data["u"]), int(data["t"]), np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / 255


def rtvi_message(pose: "PoseFrame") -> dict[str, Any]:
    """The pose as the RTVI server message framegraph's transports send to clients."""
    return {"label": "rtvi-ai", "type": "server-message", "data": {"type": MESSAGE_TYPE, **encode(pose)}}
