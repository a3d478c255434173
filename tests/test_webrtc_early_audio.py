"""WebRTC microphone audio that arrives before the agent's pipeline reads it is kept, not dropped.

aiortc queues a receiver's decoded audio until the input transport starts
reading (pipecat's track wrapper, which disables the receiver, is made only
then); the held audio then reaches the STT in one burst, before VAD's start,
and the decoder keeps all of it (processors/stt/decoder_host.py: under load
its first words used to fall out of a one-second pre-roll). The session's
worker is held back 1.5 s after its graph is built (as a slow start would):
the question said at once must be heard whole.
"""

import asyncio

from conftest import ROOT
from transport_kit import on_transport, speech

import pipelines.server.manager as manager_module
from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
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
