"""WebRTC microphone audio that arrives before the agent's pipeline reads it is kept, not dropped.

aiortc queues a receiver's decoded audio until someone reads it; pipecat's
track wrapper disables the receiver (aiortc then discards packets) only
from its creation, which is when the input transport starts reading, so
nothing is lost in between. This keeps it so: the session's worker is held
back 1.5 s after its graph is built (as a slow start would), and the
question said at once must still be heard whole.
"""

import asyncio

import pipelines.server.manager as manager_module
from conftest import ROOT
from transport_kit import on_transport, speech

from pipelines.server.app import running
from transports import client_messages as cm
from transports.clients.webrtc import WebRTCPeer

QUESTION = "what is the weather like today"


async def test_words_said_while_the_pipeline_starts_are_heard(monkeypatch):
    run_worker = manager_module.run_worker

    async def late_start(worker, **kwargs):
        await asyncio.sleep(1.5)
        await run_worker(worker, **kwargs)

    monkeypatch.setattr(manager_module, "run_worker", late_start)
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    question = await speech(QUESTION)
    async with running(agent) as (url, _):
        peer = WebRTCPeer()
        await peer.connect(url)
        peer.say(question + bytes(16000 * 2))  # at once: the worker has not started
        try:
            await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=30)
            finals = [m["data"]["text"] for _, m in peer.messages
                      if cm.kind_of(m) == cm.USER_TRANSCRIPTION and m["data"].get("final")]
            assert finals == [QUESTION], finals
        finally:
            await peer.close()
