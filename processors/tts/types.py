"""The ``espeak`` TTS type: its YAML params and its factory.

Validating a config must not load libespeak-ng, so voices are checked
against the voice files in the ``espeakng-loader`` wheel's data folder, and
the service itself is imported inside the factory.
"""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator

from pipelines.errors import did_you_mean, missing_extra
from pipelines.registry import TypeInfo
from pipelines.spec import Params


@lru_cache(maxsize=1)
def espeak_voices() -> tuple[frozenset[str], frozenset[str]] | None:
    """(voice names, variant names) in the installed wheel, lowercased; None without the wheel.

    Voice names are the files under ``espeak-ng-data/lang`` (``en-us``,
    ``fr``...), variants those under ``espeak-ng-data/voices/!v`` (``f3``...),
    which is what ``espeak_SetVoiceByName("en-us+f3")`` resolves.
    """
    try:
        import espeakng_loader
    except ImportError:
        return None
    data = Path(espeakng_loader.get_data_path())
    voices = frozenset(p.name.lower() for p in (data / "lang").rglob("*") if p.is_file())
    variants = frozenset(p.name.lower() for p in (data / "voices" / "!v").iterdir() if p.is_file())
    return voices, variants


class EspeakParams(Params):
    voice: str = Field("en-us", description="espeak-ng voice, optionally with a variant: en-us, en-gb+f3, fr")
    rate: int = Field(175, ge=80, le=450, description="speaking rate in words per minute")
    pitch: int = Field(50, ge=0, le=100, description="base pitch, 0-100")
    word_timing: bool = Field(
        False, description="time each word to its audio: the context keeps what was heard word by word "
        "(needs an output that plays in real time; the file transport's does not)")

    @field_validator("voice")
    @classmethod
    def _known_voice(cls, voice: str) -> str:
        known = espeak_voices()
        if known is None:  # the extra is not installed: the factory says so
            return voice
        voices, variants = known
        name, _, variant = voice.lower().partition("+")
        if name not in voices:
            hint = did_you_mean(name, voices)
            raise ValueError(f"unknown espeak voice '{name}'" + (f" ({hint})" if hint else ""))
        if variant and variant not in variants:
            hint = did_you_mean(variant, variants)
            raise ValueError(f"unknown espeak voice variant '{variant}'" + (f" ({hint})" if hint else ""))
        return voice


def make_espeak_tts(params: EspeakParams, ctx):
    """Creates the espeak-ng TTS service, speaking at the transport's output rate."""
    try:
        from processors.tts.espeak import EspeakTTSService
    except ImportError as e:  # espeakng-loader is behind an optional extra (GPL-3)
        raise missing_extra(f"processors.{ctx.processor_id}", "speech", e) from None
    return EspeakTTSService(
        voice=params.voice,
        rate=params.rate,
        pitch=params.pitch,
        word_timing=params.word_timing,
        sample_rate=ctx.audio_out_sample_rate,
        name=ctx.processor_id,
    )


TYPES = [
    TypeInfo("processor", "espeak_tts", EspeakParams, make_espeak_tts, "espeak-ng TTS in process, streaming, with phoneme events",
             aliases=("espeak",)),
]
