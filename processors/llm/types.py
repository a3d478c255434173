"""The LLM types ``scripted`` and ``openai``: YAML params and factories.

The services are imported inside the factories, so validating a config
never imports pipecat's service modules or the OpenAI client.
"""

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.errors import ConfigError, ConfigErrors, missing_extra
from pipelines.persona import fill
from pipelines.registry import TypeInfo
from pipelines.spec import Params
from processors.tools.params import ToolParams, unique_names


class MemoryWrite(BaseModel):
    """A memory write a scripted rule makes when it answers (the agent's ``memory:`` fields, docs/users.md)."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, description="a field of the agent's memory: block")
    value: str = Field("", description="{group} from the match, {memory_FIELD}/{memory_next_FIELD} and persona variables")
    forget: bool = Field(False, description="forget the value instead of remembering it")


class RuleParams(BaseModel):
    """One scripted rule: when ``match`` is found in what the user said, say ``reply``."""

    model_config = ConfigDict(extra="forbid")

    match: str = Field(description="regular expression searched in the user's last message (case-insensitive)")
    reply: str = Field("", description="what the bot says; several sentences stream token by token; with a tool, "
                       "after its result: {field} from the result's JSON object and the match's named groups; "
                       "with `recall`, `\\1`... are its groups")
    recall: str | None = Field(
        None, description="regular expression searched in the user's earlier messages (newest first); the rule "
        "applies only when one matches, so a reply can depend on what was said before"
    )
    tool: str | None = Field(None, description="a tool of this LLM's tools: list to call first")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="the tool call's arguments; {group} in strings from the match"
    )
    when: dict[str, str] = Field(
        default_factory=dict, description="persona variables this rule is for, e.g. {subject: French}: it "
        "applies only to a session whose variables have these values (case-insensitive)"
    )
    say: str = Field("", description="with a tool: said before calling it")
    on_error: str = Field("", description="with a tool: said when its result is an error (default: the fallback)")
    remember: list[MemoryWrite] = Field(default_factory=list, description="memory writes made when the rule answers")

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

    @model_validator(mode="after")
    def _says_something(self):
        if not (self.reply or self.tool):
            raise ValueError("a rule needs a reply or a tool")
        if not self.tool and (self.arguments or self.say or self.on_error):
            raise ValueError("arguments, say and on_error need a tool")
        return self


#: The ``tools:`` param every LLM type shares.
TOOLS_FIELD = Field(default_factory=list, description="functions the LLM may call (see docs/tools.md)")


class ScriptedParams(Params):
    rules: list[RuleParams] = Field(default_factory=list, description="tried in order; the first match answers")
    fallback: str = Field("Sorry, I did not understand that.", description="reply when no rule matches")
    token_delay_ms: float = Field(20.0, ge=0, le=5000, description="pause before each streamed token")
    tools: list[ToolParams] = TOOLS_FIELD

    _unique_tools = field_validator("tools")(unique_names)

    @model_validator(mode="after")
    def _rules_call_declared_tools(self):
        names = {t.name for t in self.tools}
        for i, rule in enumerate(self.rules):
            if rule.tool and rule.tool not in names:
                raise ValueError(f"rules[{i}].tool '{rule.tool}' is not in tools "
                                 f"({', '.join(sorted(names)) or 'none declared'})")
        return self


def persona_variables(ctx) -> dict[str, str]:
    """The persona variables of the agent's context block ({} without a persona)."""
    context = ctx.spec.context
    return dict(context.params.get("variables") or {}) if context else {}


def memory_variables(ctx) -> dict[str, str]:
    """``memory_FIELD`` (each field as text) and ``memory_next_FIELD`` (a list's first ``pool`` item not in it).

    Read when the session starts (a user's earlier sessions); without a user
    every field reads as empty, so one script serves both.
    """
    from pipelines.sessions.memory import field_text

    settings = getattr(ctx.spec, "memory", None)
    if settings is None:
        return {}
    fields = ctx.memory.fields if ctx.memory is not None else {}
    out = {}
    for name, declared in settings.fields.items():
        out[f"memory_{name}"] = field_text(declared.type, fields.get(name))
        if declared.pool:
            known = set(fields.get(name) or [])
            out[f"memory_next_{name}"] = next((p for p in declared.pool if p not in known), declared.pool[-1])
    return out


