"""The default assistant (configs/assistant.yaml) talked to over the websocket transport.

The ``talk`` client speaks espeak-ng questions, barges in during the story,
and measures the story audio it still plays after the interruption.
"""

import asyncio
import time

from conftest import ROOT
from transport_kit import on_transport, speech, told_of_the_interruption, wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from transports.clients.talk import Talker

SILENCE = bytes(int(16000 * 1.0) * 2)


async def test_assistant_answers_and_is_interrupted_over_websocket():
    story, hello = await speech("tell me a story"), await speech("hello")
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "websocket")
    async with running(agent) as (url, server):
        async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await talker.stream(story + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
            final = await talker.wait_for_message(cm.USER_TRANSCRIPTION, timeout=5, after=asked)
            assert final["data"]["text"].startswith("tell me")

            await asyncio.sleep(1.0)  # well into the story
            barged = time.monotonic()
            await talker.stream(hello + SILENCE)
            session, interrupted_at = await told_of_the_interruption(talker, server, barged)
            answer = await talker.wait_for_message(cm.BOT_TTS_TEXT, timeout=15, after=interrupted_at)
            assert answer["data"]["text"].startswith("Hello")
            assert talker.stale_audio(interrupted_at) <= 0.06
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "worker end after a clean close")
