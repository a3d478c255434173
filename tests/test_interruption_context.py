"""Context correctness: after an interruption the assistant message holds only what was played."""

import asyncio

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.utils.text.base_text_aggregator import TextType

from pipelines.testing import AgentHarness

WORDS = "once upon a time a small robot learned to speak and said hello to everyone it met".split()

SCRIPTED = """version: 1
name: context
transport: {type: synthetic, audio_out_sample_rate: 16000}
context: {type: llm_context, vad: null, turn: {stop: speech_timeout, speech_timeout: 0.05}}
pipeline: [input, user_context, output, assistant_context]
"""

REPLY = "Once upon a time, a small robot learned to speak. It said hello to everyone it met. One day, someone finally answered."


def spoken(tts: str) -> str:
    """An agent that tells the story ``REPLY`` when asked for one, spoken by ``tts`` (a YAML flow mapping)."""
    return f"""version: 1
name: spoken
transport: {{type: synthetic, audio_out_sample_rate: 24000}}
context: {{type: llm_context, vad: null, turn: {{stop: speech_timeout, speech_timeout: 0.05}}}}
processors:
  llm:
    type: scripted
    rules: [{{match: story, reply: "{REPLY}"}}]
  tts: {tts}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""


SPOKEN = spoken("{type: espeak, voice: en-us, word_timing: true}")


def assistant_said(h: AgentHarness) -> str:
    messages = [m for m in h.built.llm_context.messages if m.get("role") == "assistant"]
    assert messages, "no assistant message in the context"
    return " ".join(messages[-1]["content"].split())


def played_words(output_probe) -> list[str]:
    """Text the output released with its audio before it processed the latest interruption."""
    last = max(i for i, f in enumerate(output_probe.frames) if isinstance(f, InterruptionFrame))
    return [f.text.strip() for f in output_probe.frames[:last] if isinstance(f, TTSTextFrame)]


async def barge_in_on_the_story(config: str, *, words: int, timeout: float, after_s: float):
    """Asks the agent in ``config`` for a story and barges in ``after_s`` after its first ``words`` words came out.

    Returns the words played before the barge-in, what the context says the
    assistant said, and the output audio written after the barge-in.
    """
    async with AgentHarness.from_text(config) as h:
        out = h.probe("output")
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
        await h.inject(TranscriptionFrame("tell me a story", "user", "now", finalized=True), at="user_context")
        await out.wait_for(TTSTextFrame, count=words, timeout=timeout)
        await asyncio.sleep(after_s)
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")
        await asyncio.sleep(0.5)
        said = assistant_said(h)
        audio_after = [w for w in h.output.written
                       if isinstance(w.frame, OutputAudioRawFrame) and w.time > h.built.interruptions.history[-1].at]
    return played_words(out), said, audio_after


async def test_scripted_reply_interrupted_mid_sentence_keeps_only_the_played_words():
    async with AgentHarness.from_text(SCRIPTED) as h:
        out = h.probe("output")
        await h.inject(LLMFullResponseStartFrame())
        await h.inject(TTSStartedFrame())
        for word in WORDS:  # each word's text, then its 100 ms of audio, as a TTS with word timing sends them
            await h.inject(TTSTextFrame(word, text_type=TextType.WORD))
            await h.inject(TTSAudioRawFrame(b"\x00\x10" * 1600, 16000, 1))
        await h.inject(TTSStoppedFrame())
        await h.inject(LLMFullResponseEndFrame())
        await out.wait_for(TTSTextFrame, count=4, timeout=5.0)
        await h.built.interrupt()
        await asyncio.sleep(0.5)
        said = assistant_said(h)
    played = played_words(out)
    assert 4 <= len(played) < len(WORDS)
    assert said == " ".join(played)
    assert said == " ".join(WORDS[:len(played)])


async def test_spoken_reply_interrupted_by_the_user_keeps_only_the_played_words():
    """The scripted LLM and espeak TTS, with the user barging in during the reply.

    Caught: espeak released a sentence's text once its audio had played, so the context kept whole sentences
    (the one cut mid-way was lost); with ``word_timing`` espeak's word events time each word, and the
    assistant message ends at the last word played."""
    played, said, audio_after = await barge_in_on_the_story(SPOKEN, words=4, timeout=10.0, after_s=0.15)
    words = REPLY.split()
    assert 4 <= len(played) < len(words)
    assert played == words[:len(played)], "words came out of order or were not the reply's"
    assert said == " ".join(played)
    assert len(audio_after) <= 1, "more than the one chunk already in the card played after the barge-in"
