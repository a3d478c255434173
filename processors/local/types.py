"""The ``local_whisper_stt`` and ``local_chat_llm`` types: models loaded from a directory (extra ``torch``).

transformers on torch runs both, so one pinned CPU torch serves speech and
chat, and tests build tiny randomly initialised models of the same
architectures. (faster-whisper would transcribe faster on CPU, but needs
CTranslate2-converted models and offers no chat model.) Validation checks
only the params; the factory checks the directory and loads the model.
"""

from pathlib import Path

from pydantic import Field

from pipelines.errors import ConfigError, ConfigErrors, missing_extra
from pipelines.registry import TypeInfo
from pipelines.spec import Params


class LocalModelParams(Params):
    model_path: str = Field(min_length=1, description="model directory (relative to the config), e.g. a downloaded whisper-tiny.en")
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
    if not (path / "config.json").is_file():
        raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}.model_path",
                                        f"{path} is not a model directory (no config.json)")])
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


def build_local_whisper(params: LocalWhisperParams, ctx):
    """Loads the Whisper model and processor from ``model_path``."""

    def build(path):
        from processors.local.whisper import LocalWhisperSTTService

        return LocalWhisperSTTService(model_path=path, language=params.language, max_new_tokens=params.max_new_tokens,
                                      threads=params.threads, name=ctx.processor_id)

    return _load(build, params, ctx)


def build_local_chat(params: LocalChatParams, ctx):
    """Loads the chat model and tokenizer from ``model_path``."""

    def build(path):
        from processors.local.chat import LocalChatLLMService

        return LocalChatLLMService(model_path=path, max_new_tokens=params.max_new_tokens,
                                   temperature=params.temperature, threads=params.threads, name=ctx.processor_id)

    return _load(build, params, ctx)


TYPES = [
    TypeInfo("processor", "local_whisper_stt", LocalWhisperParams, build_local_whisper,
             "Whisper speech-to-text from a model directory (extra torch)"),
    TypeInfo("processor", "local_chat_llm", LocalChatParams, build_local_chat,
             "chat LLM from a model directory, streamed (extra torch)"),
]
