"""Visemes: the mouth shapes of speech, from IPA phonemes, and each one's ARKit blendshapes.

The 15 visemes are the Oculus/Meta set the TalkingHead web avatar and many
game engines use (``sil PP FF TH DD kk CH SS nn RR aa E ih oh ou``). A phoneme
maps to one viseme, or to two for a diphthong or an r-coloured vowel
(espeak-ng writes ``aɪ``, ``oʊ``, ``ɑːɹ``), whose parts share its duration.
Stress and length marks and combining diacritics carry no mouth shape and are
dropped.
"""

import unicodedata

import numpy as np

from processors.avatar.arkit import COUNT, pose

VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
VISEME_INDEX: dict[str, int] = {v: i for i, v in enumerate(VISEMES)}
SILENCE = VISEME_INDEX["sil"]

#: IPA symbol -> viseme. Affricates first: ``tʃ`` is one sound, not ``t`` + ``ʃ``.
_IPA: dict[str, str] = {
    "tʃ": "CH", "dʒ": "CH", "ʃ": "CH", "ʒ": "CH",
    "p": "PP", "b": "PP", "m": "PP",
    "f": "FF", "v": "FF",
    "θ": "TH", "ð": "TH",
    "t": "DD", "d": "DD", "ɾ": "DD",
    "k": "kk", "g": "kk", "ɡ": "kk", "ŋ": "kk", "h": "kk", "x": "kk",
    "s": "SS", "z": "SS",
    "n": "nn", "l": "nn", "ɫ": "nn",
    "ɹ": "RR", "r": "RR", "ɚ": "RR", "ɝ": "RR",
    "a": "aa", "ɑ": "aa", "æ": "aa", "ɐ": "aa", "ʌ": "aa", "ɒ": "aa",
    "e": "E", "ɛ": "E", "ə": "E", "ɜ": "E",
    "i": "ih", "ɪ": "ih", "ɨ": "ih", "ᵻ": "ih", "j": "ih", "y": "ih",
    "o": "oh", "ɔ": "oh",
    "u": "ou", "ʊ": "ou", "w": "ou",
    "ʔ": "sil", "_": "sil",
}
#: Marks that shape nothing: primary and secondary stress, length, half length, syllable break.
_MARKS = set("ˈˌːˑ.‿")
#: Viseme for a symbol the table does not know: a relaxed, slightly open mouth.
_UNKNOWN = "nn"

#: Each viseme's blendshapes (a name without Left/Right sets both sides). Silence is the neutral face.
SHAPES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jawOpen": 0.04, "mouthClose": 0.04, "mouthPress": 0.55, "mouthRollLower": 0.25, "mouthRollUpper": 0.15},
    "FF": {"jawOpen": 0.08, "mouthRollLower": 0.6, "mouthUpperUp": 0.25, "mouthPress": 0.1},
    "TH": {"jawOpen": 0.16, "tongueOut": 0.45, "mouthLowerDown": 0.15, "mouthStretch": 0.1},
    "DD": {"jawOpen": 0.2, "mouthLowerDown": 0.2, "mouthUpperUp": 0.1, "mouthStretch": 0.15},
    "kk": {"jawOpen": 0.26, "mouthLowerDown": 0.12, "mouthStretch": 0.2},
    "CH": {"jawOpen": 0.14, "mouthFunnel": 0.5, "mouthPucker": 0.3, "mouthUpperUp": 0.2, "mouthLowerDown": 0.2},
    "SS": {"jawOpen": 0.07, "mouthStretch": 0.35, "mouthSmile": 0.2, "mouthUpperUp": 0.15, "mouthLowerDown": 0.15},
    "nn": {"jawOpen": 0.18, "mouthLowerDown": 0.1, "mouthStretch": 0.1},
    "RR": {"jawOpen": 0.14, "mouthFunnel": 0.3, "mouthPucker": 0.4},
    "aa": {"jawOpen": 0.62, "mouthLowerDown": 0.3, "mouthUpperUp": 0.1, "mouthStretch": 0.1},
    "E": {"jawOpen": 0.36, "mouthStretch": 0.35, "mouthSmile": 0.2, "mouthLowerDown": 0.2},
    "ih": {"jawOpen": 0.2, "mouthStretch": 0.4, "mouthSmile": 0.3, "mouthLowerDown": 0.1},
    "oh": {"jawOpen": 0.45, "mouthFunnel": 0.6, "mouthPucker": 0.25},
    "ou": {"jawOpen": 0.15, "mouthPucker": 0.8, "mouthFunnel": 0.4},
}
#: (15, 52): row v is viseme v's pose, so viseme weights @ BLENDSHAPES is the mouth.
BLENDSHAPES = np.stack([pose(SHAPES[v]) for v in VISEMES])
assert BLENDSHAPES.shape == (len(VISEMES), COUNT)

#: How strongly a viseme holds its shape against its neighbours (Cohen and
#: Massaro's dominance): the lips must close for PP, FF and the rounded
#: sounds, while a tongue consonant barely shows and takes the shape around it.
DOMINANCE = np.array([{"sil": 1.0, "PP": 2.0, "FF": 1.6, "CH": 1.4, "ou": 1.3, "oh": 1.1, "RR": 1.1,
                       "TH": 0.8, "DD": 0.5, "kk": 0.5, "nn": 0.6}.get(v, 1.0) for v in VISEMES])


def visemes_for(phoneme: str) -> list[int]:
    """The viseme indices of one IPA phoneme, in order, repeats merged; ``[sil]`` for a pause (``""``)."""
    symbols = "".join(c for c in unicodedata.normalize("NFD", phoneme)
                      if c not in _MARKS and not unicodedata.combining(c))
    found: list[int] = []
    i = 0
    while i < len(symbols):
        two = symbols[i:i + 2]
        viseme = _IPA.get(two) if len(two) == 2 else None
        if viseme is None:
            viseme, i = _IPA.get(symbols[i], _UNKNOWN), i + 1
        else:
            i += 2
        index = VISEME_INDEX[viseme]
        if not found or found[-1] != index:
            found.append(index)
    return found or [SILENCE]
