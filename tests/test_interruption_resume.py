"""Resume after a false interruption (``interruptions.resume_after_secs``), on a real worker with espeak.

The bot reads a long scripted reply; the user's speech enters as VAD events (and, where the case needs one,
a final transcript) at the user aggregator, so nothing depends on what an STT hears.
"""

import asyncio
import time

import pytest
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness

REPLY = "Once upon a time, a small robot learned to speak. It said hello to everyone it met. One day, someone answered."

AGENT = """version: 1
name: resume
transport: {{type: synthetic, audio_out_sample_rate: 24000}}
context: {{type: llm_context, vad: null, turn: {{stop: speech_timeout, speech_timeout: 0.05}}}}
{interruptions}
processors:
  llm:
    type: scripted
    rules: [{{match: story, reply: "{reply}"}}]
  tts: {{type: espeak, voice: en-us, word_timing: {word_timing}}}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""

WAIT = 0.4
RESUMING = f"interruptions: {{resume_after_secs: {WAIT}}}"


def agent(interruptions: str = RESUMING, word_timing: bool = True) -> str:
    return AGENT.format(interruptions=interruptions, reply=REPLY, word_timing=str(word_timing).lower())


def turns(h: AgentHarness) -> list[tuple[str, str]]:
    return [(m["role"], " ".join(str(m.get("content", "")).split())) for m in h.built.llm_context.messages]


def played_before_interruption(out) -> list[str]:
    """The words the output released before the barge-in (the latest interruption so far)."""
    cut = max(i for i, f in enumerate(out.frames) if isinstance(f, InterruptionFrame))
    return [f.text.strip() for f in out.frames[:cut] if isinstance(f, TTSTextFrame)]


async def ask_for_the_story(h: AgentHarness, out, words: int = 4) -> None:
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
    await h.inject(TranscriptionFrame("tell me a story", "user", "now", finalized=True), at="user_context")
    await out.wait_for(TTSTextFrame, count=words, timeout=10.0)
    await asyncio.sleep(0.1)


async def barge_in(h: AgentHarness, transcript: str | None = None) -> float:
    """The user's speech: VAD start (it interrupts), a short pause, VAD stop, then maybe a transcript.

    Returns when the user stopped speaking (monotonic)."""
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")
    await asyncio.sleep(0.15)
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
    stopped = time.monotonic()
    if transcript is not None:
        await asyncio.sleep(0.05)
        await h.inject(TranscriptionFrame(transcript, "user", "now", finalized=True), at="user_context")
    return stopped


async def wait_until(condition, timeout: float, what: str) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


async def resumes_after(transcript: str | None, *, word_timing: bool = True):
    """Interrupts the story, lets the user say ``transcript`` (or nothing); returns what was played, resumed, kept."""
    async with AgentHarness.from_text(agent(word_timing=word_timing)) as h:
        out, tts = h.probe("output"), h.probe("tts", processed=True)
        await ask_for_the_story(h, out, words=4 if word_timing else 1)
        stopped = await barge_in(h, transcript)
        resumed = await tts.wait_for(TTSSpeakFrame, timeout=5.0)
        waited = tts.times[tts.frames.index(resumed)] - stopped
        assert WAIT <= waited < WAIT + 2.0, f"resumed {waited:.2f}s after the user stopped, not after {WAIT}s"
        played = played_before_interruption(out)
        whole = ("assistant", " ".join(REPLY.split()))
        await wait_until(lambda: whole in turns(h), 20.0, f"the whole reply in the context; it holds {turns(h)}")
        return played, resumed.text, turns(h)


async def test_an_interruption_with_no_words_resumes_from_the_word_where_it_was_cut():
    played, resumed, context = await resumes_after(None)
    words = REPLY.split()
    assert 4 <= len(played) < len(words) - 1
    assert resumed == " ".join(words[len(played):]), "the resumed speech does not start at the first unheard word"
    assert context == [("user", "tell me a story"), ("assistant", " ".join(words))]


async def test_a_backchannel_resumes_and_leaves_no_user_turn():
    played, resumed, context = await resumes_after("Uh-huh.")
    words = REPLY.split()
    assert resumed == " ".join(words[len(played):])
    assert context == [("user", "tell me a story"), ("assistant", " ".join(words))]


async def test_without_word_timings_it_resumes_from_the_start_of_the_cut_sentence():
    played, resumed, context = await resumes_after(None, word_timing=False)
    sentences = ["Once upon a time, a small robot learned to speak.", "It said hello to everyone it met.",
                 "One day, someone answered."]
    assert any(resumed == " ".join(sentences[i:]) for i in range(1, len(sentences))), resumed
    assert context == [("user", "tell me a story"), ("assistant", " ".join(REPLY.split()))]


async def test_real_words_after_the_interruption_do_not_resume_and_make_the_users_turn():
    async with AgentHarness.from_text(agent()) as h:
        out, tts = h.probe("output"), h.probe("tts", processed=True)
        await ask_for_the_story(h, out)
        await barge_in(h, "what about a dragon")
        await wait_until(lambda: ("user", "what about a dragon") in turns(h), 5.0, "the user's turn in the context")
        await asyncio.sleep(1.0)  # well past resume_after_secs
        assert not tts.of_type(TTSSpeakFrame), "the bot resumed although the user said words"
        played = played_before_interruption(out)
        assert turns(h)[:3] == [("user", "tell me a story"), ("assistant", " ".join(played)),
                                ("user", "what about a dragon")]


async def test_a_real_barge_in_during_the_resumed_speech_cuts_it_and_the_context_keeps_one_message():
    async with AgentHarness.from_text(agent()) as h:
        out, tts = h.probe("output"), h.probe("tts", processed=True)
        await ask_for_the_story(h, out)
        await barge_in(h)
        await tts.wait_for(TTSSpeakFrame, timeout=5.0)
        first = played_before_interruption(out)
        await out.wait_for(TTSTextFrame, count=len(first) + 3, timeout=10.0)  # three words of the resumed speech
        await barge_in(h, "please stop")
        await wait_until(lambda: ("user", "please stop") in turns(h), 5.0, "the user's turn in the context")
        context = turns(h)
        words = REPLY.split()
        assert [role for role, _ in context[:3]] == ["user", "assistant", "user"], context
        heard = context[1][1].split()
        assert len(first) + 3 <= len(heard) < len(words), context
        assert heard == words[:len(heard)], "the assistant message is not the reply's words as played, in order"
        assert heard == played_before_interruption(out), "the context does not hold what was played"


@pytest.mark.parametrize("interruptions", ["", "interruptions: {resume_after_secs: null}"])
async def test_with_the_option_off_the_bot_does_not_resume(interruptions):
    async with AgentHarness.from_text(agent(interruptions)) as h:
        out, tts = h.probe("output"), h.probe("tts", processed=True)
        await ask_for_the_story(h, out)
        await barge_in(h)
        await asyncio.sleep(1.5)
        assert not tts.of_type(TTSSpeakFrame)
        played = played_before_interruption(out)
        assert turns(h)[:2] == [("user", "tell me a story"), ("assistant", " ".join(played))]
        assert all(role != "assistant" for role, _ in turns(h)[2:]), turns(h)


def test_a_bad_resume_setting_names_its_key():
    with pytest.raises(ConfigErrors, match="resume_after_secs"):
        AgentHarness.from_text(agent("interruptions: {resume_after_secs: -1}"))


async def test_a_noise_while_the_bot_thinks_leaves_it_answering_with_resume_on():
    """Caught (issue 20, item 4): with ``resume_after_secs`` pipecat's recovery of an empty interrupting turn was
    switched off, but only a cut while speaking resumes: a cough while the LLM streamed (no audio yet) left the
    question unanswered for good (0 ms of audio over 9 s). The recovery now stays on, except for the turn the
    bot answers by resuming."""
    text = agent().replace("    type: scripted\n", "    type: scripted\n    token_delay_ms: 150\n")
    async with AgentHarness.from_text(text) as h:
        llm = h.probe("llm")
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
        await h.inject(TranscriptionFrame("tell me a story", "user", "now", finalized=True), at="user_context")
        await llm.wait_for(LLMTextFrame, count=2, timeout=5.0)  # thinking: words streaming, no sentence spoken yet
        assert not h.output.written or not any(isinstance(w.frame, OutputAudioRawFrame) for w in h.output.written)
        coughed = time.monotonic()
        await barge_in(h)  # a cough: speech with no words
        await wait_until(lambda: any(isinstance(w.frame, OutputAudioRawFrame) and w.time > coughed
                                     for w in h.output.written), 9.0, "the bot answering after the cough")


async def test_a_backchannel_whose_transcript_lands_after_the_bot_resumed_is_no_turn():
    """Caught (item 5): VAD stopped, the bot resumed 0.4 s later, the STT's final "Yeah." came 0.25 s after that:
    it started a user turn, cut the resumed speech and was answered with the fallback. A backchannel is recognised
    whenever its transcript lands within the STT's latency."""
    async with AgentHarness.from_text(agent()) as h:
        out, tts = h.probe("output"), h.probe("tts", processed=True)
        await ask_for_the_story(h, out)
        await barge_in(h)
        epoch = h.built.interruptions.epoch
        await tts.wait_for(TTSSpeakFrame, timeout=5.0)
        await asyncio.sleep(0.25)
        await h.inject(TranscriptionFrame("Yeah.", "user", "now", finalized=True), at="user_context")
        whole = ("assistant", " ".join(REPLY.split()))
        await wait_until(lambda: whole in turns(h), 20.0, f"the whole reply in the context; it holds {turns(h)}")
        assert h.built.interruptions.epoch == epoch, "the late backchannel interrupted the resumed speech"
        assert turns(h) == [("user", "tell me a story"), whole]
