"""pipecat's client protocol (RTVI) as pipecat's JavaScript client speaks it, against a served agent.

A real WebSocket client (JSON RTVI and pipecat protobuf) and a real aiortc
peer talk to configs/greeter.yaml served by framegraph: ``client-ready`` is
answered by ``bot-ready`` and the greeting; ``send-text``,
``append-to-context`` and ``client-message`` are acted on; the bot's reply is
reported as pipecat's ``bot-llm-*``, ``bot-tts-*``, speaking and
``user-input`` messages; ``disconnect-bot`` ends the session. An interrupted
reply's messages never reach the client after its ``bot-interrupted``.
"""

import asyncio
import json
import time

import websockets
from conftest import ROOT
from pipecat.frames.frames import OutputTransportMessageUrgentFrame, TTSTextFrame
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from transport_kit import on_transport, wait_until

from pipelines.client_protocol import messages as cm
from pipelines.client_protocol.signals import SOURCE_FRAME_ATTR, ClientSignals
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from transports.clients.talk import Talker
from transports.clients.webrtc import WebRTCPeer

GREETER = ROOT / "configs" / "greeter.yaml"
STORY_WORDS = ("robot learned", "sun went down", "never lonely", "finally answered")


def send_text(text: str, *, audio: bool = False) -> dict:
    return cm.message("send-text", {"content": text, "options": {"run_immediately": True, "audio_response": audio}})


class JsonClient:
    """A WebSocket client speaking JSON RTVI, as pipecat's RTVIClientSerializer does."""

    def __init__(self, ws):
        self.ws = ws
        self.messages: list[tuple[float, dict]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for data in self.ws:
                self.messages.append((time.monotonic(), json.loads(data)))
        except websockets.ConnectionClosed:
            pass

    async def send(self, msg: dict) -> float:
        await self.ws.send(json.dumps(msg))
        return time.monotonic()

    async def wait_for(self, kind: str, timeout: float = 10, after: float = 0.0, text: str = "") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if t > after and cm.kind_of(m) == kind and text in json.dumps(m.get("data")):
                    return m
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {kind} {text!r}; got {[cm.kind_of(m) for _, m in self.messages]}")

    def kinds(self, after: float = 0.0) -> list[str]:
        return [cm.kind_of(m) for t, m in self.messages if t > after]


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws"


async def test_json_rtvi_client_ready_send_text_append_to_context_client_message_disconnect():
    async with running(on_transport(GREETER, "websocket")) as (url, server):
        async with websockets.connect(ws_url(url)) as ws:
            client = JsonClient(ws)
            ready = cm.client_ready()
            await client.send(ready)
            bot_ready = await client.wait_for(cm.BOT_READY)
            assert bot_ready["id"] == ready["id"] and bot_ready["data"]["about"]["library"] == "pipecat-ai"
            # the greeting: an LLM response, spoken, its audio sent as JSON
            await client.wait_for("bot-llm-text", text="Hello")
            await client.wait_for(cm.BOT_STARTED_SPEAKING)
            await client.wait_for("bot-tts-text", text="weather")
            await client.wait_for("eval-bot-audio")
            assert {"bot-llm-started", "bot-llm-stopped", "bot-tts-started"} <= set(client.kinds())

            asked = await client.send(send_text("what is the weather like today"))
            user = await client.wait_for(cm.USER_INPUT, after=asked)
            assert user["data"]["input_type"] == "chat" and "weather" in user["data"]["text"]
            await client.wait_for("bot-llm-text", after=asked, text="sunny")

            asked = await client.send(cm.message("append-to-context", {"role": "user", "content": "tell me a joke",
                                                                         "run_immediately": True}))
            await client.wait_for("bot-llm-text", after=asked, text="robot")

            sent = await client.send(cm.message("client-message", {"t": "app-note", "d": {"x": 1}}))
            asked = await client.send(send_text("thank you"))
            await client.wait_for("bot-llm-text", after=asked, text="welcome")
            assert "error-response" not in client.kinds(after=sent) and "error" not in client.kinds(after=sent)

            bad = await client.send(cm.message("append-to-context", {"role": "robot"}))
            await client.wait_for("error", after=bad, text="append-to-context")

            await client.send(cm.message("disconnect-bot"))
            await wait_until(lambda: client.reader.done(), 10, "the agent to close the connection")
        (session,) = server.sessions.values()
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "the session to end")


