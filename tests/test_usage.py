"""Usage counted from what pipecat reports: a real graph's STT, LLM and TTS, each report once, priced."""

import asyncio
import json

import pytest
from conftest import ROOT
from test_llm_scripted import reply_to
from transport_kit import speech

from pipelines.testing import AgentHarness
from pipelines.usage import UsageMeter, priced, split_key, totals
from pipelines.validate import load_agent
from processors.llm.scripted import estimate_tokens

TUTOR = ROOT / "configs" / "language_tutor.yaml"


async def test_the_tutors_stt_llm_and_tts_usage_is_counted_once():
    agent = load_agent(TUTOR)
    meter = UsageMeter({"stt": "pocketsphinx", "llm": "scripted", "tts": "espeak"}, agent.spec.usage.prices)
    pcm = await speech("hello") + bytes(32000)
    async with AgentHarness(agent, observers=[meter], usage_metrics=True) as h:
        await h.inject_audio(pcm)  # heard by the STT (its audio seconds)
        reply = await reply_to(h, "hello")
        asked = h.built.llm_context.get_messages()[:2]  # the system prompt and "hello": what the LLM was given
        for _ in range(300):
            if any(k.startswith("tts/") for k in meter.counted):
                break
            await asyncio.sleep(0.05)
    counted = meter.counted  # the STT reports its audio at a final transcript, or when it stops
    assert counted["stt/pocketsphinx/pocketsphinx-en-us/audio_s"] == pytest.approx(len(pcm) / 32000, abs=0.05)
    assert counted["llm/scripted/scripted/prompt_tokens"] == estimate_tokens(json.dumps(asked)) > 50
    assert counted["llm/scripted/scripted/completion_tokens"] == estimate_tokens(reply)
    assert counted["tts/espeak/-/characters"] >= len(reply) - 5  # sentences lose the spaces between them
    assert counted["llm/scripted/scripted/cost"] == pytest.approx(
        counted["llm/scripted/scripted/prompt_tokens"] * 5e-7 + counted["llm/scripted/scripted/completion_tokens"] * 1.5e-6)
    taken = meter.take()
    assert taken == counted and meter.take() == {}  # handed over once


def test_keys_prices_and_totals():
    assert split_key("llm/openai/org/model-1/prompt_tokens") == ("llm", "openai", "org/model-1", "prompt_tokens")
    counts = {"llm/openai/gpt/prompt_tokens": 1000.0, "llm/openai/gpt/completion_tokens": 10.0,
              "tts/espeak/-/characters": 50.0}
    out = priced(counts, {"openai/gpt": {"prompt_tokens": 0.001}, "espeak": {"characters": 0.01}})
    assert out["llm/openai/gpt/cost"] == pytest.approx(1.0) and out["tts/espeak/-/cost"] == pytest.approx(0.5)
    assert totals(out) == pytest.approx({"prompt_tokens": 1000, "completion_tokens": 10, "characters": 50,
                                         "cost": 1.5, "tokens": 1010})
