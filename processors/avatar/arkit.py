"""ARKit's 52 face blendshapes: their standard names and the order framegraph sends them in.

The names are Apple's ``ARFaceAnchor.BlendShapeLocation`` names, the set NVIDIA
Audio2Face-3D and Azure's viseme blendshapes animate; the order is the one Live
Link Face and Audio2Face export (eyes, jaw, mouth, brows, cheeks, nose,
tongue), so a pose is a fixed-length vector and the wire format needs no names.
"""

import numpy as np

NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
COUNT = len(NAMES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}

#: The blendshapes speech moves (jaw, mouth, cheeks, tongue): zero in the neutral face.
MOUTH = np.array([i for i, n in enumerate(NAMES) if n.startswith(("jaw", "mouth", "cheekPuff", "tongue"))])


def pose(weights: dict[str, float]) -> np.ndarray:
    """A 52-weight vector from ``{name: weight}``; a name without Left/Right sets both sides.

    Raises:
        KeyError: a name that is not an ARKit blendshape.
    """
    vector = np.zeros(COUNT, dtype=np.float32)
    for name, weight in weights.items():
        sides = [name] if name in INDEX else [name + "Left", name + "Right"]
        for side in sides:
            vector[INDEX[side]] = weight
    return vector


def neutral_mouth(weights: np.ndarray, tolerance: float = 0.01) -> bool:
    """Whether every jaw and mouth weight of a pose is at rest (the neutral face's mouth)."""
    return bool(np.all(np.asarray(weights)[MOUTH] <= tolerance))