def make_scripted_llm(params: ScriptedParams, ctx):
    """Creates the scripted LLM service.

    With a persona, replies may use its variables too (``Let's practise
    {subject}``), and a rule may be for some values only (``when: {subject:
    French}``), so one script serves every persona. The variables are the
    agent's as built: a served session's own (``POST /sessions`` variables)
    when the server built it for one.
    """
    from processors.llm.scripted import Rule, ScriptedLLMService
    from processors.tools.runtime import install_tools

    variables = {**persona_variables(ctx), **memory_variables(ctx)}

    def say(text: str, key: str) -> str:
        if not variables:
            return text
        try:
            return fill(text, variables)
        except ValueError as e:
            raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}.{key}", str(e))]) from None

    memory = getattr(ctx.spec, "memory", None)
    for i, r in enumerate(params.rules):
        unknown = sorted(r.when.keys() - variables.keys())
        if unknown:
            raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}.rules[{i}].when",
                                            f"'{unknown[0]}' is not a persona variable of the context")])
        for j, write in enumerate(r.remember):
            if memory is None or write.field not in memory.fields:
                known = ", ".join(memory.fields) if memory else "the agent has no memory: block"
                raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}.rules[{i}].remember[{j}].field",
                                                f"'{write.field}' is not a memory field ({known})")])
    rules = [
        Rule(
            re.compile(r.match, re.IGNORECASE),
            # A tool rule's reply is filled when the result comes, persona variables included.
            r.reply if r.tool else say(r.reply, f"rules[{i}].reply"),
            recall=re.compile(r.recall, re.IGNORECASE) if r.recall else None,
            tool=r.tool,
            arguments=r.arguments,
            say=say(r.say, f"rules[{i}].say"),
            on_error=say(r.on_error, f"rules[{i}].on_error"),
            remember=tuple((w.forget, w.field, w.value) for w in r.remember),
        )
        for i, r in enumerate(params.rules)
        if all(variables[k].casefold() == v.casefold() for k, v in r.when.items())
    ]
    service = ScriptedLLMService(
        rules=rules,
        fallback=say(params.fallback, "fallback"),
        token_delay_s=params.token_delay_ms / 1000.0,
        variables=variables,
        memory=ctx.memory,
        name=ctx.processor_id,
    )
    install_tools(service, params.tools, ctx)
    return service


class OpenAIParams(Params):
    model: str = Field(min_length=1, description="model name, e.g. gpt-4o-mini")
    base_url: str = Field("", pattern=r"^(https?://\S+)?$", description="OpenAI-compatible endpoint; empty for OpenAI's own")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="name of the environment variable holding the API key")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)
    tools: list[ToolParams] = TOOLS_FIELD

    _unique_tools = field_validator("tools")(unique_names)


def make_openai_compatible_llm(params: OpenAIParams, ctx):
    """Creates pipecat's OpenAI LLM service; fails at build time without key or base URL."""
    try:
        from processors.llm.openai import MissingCredentialsError, create_openai_llm
    except ImportError as e:
        raise missing_extra(f"processors.{ctx.processor_id}", "openai", e) from None

    from processors.tools.runtime import install_tools

    try:
        service = create_openai_llm(
            model=params.model,
            base_url=params.base_url,
            api_key_env=params.api_key_env,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            name=ctx.processor_id,
        )
    except MissingCredentialsError as e:
        raise ConfigErrors([ConfigError(None, f"processors.{ctx.processor_id}", str(e))]) from None
    install_tools(service, params.tools, ctx)
    return service


TYPES = [
    TypeInfo("processor", "scripted_llm", ScriptedParams, make_scripted_llm, "deterministic LLM: ordered regex rules, streamed replies",
             aliases=("scripted",)),
    # Not pipecat's whole OpenAI service (that is the generated ``openai_llm``): a model at any OpenAI-compatible endpoint.
    TypeInfo("processor", "openai_compatible_llm", OpenAIParams, make_openai_compatible_llm,
             "LLM at any OpenAI-compatible endpoint (key from env)", aliases=("openai",)),
]
