"""A 2D face drawn from ARKit blendshapes with Pillow, for the agent's video track.

No assets: the head, nose and ears are drawn once into a base image; each
frame copies it and draws what moves: eyelids (blink, squint, wide) and
pupils (gaze), brows (inner and outer up, down), and the mouth, whose outer
lip and inner opening are two curves shaped by jaw opening, lip raise and
lower, press and close, smile and frown, stretch, pucker and funnel, lip roll,
and the tongue. Coordinates are fractions of the image side, so any size
draws the same face.
"""

import numpy as np
from PIL import Image, ImageDraw

from processors.avatar.arkit import INDEX

_BACKGROUND = (38, 50, 72)
_SKIN = (240, 200, 170)
_SHADE = (214, 170, 142)
_LIPS = (196, 84, 92)
_MOUTH = (70, 20, 30)
_TEETH = (246, 246, 240)
_TONGUE = (222, 110, 120)
_EYE = (252, 252, 252)
_IRIS = (60, 90, 140)
_BROW = (90, 60, 40)
_POINTS = 9  # per lip curve


class FaceRenderer:
    """Draws one RGB frame per pose at ``size`` x ``size`` pixels."""

    def __init__(self, size: int = 256):
        self.size = size
        self._base = Image.new("RGB", (size, size), _BACKGROUND)
        draw = ImageDraw.Draw(self._base)
        self._ellipse(draw, 0.14, 0.44, 0.05, 0.09, _SHADE)  # ears
        self._ellipse(draw, 0.86, 0.44, 0.05, 0.09, _SHADE)
        self._ellipse(draw, 0.5, 0.5, 0.36, 0.44, _SKIN)  # head
        s = size
        draw.line([(0.5 * s, 0.47 * s), (0.47 * s, 0.58 * s), (0.52 * s, 0.59 * s)], fill=_SHADE,
                  width=max(1, round(0.012 * s)))  # nose
        self._x = np.linspace(-1.0, 1.0, _POINTS)

    def _ellipse(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill) -> None:
        s = self.size
        draw.ellipse([(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s], fill=fill)

    def render(self, weights: np.ndarray) -> bytes:
        """The face for 52 blendshape weights, as raw RGB bytes (``size * size * 3``)."""
        w = {name: float(weights[i]) for name, i in INDEX.items()}
        image = self._base.copy()
        draw = ImageDraw.Draw(image)
        for side, cx, out_sign in (("Right", 0.36, -1.0), ("Left", 0.64, 1.0)):
            self._eye(draw, w, side, cx, out_sign)
            self._brow(draw, w, side, cx, out_sign)
        self._mouth(draw, w)
        return image.tobytes()

    def _eye(self, draw, w, side: str, cx: float, out_sign: float) -> None:
        s = self.size
        cy = 0.42
        opening = 0.045 * (1 + 0.5 * w["eyeWide" + side] - 0.4 * w["eyeSquint" + side]) * (1 - w["eyeBlink" + side])
        if opening < 0.006:  # closed: the lid's line
            draw.line([((cx - 0.075) * s, cy * s), ((cx + 0.075) * s, cy * s)], fill=_BROW,
                      width=max(1, round(0.01 * s)))
            return
        self._ellipse(draw, cx, cy, 0.075, opening, _EYE)
        gaze_x = out_sign * (w["eyeLookOut" + side] - w["eyeLookIn" + side]) * 0.04
        gaze_y = (w["eyeLookDown" + side] - w["eyeLookUp" + side]) * 0.025
        radius = min(0.028, opening)
        self._ellipse(draw, cx + gaze_x, cy + gaze_y, radius, radius, _IRIS)

    def _brow(self, draw, w, side: str, cx: float, out_sign: float) -> None:
        s = self.size
        down = 0.03 * w["browDown" + side]
        inner_y = 0.335 - 0.05 * w["browInnerUp"] + down
        outer_y = 0.345 - 0.05 * w["browOuterUp" + side] + down * 0.5
        inner_x, outer_x = cx - out_sign * 0.06, cx + out_sign * 0.085
        draw.line([(inner_x * s, inner_y * s), (outer_x * s, outer_y * s)], fill=_BROW, width=max(1, round(0.022 * s)))

    def _mouth(self, draw, w) -> None:
        s = self.size
        cx, cy = 0.5, 0.72
        smile = (w["mouthSmileLeft"] + w["mouthSmileRight"]) / 2
        frown = (w["mouthFrownLeft"] + w["mouthFrownRight"]) / 2
        stretch = (w["mouthStretchLeft"] + w["mouthStretchRight"]) / 2
        press = (w["mouthPressLeft"] + w["mouthPressRight"]) / 2
        round_ = max(w["mouthPucker"], w["mouthFunnel"])
        half_width = 0.11 * (1 + 0.35 * smile + 0.3 * stretch - 0.45 * round_)
        shift = 0.03 * (w["mouthLeft"] - w["mouthRight"]) + 0.02 * (w["jawLeft"] - w["jawRight"])
        corner_y = cy - 0.03 * smile + 0.03 * frown
        lips_closed = min(1.0, press + w["mouthClose"] * 2)
        upper_open = (0.02 * w["jawOpen"] + 0.04 * (w["mouthUpperUpLeft"] + w["mouthUpperUpRight"]) / 2
                      + 0.02 * w["mouthFunnel"]) * (1 - lips_closed)
        lower_open = (0.16 * w["jawOpen"] + 0.04 * (w["mouthLowerDownLeft"] + w["mouthLowerDownRight"]) / 2
                      + 0.02 * w["mouthFunnel"]) * (1 - lips_closed)
        upper_lip = 0.02 * (1 - 0.6 * w["mouthRollUpper"]) * (1 + 0.5 * round_)
        lower_lip = 0.024 * (1 - 0.6 * w["mouthRollLower"]) * (1 + 0.5 * round_)
        # Rounded lips bulge into a circle; spread ones stay a flat curve.
        power = 0.5 + 1.0 * (1 - round_)
        bulge = (1 - np.abs(self._x) ** (2 / power)) ** (power / 2)
        xs = (cx + shift + self._x * half_width) * s
        centre = corner_y + (cy - corner_y) * bulge

        def curve(offsets: np.ndarray) -> list[tuple[float, float]]:
            return list(zip(xs, (centre + offsets) * s, strict=False))

        top_in, bottom_in = curve(-upper_open * bulge), curve(lower_open * bulge)
        top_out, bottom_out = curve(-(upper_open + upper_lip) * bulge), curve((lower_open + lower_lip) * bulge)
        draw.polygon(top_out + bottom_out[::-1], fill=_LIPS)
        if upper_open + lower_open > 0.004:
            draw.polygon(top_in + bottom_in[::-1], fill=_MOUTH)
            teeth = min(0.018, (upper_open + lower_open) * 0.35)
            draw.polygon(top_in + curve((-upper_open + teeth) * bulge)[::-1], fill=_TEETH)
            if w["tongueOut"] > 0.05:
                r = 0.04 * w["tongueOut"]
                ty = cy + lower_open * 0.8
                draw.ellipse([(cx - 0.05) * s, (ty - r) * s, (cx + 0.05) * s, (ty + r) * s], fill=_TONGUE)
        else:
            draw.line(top_in, fill=_MOUTH, width=max(1, round(0.008 * s)))
