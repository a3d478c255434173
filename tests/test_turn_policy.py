"""Turn end: the transcript-aware policy, its settings, and the shared models."""

import asyncio

import pytest
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMContextFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines import pipecat_compat as compat
from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text
from processors.turn import looks_complete

AGENT = """
version: 1
name: turn
transport: {{type: synthetic}}
context:
  type: llm_context
  vad: null
  turn: {{stop: {stop}, incomplete_timeout: 3.0}}
pipeline: [input, user_context, output]
"""


def test_looks_complete_reads_the_last_word():
    assert looks_complete("go forward ten meters")
    assert looks_complete("he might even have been made amiable himself")
    assert looks_complete("I like it")
    assert not looks_complete("I want to go to the")
    assert not looks_complete("bread and")
    assert not looks_complete("")


async def _say(h: AgentHarness, text: str) -> None:
    """A user utterance as VAD and a finalizing STT report it (no audio: Smart Turn hears nothing
    and judges the turn incomplete). The turn's start interrupts, and an interruption flushes
    queued frames, so the rest comes once it has passed, as it would after real speech."""
    started = h.probe("user_context")
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at="user_context")
    await started.wait_for(InterruptionFrame, timeout=5.0)
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at="user_context")
    await h.inject(TranscriptionFrame(text, "user", "now", finalized=True), at="user_context")


def count_verdicts(h: AgentHarness) -> list[int]:
    """Counts the times the agent asks Smart Turn for a verdict (one-element list, live)."""
    analyzer = compat.turn_analyzer(compat.user_turn_strategies(h.processors["user_context"]).stop[0])
    asked = [0]
    ask = analyzer.analyze_end_of_turn

    async def counted():
        asked[0] += 1
        return await ask()

    analyzer.analyze_end_of_turn = counted
    return asked


async def test_a_plainly_complete_transcript_ends_the_turn_at_once_without_asking_smart_turn():
    async with AgentHarness.from_text(AGENT.format(stop="transcript_aware")) as h:
        asked = count_verdicts(h)
        turns = h.probe("user_context")
        await _say(h, "go forward ten meters")
        frame = await turns.wait_for(LLMContextFrame, timeout=5.0)
        assert frame.context.get_messages()[-1] == {"role": "user", "content": "go forward ten meters"}
        assert asked == [0]


async def test_a_dangling_transcript_asks_smart_turn_and_keeps_the_turn_open():
    async with AgentHarness.from_text(AGENT.format(stop="transcript_aware")) as h:
        asked = count_verdicts(h)
        turns = h.probe("user_context")
        await _say(h, "I want to go to the")
        with pytest.raises(TimeoutError):
            await turns.wait_for(LLMContextFrame, timeout=1.0)
        assert asked == [1]


async def test_no_transcript_by_the_stt_deadline_asks_smart_turn():
    async with AgentHarness.from_text(AGENT.format(stop="transcript_aware")) as h:
        asked = count_verdicts(h)
        started = h.probe("user_context")
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at="user_context")
        await started.wait_for(InterruptionFrame, timeout=5.0)
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at="user_context")
        for _ in range(100):
            if asked[0]:
                break
            await asyncio.sleep(0.05)
        assert asked == [1]


async def test_smart_turn_alone_waits_on_an_incomplete_verdict():
    async with AgentHarness.from_text(AGENT.format(stop="smart_turn")) as h:
        turns = h.probe("user_context")
        await _say(h, "go forward ten meters")
        with pytest.raises(TimeoutError):
            await turns.wait_for(LLMContextFrame, timeout=1.0)


def _user_aggregator(yaml_text: str):
    return build_agent(load_agent_text(yaml_text)).processors["user_context"]


def test_agents_share_one_vad_and_one_smart_turn_session():
    text = AGENT.format(stop="transcript_aware").replace("vad: null", "vad: {stop_secs: 0.15}")
    first, second = _user_aggregator(text), _user_aggregator(text)
    vads = [compat.vad_analyzer(a) for a in (first, second)]
    assert vads[0] is not vads[1]
    assert compat.onnx_session(vads[0]) is compat.onnx_session(vads[1])
    assert vads[0].params.stop_secs == 0.15
    turn_analyzers = [compat.turn_analyzer(compat.user_turn_strategies(a).stop[0]) for a in (first, second)]
    assert compat.onnx_session(turn_analyzers[0]) is compat.onnx_session(turn_analyzers[1])
    assert turn_analyzers[0].params.stop_secs == 3.0


def test_min_words_interruptions_start_turns_on_words():
    from pipecat.turns.user_start import MinWordsUserTurnStartStrategy

    text = AGENT.format(stop="speech_timeout") + "interruptions: {min_words: 2}\n"
    start = compat.user_turn_strategies(_user_aggregator(text)).start
    assert [type(s) for s in start] == [MinWordsUserTurnStartStrategy]


def test_vad_needs_a_rate_silero_supports():
    text = AGENT.format(stop="smart_turn").replace("vad: null", "vad: {}")
    text = text.replace("{type: synthetic}", "{type: synthetic, audio_in_sample_rate: 24000}")
    with pytest.raises(ConfigErrors) as raised:
        build_agent(load_agent_text(text))
    message = str(raised.value)
    assert "\n" not in message and "context.vad" in message and "24000" in message
