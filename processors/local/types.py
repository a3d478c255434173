"""The ``local_whisper_stt`` and ``local_chat_llm`` types: models loaded from a directory (extra ``torch``).

transformers on torch runs both, so one pinned CPU torch serves speech and
chat, and tests build tiny randomly initialised models of the same
architectures. (faster-whisper would transcribe faster on CPU, but needs
CTranslate2-converted models and offers no chat model.) Validation checks
the params and that ``model_path`` is a model directory (when the config is a
file, so relative paths have a folder), so a missing model is an error
before anything serves; the factory checks again and loads the model.
"""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

from pipelines.errors import ConfigError, ConfigErrors, missing_extra
from pipelines.registry import TypeInfo
from pipelines.spec import Params


def _not_a_model_dir(path: Path) -> str | None:
    """Why ``path`` is not a transformers model directory, or None when it is one."""
    if not (path / "config.json").is_file():
        return f"{path} is not a model directory (no config.json)"
    return None


def _model_dir_exists(value: str, info: ValidationInfo) -> str:
    """Checks ``model_path`` names a model directory, relative to the config's folder (given in the context)."""
    config_dir = (info.context or {}).get("config_dir")
    if config_dir is not None and (problem := _not_a_model_dir(Path(config_dir) / value)):
        raise ValueError(problem)
    return value


class LocalModelParams(Params):
    model_path: Annotated[str, AfterValidator(_model_dir_exists)] = Field(min_length=1, description="model directory (relative to the config), e.g. a downloaded whisper-tiny.en")
    max_new_tokens: int = Field(128, gt=0, le=100_000, description="longest output, in tokens")
    threads: int | None = Field(None, gt=0, le=1024, description="torch threads (default: torch's own)")


class LocalWhisperParams(LocalModelParams):
    """Whisper from a local directory (transformers, CPU); never downloads."""

    language: str | None = Field(None, description="language code for multilingual models; null: detected")


class LocalChatParams(LocalModelParams):
    """A chat model (causal LM with a chat template) from a local directory; never downloads."""

    temperature: float = Field(0.0, ge=0, le=2, description="0: greedy and deterministic")


def _model_dir(params: LocalModelParams, ctx) -> str:
    path = Path(ctx.config_dir) / params.model_path
    if problem := _not_a_model_dir(path):
        raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}.model_path", problem)])
    return str(path)


def _load(build, params, ctx):
    key = f"processors.{ctx.processor_id}"
    path = _model_dir(params, ctx)
    try:
        return build(path)
    except ImportError as e:
        raise missing_extra(key, "torch", e) from None
    except (OSError, ValueError) as e:
        raise ConfigErrors([ConfigError(None, f"{key}.model_path", f"cannot load {path}: {e}")]) from None


def make_local_whisper_stt(params: LocalWhisperParams, ctx):
    """Loads the Whisper model and processor from ``model_path``."""

    def build(path):
        from processors.local.whisper import LocalWhisperSTTService

        return LocalWhisperSTTService(model_path=path, language=params.language, max_new_tokens=params.max_new_tokens,
                                      threads=params.threads, name=ctx.processor_id)

    return _load(build, params, ctx)


def make_local_chat_llm(params: LocalChatParams, ctx):
    """Loads the chat model and tokenizer from ``model_path``."""

    def build(path):
        from processors.local.chat import LocalChatLLMService

        return LocalChatLLMService(model_path=path, max_new_tokens=params.max_new_tokens,
                                   temperature=params.temperature, threads=params.threads, name=ctx.processor_id)

    return _load(build, params, ctx)


TYPES = [
    TypeInfo("processor", "local_whisper_stt", LocalWhisperParams, make_local_whisper_stt,
             "Whisper speech-to-text from a model directory (extra torch)"),
    TypeInfo("processor", "local_chat_llm", LocalChatParams, make_local_chat_llm,
             "chat LLM from a model directory, streamed (extra torch)"),
]
