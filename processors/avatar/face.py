"""The face's life between (and during) words: blinks and a small idle motion.

Both are functions of the face's own clock (seconds, never going back), so a
blink started during speech finishes in the silence after it. Blinks come at
random intervals of 2-5 s (close in 90 ms, hold 30 ms, open in 150 ms); the
eyes drift and the inner brows breathe as sums of slow sines. The mouth is
left alone: the neutral face has every mouth and jaw weight at zero.
"""

import numpy as np

from processors.avatar.arkit import COUNT, INDEX

_CLOSE, _HOLD, _OPEN = 0.09, 0.03, 0.15
_BLINKS = [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]


class FaceLife:
    """Blink and idle-motion weights over the face clock.

    Args:
        blinks: Whether the eyes blink.
        idle_motion: Whether the eyes and brows move slightly.
        seed: Seeds the blink intervals and motion phases (None: random).
    """

    def __init__(self, *, blinks: bool = True, idle_motion: bool = True, seed: int | None = None):
        self._rng = np.random.default_rng(seed)
        self._blinks, self._idle = blinks, idle_motion
        self._blink_at = float(self._rng.uniform(1.0, 3.0))
        self._phases = self._rng.uniform(0, 2 * np.pi, 4)

    def at(self, t: float) -> np.ndarray:
        """The life layer's 52 weights at face time ``t`` (call with non-decreasing ``t``)."""
        layer = np.zeros(COUNT, dtype=np.float32)
        if self._blinks:
            while t > self._blink_at + _CLOSE + _HOLD + _OPEN:
                self._blink_at += float(self._rng.uniform(2.0, 5.0))
            layer[_BLINKS] = _blink_shape(t - self._blink_at)
        if self._idle:
            p = self._phases
            gaze_x = 0.12 * np.sin(2 * np.pi * 0.13 * t + p[0]) + 0.05 * np.sin(2 * np.pi * 0.37 * t + p[1])
            gaze_y = 0.08 * np.sin(2 * np.pi * 0.09 * t + p[2])
            # Looking right: the left eye turns in, the right eye out (and the reverse).
            layer[INDEX["eyeLookInLeft"]] = layer[INDEX["eyeLookOutRight"]] = max(gaze_x, 0.0)
            layer[INDEX["eyeLookOutLeft"]] = layer[INDEX["eyeLookInRight"]] = max(-gaze_x, 0.0)
            layer[INDEX["eyeLookUpLeft"]] = layer[INDEX["eyeLookUpRight"]] = max(gaze_y, 0.0)
            layer[INDEX["eyeLookDownLeft"]] = layer[INDEX["eyeLookDownRight"]] = max(-gaze_y, 0.0)
            layer[INDEX["browInnerUp"]] = 0.06 * (1 + np.sin(2 * np.pi * 0.11 * t + p[3]))
        return layer


def _blink_shape(dt: float) -> float:
    """Eyelid closure ``dt`` seconds after a blink began."""
    if dt < 0 or dt > _CLOSE + _HOLD + _OPEN:
        return 0.0
    if dt < _CLOSE:
        return dt / _CLOSE
    if dt < _CLOSE + _HOLD:
        return 1.0
    return 1.0 - (dt - _CLOSE - _HOLD) / _OPEN
