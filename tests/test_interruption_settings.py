"""The YAML's ``interruptions`` settings take effect: enabled, min_words, min_speech_secs, while_thinking."""

import asyncio

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.testing import AgentHarness

AGENT = """version: 1
name: settings
transport: {{type: synthetic, audio_out_sample_rate: 16000}}
context:
  type: llm_context
  vad: null
  turn: {{stop: speech_timeout, speech_timeout: 0.05}}
pipeline: [input, user_context, output, assistant_context]
interruptions: {{{settings}}}
"""

CHUNK = bytes(2 * 320)  # 20 ms at 16 kHz


def harness(settings: str) -> AgentHarness:
    return AgentHarness.from_text(AGENT.format(settings=settings))


async def bot_speaks(h: AgentHarness, secs: float = 1.0) -> None:
    """Bot audio through the output; returns once the user aggregator heard that the bot speaks."""
    heard = h.probe("user_context", processed=True)
    tone = b"\x00\x10" * 320
    for _ in range(int(secs * 50)):
        await h.inject(TTSAudioRawFrame(tone, 16000, 1))
    await heard.wait_for(BotStartedSpeakingFrame, timeout=5.0)


async def user_starts(h: AgentHarness) -> None:
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")


async def user_speaks_for(h: AgentHarness, secs: float) -> None:
    """Audio frames at the user aggregator for ``secs`` (the policy measures speech as it arrives)."""
    for _ in range(int(secs * 50)):
        await h.inject(InputAudioRawFrame(CHUNK, 16000, 1), at="user_context")
        await asyncio.sleep(0.02)


async def user_finishes(h: AgentHarness, text: str = "hello there") -> None:
    turns = h.probe("user_context")
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
    await h.inject(TranscriptionFrame(text, "user", "now", finalized=True), at="user_context")
    await turns.wait_for(LLMContextFrame, timeout=5.0)


async def interruptions(h: AgentHarness, wait: float = 0.2) -> int:
    await asyncio.sleep(wait)
    return h.built.interruptions.epoch


async def test_by_default_the_user_interrupts_a_speaking_bot_at_once():
    async with harness("") as h:
        await bot_speaks(h)
        await user_starts(h)
        assert await interruptions(h) == 1


async def test_disabled_interruptions_leave_the_bot_talking():
    async with harness("enabled: false") as h:
        await bot_speaks(h)
        await user_starts(h)
        assert await interruptions(h) == 0
        await h.built.interrupt()
        assert await interruptions(h, 0) == 1, "the API still interrupts"


async def test_min_words_waits_for_enough_words_while_the_bot_speaks():
    async with harness("min_words: 3") as h:
        await bot_speaks(h)
        await user_starts(h)
        await h.inject(InterimTranscriptionFrame("uh huh", "user", "now"), at="user_context")
        assert await interruptions(h) == 0
        await h.inject(InterimTranscriptionFrame("wait stop please", "user", "now"), at="user_context")
        assert await interruptions(h) == 1


async def test_min_speech_secs_waits_for_enough_speech_and_ignores_a_blip():
    async with harness("min_speech_secs: 0.4") as h:
        await bot_speaks(h, 3.0)
        await user_starts(h)
        await user_speaks_for(h, 0.1)
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
        assert await interruptions(h) == 0, "a 0.1 s blip interrupted"
        await user_starts(h)
        await user_speaks_for(h, 0.2)
        assert await interruptions(h, 0) == 0, "interrupted before 0.4 s of speech"
        await user_speaks_for(h, 0.4)
        assert await interruptions(h) == 1


async def test_while_thinking_false_spares_the_reply_being_prepared():
    async with harness("while_thinking: false") as h:
        await user_starts(h)
        await user_finishes(h)  # the bot now thinks about its reply
        first = await interruptions(h)
        await user_starts(h)
        assert await interruptions(h) == first, "the user interrupted the thinking bot"
        await user_finishes(h, "and another thing")
        await bot_speaks(h)
        await user_starts(h)
        assert await interruptions(h) == first + 1, "the speaking bot was not interrupted"
