"""Issue 20's items 1-5 through the WebSocket server, with a real client that plays what it hears.

Each agent is served by framegraph's server on a free port; ``Talker`` (pipecat's protobuf serializer, a
real-time "speaker" that drops what it buffered when told the bot was interrupted) asks with RTVI
``send-text`` (which interrupts a speaking bot, as a question barged in), speaks espeak-ng audio where
VAD must hear the user, and measures the loud bot audio it played. A stop button is
``BuiltAgent.interrupt()`` on the server's session.
"""

import asyncio
import time
from contextlib import asynccontextmanager

import pytest
from test_client_protocol import send_text
from transport_kit import speech, wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running, served_on
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker

STORY = ("Once upon a time, a small robot learned to speak. It said hello to everyone it met. "
         "One day, someone finally answered. They talked until the sun went down, and the robot was never lonely again.")
SILENCE = bytes(int(16000 * 0.6) * 2)
#: pocketsphinx, its transcripts 500 ms late (a slower STT, which says so: p99 1 s): they land after the bot resumed.
STT = """  stt: {type: pocketsphinx, phrases: [yeah, okay], ttfs_p99_latency: 1.0}
  slow: {type: passthrough, delay_ms: 500}"""


def served(yaml: str):
    """The agent in ``yaml`` served on the websocket transport (any free port)."""
    return running(served_on(load_agent_text(yaml, "<test>"), "websocket", port=0))


def agent(*, tts: str = "{type: espeak, voice: en-us}", llm_extra: str = "", more: str = "", stt: bool = False) -> str:
    return f"""version: 1
name: ws_interruptions
transport: {{type: websocket, audio_in_sample_rate: 16000, audio_out_sample_rate: 24000, client_context: [send-text]}}
context: {{type: llm_context, turn: {{stop: speech_timeout, speech_timeout: 0.3}}}}
{more}
processors:
{STT if stt else ""}
  llm:
    type: scripted
    fallback: "Sorry?"
    rules:
      - {{match: story, reply: "{STORY}"}}
      - {{match: "what time", reply: "Noon."}}
{llm_extra}
  tts: {tts}
pipeline: [input, {"stt, slow, " if stt else ""}user_context, llm, tts, output, assistant_context]
"""


@asynccontextmanager
async def connected(url: str):
    """A ``Talker`` on the agent served at ``url``, once the bot is ready; closed on the way out."""
    async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
        await talker.wait_for_message(cm.BOT_READY, timeout=15)
        yield talker


async def ask_for_the_story(talker: Talker, until: str = cm.BOT_STARTED_SPEAKING) -> float:
    """Asks for the story (``send-text``, with audio) and waits for ``until`` after asking; returns when it asked."""
    asked = time.monotonic()
    await talker.send_message(send_text("tell me a story", audio=True))
    await talker.wait_for_message(until, timeout=15, after=asked)
    return asked


async def heard(talker: Talker, after: float, seconds: float, timeout: float, what: str) -> None:
    await wait_until(lambda: talker.playback.loud_between(after, time.monotonic()) >= seconds, timeout, what)


async def test_over_websocket_an_idle_check_in_after_a_stopped_reply_is_heard():
    """Item 1: the bot is stopped (a stop button), the user stays silent: the check-in is heard."""
    yaml = agent(more='conversation:\n  idle: {after_secs: 1.0, text: "Are you still there?", end_after: 3}')
    async with served(yaml) as (url, server):
        async with connected(url) as talker:
            await ask_for_the_story(talker)
            await asyncio.sleep(0.5)
            (session,) = server.sessions.values()
            await session.built.interrupt()
            stopped = time.monotonic()
            await talker.wait_for_message(cm.BOT_LLM_TEXT, timeout=10, after=stopped)
            check_in = cm.first_after(talker.messages, cm.BOT_LLM_TEXT, stopped)
            await heard(talker, check_in, 0.5, 10, "the check-in heard by the client")


