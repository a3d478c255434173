"""Tools in YAML: HTTP handlers against a real local server, built-ins, entry-point handlers, interruption.

The LLM is the scripted one, whose rules call tools through pipecat's own
function-calling path, so everything here runs offline. The HTTP endpoints
are a real aiohttp server on 127.0.0.1, port 0.
"""

import asyncio
import json
import sys
import textwrap

import pytest
from aiohttp import web
from pipecat.frames.frames import (
    EndFrame,
    FunctionCallCancelFrame,
    FunctionCallResultFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
)
from pipecat.utils.time import time_now_iso8601

from pipelines import registry as registry_module
from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text
from processors.tools.params import HttpHandlerParams
from processors.tools.runtime import http_handler


class ToolServer:
    """A local HTTP tool endpoint: records each request; ``/slow`` answers after ``delay`` seconds."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.received = asyncio.Event()
        self.delay = 0.0
        self._runner = None
        self.url = ""

    async def _weather(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        self.received.set()
        if request.path == "/slow":
            await asyncio.sleep(self.delay)
        if request.path == "/broken":
            return web.Response(status=500, text="database down")
        if request.path == "/text":
            return web.Response(text="not json")
        return web.json_response({"city": body.get("city", "?"), "summary": "sunny", "celsius": 21})

    async def __aenter__(self) -> "ToolServer":
        app = web.Application()
        app.router.add_post("/{name}", self._weather)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def server():
    async with ToolServer() as s:
        yield s


def agent(tools: str, rules: str) -> str:
    return textwrap.dedent("""\
        version: 1
        name: tools
        transport: {type: synthetic}
        context: {type: llm_context, system_prompt: "You help."}
        processors:
          llm:
            type: scripted
            token_delay_ms: 0
            fallback: "Sorry?"
            tools:
        %s
            rules:
        %s
        pipeline: [input, user_context, llm, output, assistant_context]
        """) % (textwrap.indent(tools, " " * 6), textwrap.indent(rules, " " * 6))


WEATHER_TOOL = """\
- name: get_weather
  description: The weather in a city
  parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
  http: {{url: "{url}", timeout_secs: {timeout}}}
"""
WEATHER_RULE = """\
- match: "weather in (?P<city>\\\\w+)"
  tool: get_weather
  arguments: {city: "{city}"}
  say: "Let me look."
  reply: "In {city} it is {summary}, {celsius} degrees."
  on_error: "The weather service is not answering."
