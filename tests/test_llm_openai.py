"""The ``openai`` LLM type: validation without keys, build-time errors, a mock endpoint."""

import json
from pathlib import Path

import pytest
from aiohttp import web
from pipecat.frames.frames import LLMFullResponseEndFrame, LLMTextFrame, TranscriptionFrame
from pipecat.utils.time import time_now_iso8601

from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent, load_agent_text

ROOT = Path(__file__).resolve().parent.parent

AGENT = """
version: 1
name: remote
transport: {{type: synthetic}}
context: {{type: llm_context, system_prompt: "Answer in one word."}}
processors:
  llm: {{type: openai, model: test-model, base_url: "{base_url}", api_key_env: FRAMEGRAPH_TEST_KEY}}
pipeline: [input, user_context, llm, output, assistant_context]
"""


def test_openai_config_validates_without_key_or_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    load_agent(ROOT / "configs" / "openai.yaml")


def test_building_without_key_or_base_url_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("FRAMEGRAPH_TEST_KEY", raising=False)
    agent = load_agent_text(AGENT.format(base_url=""), "agent.yaml")
    with pytest.raises(ConfigErrors) as caught:
        build_agent(agent)
    assert str(caught.value) == "processors.llm: llm: set FRAMEGRAPH_TEST_KEY (or base_url for a local OpenAI-compatible server)"


@pytest.fixture
async def mock_openai_endpoint():
    """A local stand-in for an OpenAI-compatible server: streams "Paris" in two chunks."""
    requests = []

    async def completions(request: web.Request) -> web.StreamResponse:
        requests.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("Par", "is."):
            chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "test-model",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1", requests
    await runner.cleanup()


async def test_mock_endpoint_answer_streams_through_the_context(mock_openai_endpoint, monkeypatch):
    base_url, requests = mock_openai_endpoint
    monkeypatch.delenv("FRAMEGRAPH_TEST_KEY", raising=False)
    async with AgentHarness.from_text(AGENT.format(base_url=base_url)) as h:
        llm = h.probe("llm")
        await h.inject(TranscriptionFrame("capital of France?", "user", time_now_iso8601(), finalized=True),
                       at="user_context")
        await llm.wait_for(LLMFullResponseEndFrame, timeout=10)
        assert "".join(f.text for f in llm.of_type(LLMTextFrame)) == "Paris."
    sent = requests[0]
    assert sent["model"] == "test-model" and sent["stream"] is True
    assert sent["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert sent["messages"][-1]["content"] == "capital of France?"
