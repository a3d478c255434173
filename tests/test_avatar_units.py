"""The avatar's parts: phoneme -> viseme -> blendshapes, coarticulation, the audio-driven mouth, the renderer, the wire."""

import numpy as np
import pytest

from pipelines.errors import ConfigErrors
from pipelines.validate import load_agent_text
from processors.avatar import arkit, wire
from processors.avatar.coarticulation import AudioTrack, PhonemeTrack
from processors.avatar.frames import PoseFrame
from processors.avatar.renderer import FaceRenderer
from processors.avatar.visemes import BLENDSHAPES, VISEMES, visemes_for

JAW = arkit.INDEX["jawOpen"]


def names(phoneme: str) -> list[str]:
    return [VISEMES[i] for i in visemes_for(phoneme)]


def test_arkit_has_the_52_standard_names_once_each():
    assert arkit.COUNT == 52 == len(set(arkit.NAMES))
    assert {"jawOpen", "mouthFunnel", "eyeBlinkLeft", "tongueOut", "cheekPuff", "browInnerUp"} <= set(arkit.NAMES)
    with pytest.raises(KeyError):
        arkit.pose({"jawOpn": 1.0})


@pytest.mark.parametrize("phoneme, expected", [
    ("p", ["PP"]), ("m", ["PP"]), ("f", ["FF"]), ("ð", ["TH"]), ("s", ["SS"]), ("tʃ", ["CH"]),
    ("ˈɑː", ["aa"]), ("ˈiː", ["ih"]), ("uː", ["ou"]), ("", ["sil"]),
    ("ˈoʊ", ["oh", "ou"]), ("aɪ", ["aa", "ih"]), ("ɑːɹ", ["aa", "RR"]), ("n̩", ["nn"]),
])
def test_espeak_ipa_maps_to_visemes(phoneme, expected):
    assert names(phoneme) == expected


def test_viseme_blendshapes_shape_the_mouth():
    shape = {v: BLENDSHAPES[VISEMES.index(v)] for v in VISEMES}
    assert not shape["sil"].any()
    assert shape["aa"][JAW] > shape["E"][JAW] > shape["ih"][JAW] > shape["PP"][JAW]
    assert shape["PP"][arkit.INDEX["mouthPressLeft"]] > 0.4
    assert shape["ou"][arkit.INDEX["mouthPucker"]] > 0.5
    assert shape["FF"][arkit.INDEX["mouthRollLower"]] > 0.4
    assert shape["TH"][arkit.INDEX["tongueOut"]] > 0.3


def track(*phonemes: tuple[str, float], end: float) -> PhonemeTrack:
    t = PhonemeTrack()
    for p, start in phonemes:
        t.add(p, start)
    t.end(end)
    return t


def test_each_viseme_dominates_its_phoneme_and_silence_surrounds_speech():
    t = track(("", 0.0), ("p", 0.1), ("ˈɑː", 0.18), ("m", 0.32), ("", 0.4), end=0.6)
    assert VISEMES[int(np.argmax(t.weights_at(0.02)))] == "sil"
    assert VISEMES[int(np.argmax(t.weights_at(0.115)))] == "PP"
    assert VISEMES[int(np.argmax(t.weights_at(0.23)))] == "aa"
    assert VISEMES[int(np.argmax(t.weights_at(0.335)))] == "PP"
    assert VISEMES[int(np.argmax(t.weights_at(0.55)))] == "sil"
    for x in np.arange(0, 0.7, 0.01):
        assert t.weights_at(x).sum() == pytest.approx(1.0, abs=1e-5)


def test_coarticulation_blends_into_the_next_pose_without_jumps():
    """Sampled finely, the mouth never jumps: neighbours blend (no step at a phoneme boundary)."""
    t = track(("", 0.0), ("h", 0.01), ("ə", 0.06), ("l", 0.11), ("ˈoʊ", 0.18), ("p", 0.32), ("ˈiː", 0.36),
              ("", 0.5), end=0.6)
    jaw = np.array([(t.weights_at(x) @ BLENDSHAPES)[JAW] for x in np.arange(0, 0.6, 0.002)])
    assert np.max(np.abs(np.diff(jaw))) < 0.05  # per 2 ms
    # Anticipation: the jaw is already opening for the vowel before it starts.
    before = (t.weights_at(0.165) @ BLENDSHAPES)[JAW]
    assert before > (t.weights_at(0.12) @ BLENDSHAPES)[JAW]


