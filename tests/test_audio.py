"""pipelines.audio: the one WAV reader and writer."""

import wave

import numpy as np
import pytest

from pipelines.audio import WavError, read_wav, write_wav


def test_write_then_read_round_trips_mono_16_bit(tmp_path):
    pcm = (np.arange(1600, dtype=np.int16) * 7).tobytes()
    write_wav(tmp_path / "a.wav", pcm, 16000)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
    assert read_wav(tmp_path / "a.wav", 16000) == pcm


def test_stereo_is_mixed_down_and_the_rate_converted(tmp_path):
    t = np.arange(8000) / 8000
    left = (8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.stack([left, left], axis=1).tobytes())
    mono = np.frombuffer(read_wav(tmp_path / "s.wav", 16000), dtype=np.int16)
    assert abs(len(mono) - 16000) <= 2 and abs(int(np.abs(mono).max()) - 8000) < 400


def test_unusable_files_are_named_in_one_line(tmp_path):
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(800))
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    cases = {
        "missing.wav": "no such file",
        "8bit.wav": "sample width is 8 bits; 16-bit PCM is required",
        "junk.wav": "not a readable WAV file",
    }
    for name, message in cases.items():
        with pytest.raises(WavError) as caught:
            read_wav(tmp_path / name, 16000)
        assert str(caught.value).startswith(f"{tmp_path / name}: {message}")
