"""The ``tools:`` list of an LLM's params: each tool's schema and the handler bound to it.

A tool is what the LLM may call: a name, a description and JSON-schema
parameters (an object schema, as OpenAI's function calling takes it). Its
handler is exactly one of:

- ``http``: POST the arguments as JSON to a URL; the JSON reply goes back to
  the LLM (a timeout or an HTTP error goes back as ``{"error": ...}``);
- ``builtin``: ``end_conversation`` (the bot finishes what it is saying, then
  the session ends), ``send_to_client`` (the arguments go to the client as
  a transport message), or ``remember``/``forget`` (the user's memory, typed by
  the agent's ``memory:`` fields: docs/users.md);
- ``handler``: a tool type an installed package registered through the
  ``framegraph.types`` entry points (``TypeInfo(kind="tool", ...)``), with
  that type's own params. A config never names Python code.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The registry kind of entry-point tool handlers.
TOOL_KIND = "tool"
BUILTINS = ("end_conversation", "send_to_client", "remember", "forget")
#: Builtins that write the user's memory; their parameters come from the agent's ``memory:`` fields.
MEMORY_BUILTINS = ("remember", "forget")


class HttpHandlerParams(BaseModel):
    """POST the call's arguments to ``url``; the JSON reply is the result."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", description="endpoint receiving the arguments as a JSON object")
    timeout_secs: float = Field(10.0, gt=0, le=600, description="longest wait for the reply; then the LLM hears of a timeout")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (use ${VAR} for secrets)")


class HandlerRef(BaseModel):
    """A tool type registered by an installed package, and its params."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, description="the registered tool type's name")

    @property
    def params(self) -> dict[str, Any]:
        """The keys other than ``type``: the tool type's own params."""
        return dict(self.model_extra or {})


class ToolParams(BaseModel):
    """One tool the LLM may call."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$", description="the function name the LLM calls")
    description: str = Field(min_length=1, description="what the tool does, for the LLM")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments (an object schema)",
    )
    http: HttpHandlerParams | None = None
    builtin: Literal[BUILTINS] | None = None  # type: ignore[valid-type]
    handler: HandlerRef | None = None
    cancel_on_interruption: bool = Field(
        True, description="an interruption cancels the call; its result is then never spoken"
    )

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError("must be a JSON schema with type: object")
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise ValueError("properties must be a mapping of argument names to schemas")
        missing = [name for name in schema.get("required", []) if name not in properties]
        if missing:
            raise ValueError(f"required names arguments not in properties: {', '.join(missing)}")
        return schema

    @model_validator(mode="after")
    def _one_handler(self):
        given = [k for k in ("http", "builtin", "handler") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"tool '{self.name}' needs exactly one of http, builtin and handler"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


def unique_names(tools: list[ToolParams]) -> list[ToolParams]:
    """Validator helper: tool names must be unique within one LLM."""
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"tool names must be unique: {', '.join(twice)}")
    return tools
