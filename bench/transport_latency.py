"""Bot audio latency and audio heard after an interruption, webrtc and websocket, on loopback.

For each transport it runs framegraph's transport and plain pipecat's (same
agent, same server, same client) and prints, per variant, over ``--trials``
barge-ins:

- latency: from the bot pushing its first audio of an answer to the client
  receiving the first of it (ms);
- played after interruption: bot audio the client still plays after the bot
  is interrupted, until its next answer begins (ms); the goal is <= 40 ms;
- arrived after interruption: the same, counting audio that arrived but that
  the client dropped because it was told to (ms).

The agent is ``tone_reply``: the client's loud bursts are speech, the bot
answers with a tone, and a burst while it plays interrupts it. The plain
pipecat clients do what pipecat's own do: the WebRTC one plays what arrives
(pipecat cannot flush a WebRTC jitter buffer), the WebSocket one drops its
buffer on pipecat's serialized ``InterruptionFrame``.

With ``--browser``, the web page in headless Chromium (its fake microphone
playing bursts) adds a row: how long after each interruption the page
silenced the bot, which bounds what it played of the cut-off answer.

    python bench/transport_latency.py [--trials 10] [--browser]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loguru import logger  # noqa: E402

from pipelines.audio import write_wav  # noqa: E402
from pipelines.server.app import running  # noqa: E402
from pipelines.transport_contract import peer_from  # noqa: E402
from pipelines.validate import Agent, load_agent_text  # noqa: E402
from processors.tone import tone  # noqa: E402
from transports.clients.chromium import chromium  # noqa: E402
from transports.clients.talk import Talker  # noqa: E402
from transports.clients.webrtc import WebRTCPeer  # noqa: E402

AGENT = """
version: 1
name: bench
transport: {{type: {transport}, port: 0}}
processors:
  bot: {{type: tone_reply, reply_secs: 3, stop_ms: 250, speech_rms: 300}}
pipeline: [input, bot, output]
"""

SPEECH = tone(0.3, 16000, 300, 10000)
BARGE_IN = tone(0.15, 16000, 300, 10000)
SILENCE = bytes(int(16000 * 0.3) * 2)
#: How long the bot speaks before the client barges in.
SPEAK_SECS = 0.6


def plain_webrtc(params, ctx):
    """pipecat's SmallWebRTC transport with its defaults (40 ms audio chunks)."""
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    return SmallWebRTCTransport(
        peer_from(ctx, "webrtc"),
        TransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=params.audio_in_sample_rate,
            audio_out_sample_rate=params.audio_out_sample_rate,
        ),
    )


def plain_websocket(params, ctx):
    """pipecat's FastAPI WebSocket transport with its protobuf serializer and defaults."""
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

    return FastAPIWebsocketTransport(
        peer_from(ctx, "websocket"),
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=params.audio_in_sample_rate,
            audio_out_sample_rate=params.audio_out_sample_rate,
            serializer=ProtobufFrameSerializer(),
            allowed_origins=[],
        ),
    )


def with_factory(agent: Agent, factory) -> Agent:
    transport = agent.transport
    return replace(agent, transport=replace(transport, type=replace(transport.type, factory=factory)))


def bot_of(server):
    """The one session's bot, or None while the session waits for its client (no graph built yet)."""
    (session,) = server.sessions.values()
    return session.built.processors["bot"] if session.built is not None else None


async def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.005)


async def webrtc_trials(agent: Agent, trials: int, obey: bool) -> list[tuple[float, float, float]]:
    results = []
    async with running(agent) as (url, server):
        peer = WebRTCPeer(obey_interruptions=obey)
        await peer.connect(url)
        await asyncio.sleep(0.3)
        peer.say(SPEECH)
        bot = None
        for n in range(trials):
            await wait_for(lambda: server.sessions and bot_of(server) and len(bot_of(server).replied_at) > n, 5)
            bot = bot_of(server)
            replied = bot.replied_at[n]
            heard = await peer.wait_for_loud(timeout=5, after=replied)
            await asyncio.sleep(SPEAK_SECS)
            peer.say(BARGE_IN)
            await wait_for(lambda: len(bot.interrupted_at) > n and len(bot.replied_at) > n + 1, 5)
            interrupted, next_reply = bot.interrupted_at[n], bot.replied_at[n + 1]
            await asyncio.sleep(0.05)  # audio of the new answer takes longer than this to arrive
            stale = [peer.stale_audio(interrupted, until=next_reply, played_only=p) for p in (True, False)]
            results.append((heard.time - replied, *stale))
        await peer.close()
    return results


