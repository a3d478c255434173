"""Tools at run time: handlers for pipecat's function calling, installed on any LLM service.

``install_tools`` registers one pipecat function handler per YAML tool and
advertises the tools' schemas in the LLM context the service answers (set
when a context reaches the service without tools of its own), so the same
YAML works for the ``openai`` type, every catalogue LLM that supports function
calling, and the scripted LLM.

Every handler has one shape, ``async (arguments) -> result``; errors that the
LLM should hear about (a timeout, an HTTP error) are results of the form
``{"error": "..."}``. An interruption cancels a call whose tool has
``cancel_on_interruption`` (pipecat's function-call runner does it); the
cancelled handler's result is never reported, so it is never spoken.
"""

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pipelines.errors import ConfigError, ConfigErrors, did_you_mean
from processors.tools.params import MEMORY_BUILTINS, TOOL_KIND, HttpHandlerParams, ToolParams

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
#: The longest reply body quoted back to the LLM in an HTTP error.
ERROR_BODY_CHARS = 200


def http_handler(spec: HttpHandlerParams) -> Handler:
    """POSTs the arguments to ``spec.url`` and returns its JSON reply (or ``{"error": ...}``)."""

    async def call(arguments: Mapping[str, Any]) -> Any:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=spec.timeout_secs)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(spec.url, json=dict(arguments), headers=spec.headers) as response:
                    body = await response.text()
        except TimeoutError:
            return {"error": f"the tool did not answer within {spec.timeout_secs:g} s"}
        except aiohttp.ClientError as e:
            return {"error": f"the tool could not be reached ({type(e).__name__})"}
        if response.status >= 400:
            return {"error": f"the tool answered HTTP {response.status}: {body[:ERROR_BODY_CHARS]}"}
        try:
            return json.loads(body) if body.strip() else {}
        except ValueError:
            return {"error": "the tool's reply is not JSON"}

    return call


def registered_handler(tool: ToolParams, key: str, ctx, registry) -> Handler:
    """The handler a package registered as tool type ``tool.handler.type``, built with its params."""
    from pydantic import ValidationError

    ref = tool.handler
    info = registry.get(TOOL_KIND, ref.type)
    if info is None:
        hint = did_you_mean(ref.type, registry.names(TOOL_KIND))
        raise ConfigErrors([ConfigError(None, f"{key}.handler.type", f"unknown tool type '{ref.type}'", hint)])
    try:
        params = info.params.model_validate(ref.params)
    except ValidationError as e:
        raise ConfigErrors([
            ConfigError(None, ".".join([f"{key}.handler", *map(str, err["loc"])]), err["msg"]) for err in e.errors()
        ]) from None
    return info.factory(params, ctx)


async def _end_conversation(params, arguments: Mapping[str, Any]) -> None:
    """Ends the session once the bot has said what it was saying (graceful end, from the top)."""
    from pipecat.frames.frames import EndWorkerFrame, FunctionCallResultProperties
    from pipecat.processors.frame_processor import FrameDirection

    await params.result_callback({"ended": True}, properties=FunctionCallResultProperties(run_llm=False))
    await params.llm.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)


async def _send_to_client(params, arguments: Mapping[str, Any]) -> None:
    """Sends the arguments to the client as a transport message (RTVI server message where RTVI runs)."""
    from pipecat.frames.frames import OutputTransportMessageUrgentFrame

    await params.llm.push_frame(OutputTransportMessageUrgentFrame(message=dict(arguments)))
    await params.result_callback({"delivered": True})


def _memory_builtin(verb: str, ctx):
    """``remember``/``forget``: a typed write to the session user's memory (``ctx.memory``)."""

    async def write(params, arguments: Mapping[str, Any]) -> None:
        if ctx.memory is None:
            await params.result_callback({"error": "this session has no user: nothing can be remembered"})
            return
        await params.result_callback(await ctx.memory.tool(verb, dict(arguments)))

    return write


def memory_tool_parameters(memory, verb: str) -> dict[str, Any]:
    """The JSON schema of ``remember``/``forget``: a field of the agent's memory and a value."""
    lines = [f"{name} ({f.type}){': ' + f.description if f.description else ''}" for name, f in memory.fields.items()]
    return {
        "type": "object",
        "properties": {
            "field": {"type": "string", "enum": list(memory.fields), "description": "; ".join(lines)},
            "value": {"type": "string", "description": f"what to {verb} (a counter: how many)"},
        },
        "required": ["field", "value"] if verb == "remember" else ["field"],
    }


BUILTIN_HANDLERS = {"end_conversation": _end_conversation, "send_to_client": _send_to_client}


def _function_handler(tool: ToolParams, key: str, ctx, registry):
    """A pipecat function-call handler (``async (FunctionCallParams) -> None``) for ``tool``."""
    if tool.builtin in MEMORY_BUILTINS:
        if getattr(ctx.spec, "memory", None) is None:
            raise ConfigErrors([ConfigError(None, f"{key}.builtin",
                                            f"builtin '{tool.builtin}' needs a memory: block on the agent")])
        builtin = _memory_builtin(tool.builtin, ctx)

        async def run_memory(params) -> None:
            await builtin(params, params.arguments)

        return run_memory
    if tool.builtin:
        builtin = BUILTIN_HANDLERS[tool.builtin]

        async def run_builtin(params) -> None:
            await builtin(params, params.arguments)

        return run_builtin
    call = http_handler(tool.http) if tool.http else registered_handler(tool, key, ctx, registry)

    async def run(params) -> None:
        await params.result_callback(await call(params.arguments))

    return run


def tools_schema(tools: list[ToolParams], memory=None):
    """pipecat's ``ToolsSchema`` for ``tools`` (what the LLM is told it may call).

    ``remember``/``forget`` get their parameters from the agent's ``memory`` fields.
    """
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
    from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema

    def parameters(t: ToolParams) -> dict[str, Any]:
        return memory_tool_parameters(memory, t.builtin) if t.builtin in MEMORY_BUILTINS and memory else t.parameters

    return ToolsSchema(standard_tools=[
        FunctionSchema(
            name=t.name,
            description=t.description,
            properties=parameters(t).get("properties", {}),
            required=list(parameters(t).get("required", [])),
        )
        for t in tools
    ])


def install_tools(service, tools: list[ToolParams], ctx, registry=None) -> None:
    """Registers ``tools``' handlers on an LLM service and advertises them to its contexts.

    Args:
        service: The pipecat LLM service.
        tools: The LLM's ``tools:`` list.
        ctx: The LLM's build context; registered tool types get it too (``factory(params, ctx)``).
        registry: Where registered tool types are looked up (the process-wide registry by default).

    Raises:
        ConfigErrors: A ``handler`` names no registered tool type, or its params are wrong.
    """
    from pipecat.frames.frames import LLMContextFrame
    from pipecat.processors.aggregators.llm_context import NOT_GIVEN

    from pipelines.registry import default_registry

    if not tools:
        return
    registry = registry or default_registry()
    for i, tool in enumerate(tools):
        handler = _function_handler(tool, f"processors.{ctx.processor_id}.tools[{i}]", ctx, registry)
        service.register_function(tool.name, handler, cancel_on_interruption=tool.cancel_on_interruption)
    schema = tools_schema(tools, getattr(ctx.spec, "memory", None))

    @service.event_handler("on_before_process_frame")
    async def _advertise(_service, frame) -> None:
        if isinstance(frame, LLMContextFrame) and frame.context.tools is NOT_GIVEN:
            frame.context.set_tools(schema)