async def test_over_websocket_an_async_tools_result_after_a_stop_is_heard():
    """Item 2: a tool with ``cancel_on_interruption: false`` answers after the bot was stopped: its result is said."""
    from test_tools import ToolServer

    async with ToolServer() as tools:
        tools.delay = 1.0
        extra = f"""    tools:
      - name: get_weather
        description: The weather in a city
        parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
        http: {{url: "{tools.url}/slow", timeout_secs: 5}}
        cancel_on_interruption: false
    token_delay_ms: 0"""
        yaml = agent(llm_extra=extra).replace(
            '      - {match: "what time", reply: "Noon."}',
            '      - {match: "weather in (?P<city>\\\\w+)", tool: get_weather, arguments: {city: "{city}"}, '
            'say: "Let me look that up for you, it takes a moment.", reply: "In {city} it is {summary}."}')
        async with served(yaml) as (url, server):
            async with connected(url) as talker:
                await talker.send_message(send_text("what is the weather in Rome", audio=True))
                await asyncio.wait_for(tools.received.wait(), 10)
                await asyncio.sleep(0.2)
                (session,) = server.sessions.values()
                await session.built.interrupt()
                stopped = time.monotonic()
                answer = await talker.wait_for_message(cm.BOT_TTS_TEXT, timeout=10, after=stopped + 0.3)
                assert "Rome" in answer["data"]["text"], answer
                said = cm.first_after(talker.messages, cm.BOT_STARTED_SPEAKING, stopped)
                await heard(talker, said, 0.5, 10, "the tool's result heard by the client")


@pytest.mark.parametrize("busy_ms,drops", [(100, "true"), (0, "false")], ids=["slow", "leaky"])
async def test_over_websocket_a_question_barge_in_never_lets_cut_work_play(busy_ms, drops):
    """Item 3: the user asks something over the story: the cut story never plays, the short answer does."""
    tts = f"{{type: streaming_tts_fixture, busy_ms: {busy_ms}, drops_cut_work: {drops}}}"
    async with served(agent(tts=tts)) as (url, server):
        async with connected(url) as talker:
            await ask_for_the_story(talker)
            await asyncio.sleep(0.8)
            barged = time.monotonic()
            await talker.send_message(send_text("what time is it", audio=True))
            await talker.wait_for_message(cm.BOT_INTERRUPTED, timeout=10, after=barged)
            cut = talker.interruptions[-1]
            # "Noon." is one word, 200 ms of tone (a leaky TTS says it after the rest of the story, never heard).
            await heard(talker, cut, 0.15, 15, "the answer heard")
            await asyncio.sleep(1.0)
            assert talker.playback.loud_between(cut, time.monotonic()) <= 0.2 + 0.1


async def test_over_websocket_a_noise_while_the_bot_thinks_does_not_leave_it_silent_with_resume_on():
    """Item 4: ``resume_after_secs`` on, a sound with no words while the LLM streams: the bot still answers."""
    yaml = agent(llm_extra="    token_delay_ms: 150", more="interruptions: {resume_after_secs: 0.4}")
    noise = await speech("ah")
    async with served(yaml) as (url, server):
        async with connected(url) as talker:
            await ask_for_the_story(talker, until=cm.BOT_LLM_TEXT)
            assert not talker.playback.played
            (session,) = server.sessions.values()
            epoch = session.built.interruptions.epoch
            await talker.stream(SILENCE + noise + SILENCE)
            assert session.built.interruptions.epoch > epoch, "the sound did not interrupt the thinking bot"
            coughed = time.monotonic()
            await heard(talker, coughed - 1.0, 1.0, 12, "the bot answering after the sound")


async def test_over_websocket_a_backchannel_transcribed_after_the_bot_resumed_does_not_cut_it():
    """Item 5: the user says "yeah" over the story; the bot resumes before the STT's final transcript lands
    (500 ms late, within the STT's latency); the transcript is a backchannel, not a turn: the resumed speech
    plays on, the context keeps no "yeah"."""
    yaml = agent(stt=True, more="interruptions: {resume_after_secs: 0.2}")
    yeah = await speech("yeah")
    async with served(yaml) as (url, server):
        async with connected(url) as talker:
            microphone = asyncio.create_task(talker.stream_silence())
            try:
                await ask_for_the_story(talker)
                await asyncio.sleep(1.0)
                microphone.cancel()
                await asyncio.gather(microphone, return_exceptions=True)
                (session,) = server.sessions.values()
                before = session.built.interruptions.epoch  # send-text interrupts too, as a question would
                said = time.monotonic()
                await talker.stream(yeah)
                microphone = asyncio.create_task(talker.stream_silence())
                await wait_until(lambda: session.built.interruptions.epoch > before, 5, "the backchannel interrupting")
                await talker.wait_for_message(cm.USER_TRANSCRIPTION, timeout=10, after=said)
                await asyncio.sleep(1.0)
                assert session.built.interruptions.epoch == before + 1, "the late backchannel cut the resumed speech"
                await heard(talker, time.monotonic() - 1.0, 0.5, 5, "the resumed story playing on")
                users = [m["content"] for m in session.built.llm_context.messages if m.get("role") == "user"]
                assert users == ["tell me a story"], users
            finally:
                microphone.cancel()
                await asyncio.gather(microphone, return_exceptions=True)
