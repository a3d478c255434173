"""The interruption guarantee, third pass: a cut never silences the bot, cut work never speaks again.

Every frame answers a turn (the id of the frame that started its work), carried from the text into the audio
made from it; an interruption cuts the turns older than its boundary. Each test runs a built YAML agent on the
synthetic transport and says in its docstring what the guard did before this pass (issue 20's item).
"""

import asyncio
import time

import pytest
from interruption_fixtures import QUESTION, streaming_agent_yaml
from pipecat.frames.frames import (
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text

ONE_CHUNK_MS = 40  # what the synthetic output (a "sound card" with one chunk of buffer) may still play

STORY = ("Once upon a time, a small robot learned to speak. It said hello to everyone it met. "
         "One day, someone finally answered. They talked until the sun went down.")

IDLE_AGENT = f"""version: 1
name: idle_after_cut
transport: {{type: synthetic, audio_out_sample_rate: 16000}}
context: {{type: llm_context, vad: null, turn: {{stop: speech_timeout, speech_timeout: 0.05}}}}
conversation:
  idle: {{after_secs: 0.6, text: "Are you still there?", end_after: 3}}
processors:
  llm: {{type: scripted, token_delay_ms: 0, rules: [{{match: story, reply: "{STORY}"}}]}}
  tts: {{type: espeak, voice: en-us}}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""


def audio_ms(h: AgentHarness, after: float, until: float | None = None) -> float:
    """Milliseconds of bot audio the output wrote after ``after`` (and before ``until``)."""
    return sum(1000 * len(w.frame.audio) / (2 * w.frame.sample_rate * w.frame.num_channels)
               for w in h.output.written if isinstance(w.frame, OutputAudioRawFrame)
               and w.time > after and (until is None or w.time <= until))


async def wait_until(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def ask(h: AgentHarness, text: str) -> float:
    """The user says ``text`` (VAD events and a final transcript at the user aggregator); returns when."""
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
    await h.inject(TranscriptionFrame(text, "user", "now", finalized=True), at="user_context")
    return time.monotonic()


async def speaking(h: AgentHarness, since: float, timeout: float = 10.0) -> None:
    await wait_until(lambda: audio_ms(h, since) >= 200, timeout, "the bot speaking")


async def test_an_idle_check_in_after_a_stopped_reply_is_heard():
    """Caught (item 1): after ``BuiltAgent.interrupt()`` cut the reply, the idle check-in's text reached the TTS
    but its audio took the cut turn and every chunk was dropped; the session ended unheard."""
    async with AgentHarness.from_text(IDLE_AGENT) as h:
        tts = h.probe("tts", processed=True)
        await speaking(h, await ask(h, "tell me a story"))
        await h.built.interrupt()
        stopped = time.monotonic()
        check_in = await tts.wait_for(TextFrame, where=lambda f: "still there" in f.text, timeout=10.0)
        said = tts.times[tts.frames.index(check_in)]
        assert said > stopped
        await wait_until(lambda: audio_ms(h, said) >= 500, 5.0, "the check-in heard")


async def test_speech_given_to_the_tts_after_a_cut_is_heard():
    """Caught (item 1): a ``TTSSpeakFrame`` pushed by a processor before the context after a cut (here, from the
    input) was spoken by the TTS into audio of the cut turn, all of it dropped."""
    async with AgentHarness.from_text(IDLE_AGENT) as h:
        await speaking(h, await ask(h, "tell me a story"))
        await h.built.interrupt()
        await asyncio.sleep(0.1)
        said = time.monotonic()
        await h.inject(TTSSpeakFrame("I stopped. Say go when you want me to go on."))
        await wait_until(lambda: audio_ms(h, said) >= 1000, 5.0, "the spoken text heard")


@pytest.mark.parametrize("busy_ms,drops", [(100, True), (0, False)], ids=["slow", "leaky"])
async def test_cut_work_never_plays_after_the_next_turn_starts(busy_ms, drops):
    """Caught (item 3): with a barge-in that asks something, the next turn's first frame reached the TTS and its
    audio task's chunks for the cut story took the new turn: 1.7-2.9 s of the cut story played. Audio now answers
    the text it speaks; the next answer (a different reply) plays, the cut story does not."""
    text = streaming_agent_yaml(busy_ms=busy_ms, drops_cut_work=drops)
    async with AgentHarness(load_agent_text(text, "<test>")) as h:
        await speaking(h, await ask(h, "tell me a story"))
        tts = h.probe("tts")  # the frames the TTS pushes from now on
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.0), at="user_context")  # the barge-in cuts
        cut = time.monotonic()
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.0), at="user_context")
        await h.inject(TranscriptionFrame(QUESTION, "user", "now", finalized=True), at="user_context")
        # The leaky TTS speaks the answer after the rest of the cut story (which is never heard): up to 4 s on.
        await wait_until(lambda: audio_ms(h, cut) >= 100 + ONE_CHUNK_MS, 10.0, "the next answer heard")
        await asyncio.sleep(0.5)
        # The answer "Noon." is one word: 200 ms of audio, plus the one chunk already in the card.
        assert audio_ms(h, cut) <= 200 + ONE_CHUNK_MS + 20
        assert any(isinstance(f, OutputAudioRawFrame) for f in tts.frames)


NO_CONTEXT = """version: 1
name: no_context
transport: {{type: synthetic, audio_out_sample_rate: 16000}}
processors:
  tts: {{type: streaming_tts_fixture, busy_ms: {busy_ms}, drops_cut_work: {drops}}}
pipeline: [input, tts, output]
"""


@pytest.mark.parametrize("busy_ms,drops", [(100, True), (0, False)], ids=["slow", "leaky"])
async def test_a_graph_without_a_context_block_is_guarded_against_a_tts_going_on_with_cut_text(busy_ms, drops):
    """Caught (item 6): with no context block there was no turn, and a TTS whose own task went on with the cut
    text played 180 ms (slow) to 820 ms (leaky) after the interruption. Its audio answers text from before the
    cut: it is cut work, context block or not."""
    text = NO_CONTEXT.format(busy_ms=busy_ms, drops=str(drops).lower())
    async with AgentHarness(load_agent_text(text, "<test>")) as h:
        start = time.monotonic()
        await h.inject(TextFrame(" ".join(["word"] * 20)))
        await speaking(h, start)
        await h.built.interrupt()
        cut = time.monotonic()
        await asyncio.sleep(1.0)
        assert audio_ms(h, cut) <= ONE_CHUNK_MS
        # and what is asked after the cut is spoken
        await h.inject(TextFrame("two words"))
        again = time.monotonic()
        await wait_until(lambda: audio_ms(h, again) >= 300, 5.0, "the next text spoken")


TOOL_AGENT = """version: 1
name: tools_after_cut
transport: {{type: synthetic, audio_out_sample_rate: 16000}}
context: {{type: llm_context, vad: null, system_prompt: "You help.", turn: {{stop: speech_timeout, speech_timeout: 0.05}}}}
processors:
  llm:
    type: scripted
    token_delay_ms: 0
    fallback: "Sorry?"
    tools:
      - name: get_weather
        description: The weather in a city
        parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
        http: {{url: "{url}", timeout_secs: 5}}
        cancel_on_interruption: {cancel}
    rules:
      - match: "weather in (?P<city>\\\\w+)"
        tool: get_weather
        arguments: {{city: "{{city}}"}}
        say: "Let me look that up for you, it takes a moment."
        reply: "In {{city}} it is {{summary}}, {{celsius}} degrees."
  tts: {{type: espeak, voice: en-us}}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""


@pytest.fixture
async def tool_server():
    from test_tools import ToolServer

    async with ToolServer() as server:
        yield server


async def test_an_async_tools_result_after_a_cut_is_spoken(tool_server):
    """Caught (item 2): a tool with ``cancel_on_interruption: false`` answered after an interruption that started no
    new turn; the assistant aggregator pushed the context upstream to run the LLM again, the guard tagged that push
    with the cut turn and dropped it, and the context kept a tool result nobody answered."""
    tool_server.delay = 1.0
    text = TOOL_AGENT.format(url=f"{tool_server.url}/slow", cancel="false")
    async with AgentHarness.from_text(text) as h:
        tts = h.probe("tts", processed=True)
        await ask(h, "what is the weather in Rome")
        await asyncio.wait_for(tool_server.received.wait(), 5)
        await asyncio.sleep(0.2)
        await h.built.interrupt()
        answer = await tts.wait_for(TextFrame, where=lambda f: "Rome" in f.text, timeout=10.0)
        said = tts.times[tts.frames.index(answer)]
        await wait_until(lambda: audio_ms(h, said) >= 800, 5.0, "the tool's result spoken")
        await wait_until(lambda: any("Rome it is sunny" in str(m.get("content")) for m in h.built.llm_context.messages),
                         5.0, "the answer in the context")


async def test_a_tool_call_cut_before_its_in_progress_frame_reached_the_context_ends_cancelled(tool_server):
    """Caught (item 9): the interruption's cancel (a system frame) overtook the in-progress frame queued at the output
    behind the tool's "say" audio; the call stayed ``IN_PROGRESS`` in the context and the next LLM run read a
    pending tool. The call now ends as cancelled."""
    tool_server.delay = 2.0
    text = TOOL_AGENT.format(url=f"{tool_server.url}/slow", cancel="true")
    async with AgentHarness.from_text(text) as h:
        await speaking(h, await ask(h, "what is the weather in Rome"))
        await asyncio.wait_for(tool_server.received.wait(), 5)
        await h.built.interrupt()

        def tool_results():
            return [m.get("content") for m in h.built.llm_context.messages if m.get("role") == "tool"]

        await wait_until(lambda: tool_results(), 5.0, "the tool call in the context")
        await asyncio.sleep(tool_server.delay + 0.5)  # the endpoint has answered by now
        assert tool_results() == ["CANCELLED"], h.built.llm_context.messages


async def test_text_a_processor_re_sends_while_it_handles_the_interruption_is_never_spoken():
    """Caught (item 7): a processor before the TTS that pushed the cut text again as new frames while it handled
    the interruption: with no turn to tag them (no context block) 2.8-3.4 s of the cut text was spoken. What a
    processor makes while it handles an interruption answers the cut work."""
    from conftest import ROOT

    text = (ROOT / "tests" / "broken_interruptions" / "resend_no_context.yaml").read_text()
    async with AgentHarness(load_agent_text(text, "<test>")) as h:
        start = time.monotonic()
        await h.inject(TextFrame("Once upon a time, a small robot learned to speak."))
        await h.inject(TextFrame("It said hello to everyone it met."))
        await speaking(h, start)
        await h.built.interrupt()
        cut = time.monotonic()
        await asyncio.sleep(1.5)
        assert audio_ms(h, cut) <= ONE_CHUNK_MS
        assert h.built.interruptions.stats["resend"].reaction_out == 2
