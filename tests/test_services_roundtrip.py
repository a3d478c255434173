"""A whole catalogue agent (openai_stt, openai_llm, openai_tts) against a FAKE OpenAI-compatible server.

The provider's API cannot be reached here, so a local aiohttp server on
127.0.0.1 (port 0) plays it: it transcribes any audio as a fixed question,
answers the first chat completion with a tool call and the second (which
carries the tool's result) with text, and speaks with a tone. Everything
else is real: pipecat's services and the OpenAI client, Silero VAD on
espeak speech, the tool's HTTP handler, the synthetic transport.
"""

import asyncio
import json

import numpy as np
import pytest
from aiohttp import web
from pipecat.frames.frames import TTSAudioRawFrame

from pipelines.testing import AgentHarness
from processors.tts.espeak import synthesize_pcm

QUESTION = "What is the weather in Paris?"
ANSWER = "It is sunny in Paris."


class FakeOpenAI:
    """A fake OpenAI-compatible API: transcriptions, streamed chat completions with a tool call, speech."""

    def __init__(self):
        self.transcriptions: list[int] = []  # audio bytes received
        self.chats: list[dict] = []
        self.speech: list[dict] = []
        self.tool_calls: list[dict] = []
        self.url = ""

    async def transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.transcriptions.append(len(form["file"].file.read()))
        return web.json_response({"text": QUESTION})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.chats.append(body)
        answered = any(m.get("role") == "tool" for m in body["messages"])
        if answered:
            deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in ANSWER.split(" ")]
            deltas = [deltas[0]] + [{"content": (" " if i else "") + d["content"]} for i, d in enumerate(deltas[1:])]
            finish = "stop"
        else:
            call = {"index": 0, "id": "call_fake_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
            deltas, finish = [{"role": "assistant", "content": None, "tool_calls": [call]}], "tool_calls"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, delta in enumerate(deltas + [{}]):
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish if i == len(deltas) else None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def speak(self, request: web.Request) -> web.StreamResponse:
        self.speech.append(await request.json())
        t = np.arange(int(0.5 * 24000)) / 24000
        tone = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16).tobytes()
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        for offset in range(0, len(tone), 4800):
            await response.write(tone[offset:offset + 4800])
        return response

    async def weather(self, request: web.Request) -> web.Response:
        self.tool_calls.append(await request.json())
        return web.json_response({"summary": "sunny"})


@pytest.fixture
async def fake_openai():
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", fake.transcribe)
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/audio/speech", fake.speak)
    app.router.add_post("/tools/weather", fake.weather)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def cloud_agent(url: str) -> str:
    return f"""
version: 1
name: cloud
transport: {{type: synthetic, audio_out_sample_rate: 24000}}
context:
  type: llm_context
  system_prompt: Answer briefly.
  turn: {{stop: speech_timeout, speech_timeout: 0.3}}
processors:
  stt: {{type: openai_stt, base_url: "{url}/v1", settings: {{model: whisper-1}}}}
  llm:
    type: openai_llm
    base_url: "{url}/v1"
    settings: {{model: gpt-fake}}
    tools:
      - name: get_weather
        description: The weather in a city
        parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
        http: {{url: "{url}/tools/weather", timeout_secs: 5}}
  tts: {{type: openai_tts, base_url: "{url}/v1", settings: {{model: tts-fake, voice: alloy}}}}
pipeline: [input, stt, user_context, llm, tts, output, assistant_context]
"""


async def test_stt_llm_with_a_tool_call_and_tts_through_a_fake_openai_server(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
    speech = await synthesize_pcm(QUESTION, sample_rate=16000)
    silence = bytes(2 * 16000)
    async with AgentHarness.from_text(cloud_agent(fake_openai.url)) as h:
        tts = h.probe("tts")
        await h.inject_audio(silence[:16000] + speech + silence, realtime=True)
        await tts.wait_for(TTSAudioRawFrame, timeout=15)
        await asyncio.sleep(0.2)
        messages = h.built.llm_context.get_messages()
    # STT: the user's speech went to the transcription endpoint once.
    assert len(fake_openai.transcriptions) == 1 and fake_openai.transcriptions[0] > 16000
    # LLM: asked with the transcript and the tool advertised; called the tool; asked again with its result.
    first, second = fake_openai.chats
    assert first["messages"][-1] == {"role": "user", "content": QUESTION}
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert fake_openai.tool_calls == [{"city": "Paris"}]
    tool_message = next(m for m in second["messages"] if m["role"] == "tool")
    assert json.loads(tool_message["content"]) == {"summary": "sunny"}
    # TTS: the answer was spoken.
    assert "".join(s["input"] for s in fake_openai.speech).strip() == ANSWER
    assert messages[-1] == {"role": "assistant", "content": ANSWER}
