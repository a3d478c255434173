"""The default assistant (configs/assistant.yaml) talked to over WebRTC by an aiortc peer.

The peer speaks espeak-ng questions (pocketsphinx, Silero VAD, the scripted
LLM and espeak-ng answer on the server), barges in during the story, and
measures the story audio it still plays after the interruption.
"""

import asyncio
import time

from conftest import ROOT
from transport_kit import on_transport, speech, told_of_the_interruption, wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from transports.clients.webrtc import WebRTCPeer


async def test_assistant_answers_and_is_interrupted_over_webrtc():
    story, hello = await speech("tell me a story"), await speech("hello")
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    async with running(agent) as (url, server):
        peer = WebRTCPeer()
        await peer.connect(url)
        await peer.wait_for_message(cm.BOT_READY, timeout=15)
        for _attempt in range(2):  # a user not understood says it again (loopback audio can arrive damaged on a busy box)
            asked = time.monotonic()
            said = asked + peer.say(story)
            await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
            await peer.wait_for_loud(timeout=5, after=said)
            finals = [m["data"]["text"] for t, m in peer.messages
                      if t >= asked and cm.kind_of(m) == cm.USER_TRANSCRIPTION and m["data"]["final"]]
            if "tell me a story" in finals:
                break
            await peer.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=15, after=said)
        assert "tell me a story" in finals

        await asyncio.sleep(1.0)  # well into the story
        barged = time.monotonic()
        peer.say(hello)
        session, interrupted_at = await told_of_the_interruption(peer, server, barged)
        answer = await peer.wait_for_message(cm.BOT_TTS_TEXT, timeout=15, after=interrupted_at)
        assert answer["data"]["text"].startswith("Hello")
        assert peer.stale_audio(interrupted_at) <= 0.06

        await peer.close()
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "worker end after a clean close")