async def websocket_trials(agent: Agent, trials: int) -> list[tuple[float, float, float]]:
    results = []
    async with running(agent) as (url, server):
        async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
            await talker.stream(SPEECH + SILENCE)
            for n in range(trials):
                await wait_for(lambda: len(bot_of(server).replied_at) > n, 5)
                bot = bot_of(server)
                replied = bot.replied_at[n]
                await wait_for(lambda: any(t > replied and loud for t, _, loud in talker.playback.arrivals), 5)
                first = next(t for t, _, loud in talker.playback.arrivals if t > replied and loud)
                await talker.stream(bytes(int(16000 * SPEAK_SECS) * 2) + BARGE_IN)
                await talker.stream(SILENCE)
                await wait_for(lambda: len(bot.interrupted_at) > n and len(bot.replied_at) > n + 1, 5)
                interrupted = bot.interrupted_at[n]
                next_reply = bot.replied_at[n + 1]
                arrived = sum(s for t, s, loud in talker.playback.arrivals if interrupted < t < next_reply and loud)
                results.append((first - replied, talker.stale_audio(interrupted, until=next_reply), arrived))
    return results


async def browser_trials(agent: Agent, trials: int) -> list[float]:
    """Seconds from each interruption to the page receiving ``bot-interrupted`` (and silencing the bot)."""
    burst = tone(0.4, 16000, 300, 12000) + bytes(int(16000 * (SPEAK_SECS + 0.8)) * 2)
    with tempfile.TemporaryDirectory() as tmp:
        mic = Path(tmp) / "mic.wav"
        write_wav(mic, bytes(2 * 16000 * 2) + burst * (trials + 2), 16000)
        async with chromium(Path(tmp) / "profile", mic) as page, running(agent) as (url, server):
            await page.call("Page.navigate", url=url)
            await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 15, "page load")
            await page.eval("document.getElementById('connect').click()")
            await wait_for(lambda: server.sessions and bot_of(server) and len(bot_of(server).interrupted_at) >= trials,
                           30 + 3 * trials)
            interrupted = "window.framegraph.messages.filter(m => m.type === 'bot-interrupted')"
            await page.wait_for(f"{interrupted}.length >= {trials}", 5, "bot-interrupted on the page")
            wall_minus_mono = time.time() - time.monotonic()
            received = await page.eval(f"{interrupted}.map(m => m.at / 1000)")
            delays = []
            for t0 in bot_of(server).interrupted_at[:trials]:
                wall = t0 + wall_minus_mono
                delays.append(min(t for t in received if t >= wall - 0.002) - wall)
    return delays


def summary(name: str, client: str, results: list[tuple[float, float, float]]) -> str:
    def ms(values, f):
        return f"{f(values) * 1000:6.0f}"

    lat, played, arrived = zip(*results, strict=False)
    return (
        f"{name:26} {client:34} {ms(lat, statistics.median)} {ms(played, statistics.median)} "
        f"{ms(played, max)} {ms(arrived, statistics.median)}"
    )


async def main(trials: int, browser: bool) -> None:
    webrtc = load_agent_text(AGENT.format(transport="webrtc"))
    websocket = load_agent_text(AGENT.format(transport="websocket"))
    rows = [
        ("webrtc framegraph", "obeys bot-interrupted", await webrtc_trials(webrtc, trials, obey=True)),
        ("webrtc plain pipecat", "plays what arrives", await webrtc_trials(with_factory(webrtc, plain_webrtc), trials, obey=False)),
        ("websocket framegraph", "drops buffer on interruption", await websocket_trials(websocket, trials)),
        ("websocket plain pipecat", "drops buffer on InterruptionFrame", await websocket_trials(with_factory(websocket, plain_websocket), trials)),
    ]
    print(f"loopback, {trials} barge-ins each; ms (medians unless said)")
    print(f"{'transport':26} {'client':34} {'latency':>6} {'played':>6} {'max':>6} {'arrived':>6}")
    for name, client, results in rows:
        print(summary(name, client, results))
    if browser:
        delays = await browser_trials(webrtc, trials)
        print(
            f"{'webrtc framegraph':26} {'web page in Chromium':34} silenced {statistics.median(delays) * 1000:.1f} ms "
            f"after the interruption (max {max(delays) * 1000:.1f})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="barge-ins per variant (default 10)")
    parser.add_argument("--browser", action="store_true", help="also measure the web page in headless Chromium")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    asyncio.run(main(args.trials, args.browser))
