"""The ``openai`` LLM: any OpenAI-compatible endpoint through pipecat's service.

OpenAI itself, or a local server speaking the same API (llama.cpp, vLLM,
Ollama) named by its base URL. The key is read from the environment at build
time, never from the YAML.
"""

import os

from pipecat.services.openai.llm import OpenAILLMService

#: What the OpenAI client is given when a local endpoint needs no key:
#: the client refuses an empty one.
NO_KEY = "no-key"


class MissingCredentialsError(RuntimeError):
    """Neither an API key nor a base URL says where to send requests."""


def create_openai_llm(
    *,
    model: str,
    base_url: str,
    api_key_env: str,
    temperature: float | None,
    max_tokens: int | None,
    name: str,
) -> OpenAILLMService:
    """Builds pipecat's OpenAI LLM service for ``model`` at ``base_url`` (or OpenAI's).

    Raises:
        MissingCredentialsError: ``api_key_env`` is unset and there is no base
            URL, so the agent could only fail on its first turn.
    """
    api_key = os.environ.get(api_key_env, "")
    if not api_key and not base_url:
        raise MissingCredentialsError(
            f"{name}: set {api_key_env} (or base_url for a local OpenAI-compatible server)"
        )
    settings = OpenAILLMService.Settings(model=model)
    if temperature is not None:
        settings.temperature = temperature
    if max_tokens is not None:
        settings.max_completion_tokens = max_tokens
    return OpenAILLMService(
        api_key=api_key or NO_KEY, base_url=base_url or None, settings=settings, name=name
    )