async def test_an_interrupted_replys_messages_never_follow_its_bot_interrupted():
    async with running(on_transport(GREETER, "websocket")) as (url, _server):
        async with websockets.connect(ws_url(url)) as ws:
            client = JsonClient(ws)
            await client.send(cm.client_ready())
            await client.wait_for(cm.BOT_STOPPED_SPEAKING, timeout=15)  # after the greeting
            asked = await client.send(send_text("tell me a story", audio=True))
            await client.wait_for("bot-tts-text", after=asked, text="Once upon")
            await asyncio.sleep(0.5)
            barged = await client.send(send_text("what time is it", audio=True))
            interrupted = await client.wait_for(cm.BOT_INTERRUPTED, after=barged)
            at = next(t for t, m in client.messages if m is interrupted)
            await client.wait_for("bot-tts-text", after=at, text="clock", timeout=15)
            after = [json.dumps(m) for t, m in client.messages if t > at]
            stale = [m for m in after if any(w in m for w in STORY_WORDS)]
            assert not stale, stale
            # one bot-interrupted for the barge-in: the output's, in order with the audio (the observer's is dropped)
            assert client.kinds(after=barged).count(cm.BOT_INTERRUPTED) == 1


async def test_protobuf_client_send_text_and_user_input():
    async with running(on_transport(GREETER, "websocket", serializer="protobuf")) as (url, _server):
        async with Talker(ws_url(url)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=10)
            asked = time.monotonic()
            await talker.send_message(send_text("what time is it"))
            reply = await talker.wait_for_message(cm.BOT_LLM_TEXT, timeout=10, after=asked)
            assert reply["data"]["text"].strip()
            assert (await talker.wait_for_message(cm.USER_INPUT, timeout=5, after=asked))["data"]["text"] == "what time is it"


async def test_webrtc_peer_client_ready_send_text_append_to_context_and_disconnect_bot():
    async with running(on_transport(GREETER, "webrtc")) as (url, server):
        peer = WebRTCPeer()
        try:
            await peer.connect(url)
            await peer.wait_for_message(cm.BOT_READY, timeout=10)
            await peer.wait_for_message("bot-llm-text", timeout=10)  # the greeting
            asked = time.monotonic()
            peer.send(send_text("what is the weather like today"))
            reply = await peer.wait_for_message(cm.BOT_LLM_TEXT, timeout=10, after=asked)
            assert reply["data"]["text"].strip()
            asked = time.monotonic()
            peer.send(cm.message("append-to-context", {"role": "user", "content": "tell me a joke", "run_immediately": True}))
            await wait_until(lambda: any(cm.kind_of(m) == cm.BOT_LLM_TEXT and "robot" in m["data"]["text"]
                                         for t, m in peer.messages if t > asked), 10, "the joke")
            peer.send(cm.message("disconnect-bot"))
            (session,) = server.sessions.values()
            await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "the session to end")
        finally:
            await peer.close()


class _Recorder(BaseOutputTransport):
    """A pipecat output that keeps the messages it would send."""

    def __init__(self):
        super().__init__(TransportParams())
        self.sent: list[dict] = []

    async def send_message(self, frame):
        self.sent.append(frame.message)


class _Output(ClientSignals, _Recorder):
    pass


async def test_messages_about_output_made_before_an_interruption_are_dropped_at_the_output():
    output = _Output()
    in_flight = OutputTransportMessageUrgentFrame(message=cm.message(cm.BOT_TTS_TEXT, {"text": "old"}))
    about_old = OutputTransportMessageUrgentFrame(message=cm.message(cm.BOT_LLM_TEXT, {"text": "old too"}))
    old_text = TTSTextFrame("old too", text_type="word")
    await output.clear_buffer()  # the interruption
    setattr(about_old, SOURCE_FRAME_ATTR, old_text.id)  # reported on after it, about a frame made before it
    fresh = OutputTransportMessageUrgentFrame(message=cm.message(cm.BOT_TTS_TEXT, {"text": "new"}))
    user = OutputTransportMessageUrgentFrame(message=cm.message(cm.USER_INPUT, {"text": "mine"}))
    observers = OutputTransportMessageUrgentFrame(message=cm.message(cm.BOT_INTERRUPTED))
    for frame in (in_flight, about_old, fresh, user, observers):
        await output.send_message(frame)
    assert [(m["type"], m["data"].get("text")) for m in output.sent] == [
        (cm.BOT_INTERRUPTED, None), (cm.BOT_TTS_TEXT, "new"), (cm.USER_INPUT, "mine")]


def test_only_graphs_built_for_a_client_carry_rtvi():
    """pipecat's RTVI halves raw frame throughput: graphs that serve no client must not pay for it."""
    from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIProcessor

    from pipelines.builder import build_agent
    from pipelines.client_protocol.rtvi import for_client
    from pipelines.validate import load_agent_text

    agent = load_agent_text((ROOT / "configs" / "graph_tour.yaml").read_text())
    plain = build_agent(agent)
    assert plain.client_observer is None
    assert not any(isinstance(p, RTVIProcessor) for p in plain.pipeline.processors)
    served = build_agent(agent, peer=object(), additions=(for_client,))  # the synthetic transport ignores its peer
    # first after the pipeline's source: raw-audio it pushes downstream reaches the input
    assert isinstance(served.pipeline.processors[1], RTVIProcessor) and isinstance(served.client_observer, RTVIObserver)