"""


def user_says(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "user", time_now_iso8601(), finalized=True)


async def spoken_after(h: AgentHarness, text: str, replies: int = 2) -> str:
    """All the LLM says (``replies`` responses) after the user says ``text``."""
    llm = h.probe("llm")
    await h.inject(user_says(text), at="user_context")
    await llm.wait_for(LLMFullResponseEndFrame, count=replies, timeout=10)
    return "".join(f.text for f in llm.of_type(LLMTextFrame))


async def test_http_handler_posts_the_arguments_and_returns_the_json_reply(server):
    call = http_handler(HttpHandlerParams(url=f"{server.url}/weather", headers={"X-Key": "k"}))
    assert await call({"city": "Oslo"}) == {"city": "Oslo", "summary": "sunny", "celsius": 21}
    assert server.requests == [("/weather", {"city": "Oslo"})]


async def test_http_handler_reports_errors_timeouts_and_bad_replies_to_the_llm(server):
    server.delay = 2.0
    slow = await http_handler(HttpHandlerParams(url=f"{server.url}/slow", timeout_secs=0.2))({})
    assert slow == {"error": "the tool did not answer within 0.2 s"}
    broken = await http_handler(HttpHandlerParams(url=f"{server.url}/broken"))({})
    assert broken == {"error": "the tool answered HTTP 500: database down"}
    text = await http_handler(HttpHandlerParams(url=f"{server.url}/text"))({})
    assert text == {"error": "the tool's reply is not JSON"}
    await server.__aexit__()  # nothing listens there any more
    gone = await http_handler(HttpHandlerParams(url=f"{server.url}/weather", timeout_secs=2))({})
    assert gone["error"].startswith("the tool could not be reached")


async def test_a_rule_calls_an_http_tool_and_speaks_its_result(server):
    yaml = agent(WEATHER_TOOL.format(url=f"{server.url}/weather", timeout=5), WEATHER_RULE)
    async with AgentHarness.from_text(yaml) as h:
        assert await spoken_after(h, "what is the weather in Paris") == (
            "Let me look.In Paris it is sunny, 21 degrees."
        )
        messages = h.built.llm_context.get_messages()
    assert server.requests == [("/weather", {"city": "Paris"})]
    # The call and its result are in the conversation, as a model's tool call would be.
    call = next(m for m in messages if m.get("tool_calls"))
    assert call["tool_calls"][0]["function"]["name"] == "get_weather"
    result = next(m for m in messages if m.get("role") == "tool")
    assert json.loads(result["content"])["summary"] == "sunny"


async def test_a_tool_that_times_out_gets_the_rules_error_reply(server):
    server.delay = 3.0
    yaml = agent(WEATHER_TOOL.format(url=f"{server.url}/slow", timeout=0.3), WEATHER_RULE)
    async with AgentHarness.from_text(yaml) as h:
        assert await spoken_after(h, "weather in Oslo") == "Let me look.The weather service is not answering."


async def test_the_tools_are_advertised_to_the_llm_in_its_context(server):
    yaml = agent(WEATHER_TOOL.format(url=f"{server.url}/weather", timeout=5), WEATHER_RULE)
    async with AgentHarness.from_text(yaml) as h:
        await spoken_after(h, "hello", replies=1)
        tools = h.built.llm_context.tools
    (schema,) = tools.standard_tools
    assert (schema.name, schema.required, schema.properties) == ("get_weather", ["city"], {"city": {"type": "string"}})


async def test_an_interruption_cancels_the_call_and_its_result_is_never_spoken(server):
    server.delay = 1.0
    yaml = agent(WEATHER_TOOL.format(url=f"{server.url}/slow", timeout=5), WEATHER_RULE)
    async with AgentHarness.from_text(yaml) as h:
        llm, context = h.probe("llm"), h.probe("assistant_context", processed=True)
        await h.inject(user_says("weather in Rome"), at="user_context")
        await asyncio.wait_for(server.received.wait(), 5)
        await h.built.interrupt()
        await context.wait_for(FunctionCallCancelFrame, timeout=5)
        await asyncio.sleep(server.delay + 0.5)  # the endpoint has answered by now
        spoken = "".join(f.text for f in llm.of_type(LLMTextFrame))
        assert "Rome" not in spoken and spoken == "Let me look."
        assert not llm.of_type(FunctionCallResultFrame)
        # The agent goes on: the next question is answered.
        server.delay = 0.0
        assert "sunny" in await spoken_after(h, "weather in Rome")


async def test_send_to_client_hands_the_arguments_to_the_transport():
    yaml = agent(
        "- {name: show_card, description: Show a card, builtin: send_to_client,\n"
        "   parameters: {type: object, properties: {title: {type: string}}}}\n",
        '- {match: card, tool: show_card, arguments: {title: "Menu"}, reply: "There it is."}\n',
    )
    async with AgentHarness.from_text(yaml) as h:
        llm = h.probe("llm")
        assert await spoken_after(h, "show me the card", replies=2) == "There it is."
    (message,) = llm.of_type(OutputTransportMessageUrgentFrame)
    assert message.message == {"title": "Menu"}


async def test_end_conversation_ends_the_session_after_the_goodbye():
    yaml = agent(
        "- {name: hang_up, description: End the call, builtin: end_conversation}\n",
        '- {match: bye, tool: hang_up, say: "Goodbye!"}\n',
    )
    async with AgentHarness.from_text(yaml) as h:
        output = h.probe("output", processed=True)
        await h.inject(user_says("bye now"), at="user_context")
        await output.wait_for(EndFrame, timeout=10)
        await asyncio.wait_for(h._run_task, 10)  # the worker finished by itself
        texts = [f.text for f in output.of_type(LLMTextFrame)]
    assert texts == ["Goodbye!"]
    assert output.frames.index(output.of_type(LLMTextFrame)[0]) < output.frames.index(output.of_type(EndFrame)[0])


DEMO_PACKAGE = '''
"""A third-party package registering a tool type through framegraph's entry points."""
from pydantic import BaseModel, ConfigDict
from pipelines.registry import TypeInfo


class OrderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shop: str


def build(params, ctx):
    async def lookup(arguments):
        return {"status": f"order {arguments['order']} from {params.shop} ships today"}
    return lookup


TYPES = [TypeInfo("tool", "demo_orders", OrderParams, build, "order status (test package)")]
'''


@pytest.fixture
def demo_package(tmp_path, monkeypatch):
    """Installs a tiny package with a ``framegraph.types`` entry point (a dist-info on sys.path)."""
    (tmp_path / "demo_tools.py").write_text(DEMO_PACKAGE)
    dist = tmp_path / "demo_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[framegraph.types]\ndemo = demo_tools:TYPES\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_default", registry_module.load_registry())
    yield
    sys.modules.pop("demo_tools", None)


async def test_a_tool_handler_registered_by_an_installed_package(demo_package):
    yaml = agent(
        "- name: order_status\n  description: Where is my order\n  handler: {type: demo_orders, shop: Acme}\n"
        "  parameters: {type: object, properties: {order: {type: string}}}\n",
        '- {match: "order (?P<n>\\\\d+)", tool: order_status, arguments: {order: "{n}"}, reply: "{status}."}\n',
    )
    async with AgentHarness.from_text(yaml) as h:
        assert await spoken_after(h, "where is order 42") == "order 42 from Acme ships today."


def test_tool_errors_name_the_key():
    with pytest.raises(ConfigErrors) as e:
        load_agent_text(agent(
            "- {name: a, description: x, builtin: end_conversation, http: {url: 'http://x'}}\n"
            "- {name: b, description: x, builtin: launch_rockets}\n"
            "- {name: c, description: x, builtin: end_conversation, parameters: {type: string}}\n",
            "- {match: x, tool: nope}\n",
        ))
    text = str(e.value)
    assert "exactly one of http, builtin and handler (got http, builtin)" in text
    assert "tools.1.builtin" in text and "tools.2.parameters" in text and "type: object" in text


async def test_an_unknown_handler_type_is_a_config_error_with_a_hint():
    yaml = agent("- {name: a, description: x, handler: {type: demo_order}}\n", "- {match: x, reply: y}\n")
    with pytest.raises(ConfigErrors, match=r"processors.llm.tools\[0\].handler.type: unknown tool type 'demo_order'"):
        AgentHarness.from_text(yaml)
