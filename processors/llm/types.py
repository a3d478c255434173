"""The LLM types ``scripted`` and ``openai``: YAML params and factories.

The services are imported inside the factories, so validating a config
never imports pipecat's service modules or the OpenAI client.
"""

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.errors import ConfigError, ConfigErrors, missing_extra
from pipelines.registry import TypeInfo
from pipelines.spec import Params
from processors.llm.persona import fill


class RuleParams(BaseModel):
    """One scripted rule: when ``match`` is found in what the user said, say ``reply``."""

    model_config = ConfigDict(extra="forbid")

    match: str = Field(description="regular expression searched in the user's last message (case-insensitive)")
    reply: str = Field(description="what the bot says; several sentences stream token by token; with `recall`, "
                       "`\\1`... are its groups")
    recall: str | None = Field(
        None, description="regular expression searched in the user's earlier messages (newest first); the rule "
        "applies only when one matches, so a reply can depend on what was said before"
    )

    @field_validator("match", "recall")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return pattern


class ScriptedParams(Params):
    rules: list[RuleParams] = Field(default_factory=list, description="tried in order; the first match answers")
    fallback: str = Field("Sorry, I did not understand that.", description="reply when no rule matches")
    token_delay_ms: float = Field(20.0, ge=0, le=5000, description="pause before each streamed token")


def persona_variables(ctx) -> dict[str, str]:
    """The persona variables of the agent's context block ({} without a persona)."""
    context = ctx.spec.context
    return dict(context.params.get("variables") or {}) if context else {}


def make_scripted(params: ScriptedParams, ctx):
    """Creates the scripted LLM service.

    With a persona, replies may use its variables too (``Let's practise
    {subject}``), so one script serves every persona.
    """
    from processors.llm.scripted import Rule, ScriptedLLMService

    variables = persona_variables(ctx)

    def say(text: str, key: str) -> str:
        if not variables:
            return text
        try:
            return fill(text, variables)
        except ValueError as e:
            raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}.{key}", str(e))]) from None

    rules = [Rule(re.compile(r.match, re.IGNORECASE), say(r.reply, f"rules[{i}].reply"),
                  re.compile(r.recall, re.IGNORECASE) if r.recall else None)
             for i, r in enumerate(params.rules)]
    return ScriptedLLMService(
        rules=rules,
        fallback=say(params.fallback, "fallback"),
        token_delay_s=params.token_delay_ms / 1000.0,
        name=ctx.processor_id,
    )


class OpenAIParams(Params):
    model: str = Field(min_length=1, description="model name, e.g. gpt-4o-mini")
    base_url: str = Field("", pattern=r"^(https?://\S+)?$", description="OpenAI-compatible endpoint; empty for OpenAI's own")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="name of the environment variable holding the API key")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)


def make_openai(params: OpenAIParams, ctx):
    """Creates pipecat's OpenAI LLM service; fails at build time without key or base URL."""
    try:
        from processors.llm.openai import MissingCredentialsError, create_openai_llm
    except ImportError as e:
        raise missing_extra(f"processors.{ctx.processor_id}", "openai", e) from None

    try:
        return create_openai_llm(
            model=params.model,
            base_url=params.base_url,
            api_key_env=params.api_key_env,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            name=ctx.processor_id,
        )
    except MissingCredentialsError as e:
        raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}", str(e))]) from None


TYPES = [
    TypeInfo("processor", "scripted", ScriptedParams, make_scripted, "deterministic LLM: ordered regex rules, streamed replies"),
    TypeInfo("processor", "openai", OpenAIParams, make_openai, "LLM at any OpenAI-compatible endpoint (key from env)"),
]
