"""Audio constants and WAV files: the one place framegraph reads and writes them.

Every WAV framegraph handles is 16-bit PCM. Reading accepts any rate, mono or
stereo, and returns mono at the rate asked for (resampled with soxr, which
pipecat installs); writing makes mono 16-bit files.
"""

import wave
from pathlib import Path

import numpy as np

#: Default rate of the user's audio into an agent: what Silero VAD, Smart Turn
#: and pocketsphinx take without resampling.
USER_SAMPLE_RATE = 16000
#: Default rate of the bot's audio out of an agent (pipecat's usual output rate).
BOT_SAMPLE_RATE = 24000


class WavError(ValueError):
    """A WAV file that cannot be used; the message names the file."""


def read_wav(path: Path | str, sample_rate: int) -> bytes:
    """Reads a 16-bit PCM WAV as mono 16-bit PCM at ``sample_rate``.

    Raises:
        WavError: Missing, unreadable or not 16-bit PCM; names ``path``.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise WavError(f"{path}: no such file") from None
    except (OSError, EOFError, RuntimeError, wave.Error) as e:  # wave raises all four
        raise WavError(f"{path}: not a readable WAV file ({e or type(e).__name__})") from None
    if width != 2:
        raise WavError(f"{path}: sample width is {8 * width} bits; 16-bit PCM is required")
    samples = np.frombuffer(raw, dtype=np.int16).reshape(-1, channels)
    mono = samples.mean(axis=1).astype(np.int16) if channels > 1 else samples[:, 0]
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate)
    return mono.astype(np.int16).tobytes()


def open_wav_writer(path: Path | str, sample_rate: int) -> wave.Wave_write:
    """Opens ``path`` for mono 16-bit PCM at ``sample_rate``, to write in pieces (close it)."""
    wav = wave.open(str(path), "wb")
    wav.setnchannels(1)
    wav.setsampwidth(2)
    wav.setframerate(sample_rate)
    return wav


def write_wav(path: Path | str, pcm: bytes, sample_rate: int) -> None:
    """Writes mono 16-bit ``pcm`` at ``sample_rate`` to ``path`` in one go."""
    with open_wav_writer(path, sample_rate) as wav:
        wav.writeframes(pcm)