def tone(seconds: float, rate: int = 24000, amplitude: float = 0.3, freq: float = 300.0) -> bytes:
    n = int(seconds * rate)
    x = amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate) * (1 + 0.5 * np.sin(2 * np.pi * 1200 * np.arange(n) / rate))
    return (np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()


def silence(seconds: float, rate: int = 24000) -> bytes:
    return bytes(2 * int(seconds * rate))


def test_audio_driven_mouth_opens_with_energy_and_rests_in_silence():
    track_ = AudioTrack(24000)
    track_.feed(silence(0.3) + tone(0.3, amplitude=0.05) + tone(0.3, amplitude=0.5) + silence(0.4))
    jaw = lambda t: float((track_.weights_at(t) @ BLENDSHAPES)[JAW])  # noqa: E731
    assert jaw(0.2) == pytest.approx(0.0, abs=1e-3)
    assert jaw(0.75) > 0.3  # loud speech: open
    assert jaw(0.75) > jaw(0.5) > jaw(0.2)  # louder opens wider
    assert jaw(1.2) < 0.02  # back at rest in the silence after
    assert track_.known_until == pytest.approx(1.3, abs=0.02)


def test_audio_driven_fricative_narrows_the_mouth():
    rng = np.random.default_rng(0)
    hiss = np.convolve(rng.normal(0, 1, 24000), [1, -1], mode="same")  # high-passed noise: an "s"
    hiss = (hiss / np.abs(hiss).max() * 0.3 * 32767).astype(np.int16).tobytes()
    track_ = AudioTrack(24000)
    track_.feed(hiss)
    weights = track_.weights_at(0.5)
    assert VISEMES[int(np.argmax(weights))] == "SS"


def mouth_region(image: bytes, size: int) -> np.ndarray:
    pixels = np.frombuffer(image, dtype=np.uint8).reshape(size, size, 3)
    return pixels[int(0.6 * size):int(0.9 * size), int(0.3 * size):int(0.7 * size)].astype(int)


def test_renderer_opens_the_mouth_and_closes_the_eyes():
    renderer = FaceRenderer(128)
    closed = renderer.render(np.zeros(52, dtype=np.float32))
    open_ = renderer.render(BLENDSHAPES[VISEMES.index("aa")])
    assert len(closed) == 128 * 128 * 3
    changed = np.any(mouth_region(closed, 128) != mouth_region(open_, 128), axis=2)
    assert changed.mean() > 0.05
    blink = renderer.render(arkit.pose({"eyeBlink": 1.0}))
    eyes = lambda img: np.frombuffer(img, dtype=np.uint8).reshape(128, 128, 3)[45:62, 30:98]  # noqa: E731
    assert (eyes(closed) > 240).all(axis=2).sum() > 50  # the whites of the eyes
    assert (eyes(blink) > 240).all(axis=2).sum() == 0


def test_wire_format_round_trips_52_quantised_weights():
    weights = np.linspace(0, 1, 52, dtype=np.float32)
    pose = PoseFrame(weights=weights, utterance=3, time_s=1.25, sample=30000, viseme="aa")
    data = wire.encode(pose)
    assert set(data) == {"u", "t", "v", "w"} and data["t"] == 1250 and len(data["w"]) == 72
    u, t, decoded = wire.decode(data)
    assert (u, t) == (3, 1250) and np.max(np.abs(decoded - weights)) <= 0.5 / 255 + 1e-6
    message = wire.rtvi_message(pose)
    assert message["label"] == "rtvi-ai" and message["type"] == "server-message"
    assert message["data"]["type"] == "avatar-pose"
    with pytest.raises(ValueError, match="expected 52"):
        wire.decode({"u": 1, "t": 0, "w": "AAAA"})


def test_bad_params_are_one_line_errors_naming_the_key():
    agent = """
version: 1
name: face
transport: {type: synthetic}
processors:
  avatar: {type: avatar, output: hologram, fps: 500}
pipeline: [input, avatar, output]
"""
    with pytest.raises(ConfigErrors) as caught:
        load_agent_text(agent, "face.yaml")
    lines = str(caught.value).splitlines()
    assert any("processors.avatar.output" in line and "hologram" not in line.split(":")[0] for line in lines)
    assert any("processors.avatar.fps" in line for line in lines)
